//! A layer without some paths: the tar copied entry by entry, leaving out every entry at or
//! under the paths given (a build step's mount points, which the runtime made only to mount
//! over and which are no part of what the step made). Every other entry passes as it was:
//! header, extended attributes (PAX records), link targets and contents.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Copies the tar `r` to `w`, leaving out what is at or under any of `omit` (relative paths,
/// as the tar names them, without a leading `/`).
pub fn copy_omitting(r: impl Read, w: impl Write, omit: &[PathBuf]) -> io::Result<()> {
    let mut ar = tar::Archive::new(r);
    let mut b = tar::Builder::new(w);
    for e in ar.entries()? {
        let mut e = e?;
        let path = e.path()?.into_owned();
        let rel = path.strip_prefix("./").unwrap_or(&path);
        let rel = rel.strip_prefix("/").unwrap_or(rel);
        if omit.iter().any(|o| rel.starts_with(o)) {
            continue;
        }
        let mut h = e.header().clone();
        let kind = h.entry_type();
        if matches!(kind, tar::EntryType::XGlobalHeader) {
            continue;
        }
        // Extended attributes (file capabilities) ride in PAX records before the entry.
        let pax: Vec<(String, Vec<u8>)> = match e.pax_extensions()? {
            Some(exts) => exts
                .filter_map(|x| x.ok())
                .filter(|x| x.key().is_ok_and(|k| k.starts_with("SCHILY.xattr.")))
                .map(|x| (x.key().unwrap_or_default().to_string(), x.value_bytes().to_vec()))
                .collect(),
            None => Vec::new(),
        };
        if !pax.is_empty() {
            b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
        }
        match kind {
            tar::EntryType::Link | tar::EntryType::Symlink => {
                let target = e.link_name()?.map(|t| t.into_owned()).unwrap_or_default();
                b.append_link(&mut h, &path, Path::new(&target))?;
            }
            _ => b.append_data(&mut h, &path, &mut e)?,
        }
    }
    b.into_inner()?.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_left_out_is_gone_and_the_rest_is_as_it_was() {
        let mut b = tar::Builder::new(Vec::new());
        let add = |b: &mut tar::Builder<Vec<u8>>, name: &str, kind: tar::EntryType, body: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(0o640);
            h.set_uid(7);
            h.set_mtime(1234);
            h.set_size(body.len() as u64);
            b.append_data(&mut h, name, body).unwrap();
        };
        add(&mut b, "run/", tar::EntryType::Directory, b"");
        add(&mut b, "run/secrets/", tar::EntryType::Directory, b"");
        add(&mut b, "run/secrets/tok", tar::EntryType::Regular, b"");
        add(&mut b, "run/keep", tar::EntryType::Regular, b"kept");
        add(
            &mut b,
            &format!("deep/{}/made", "d".repeat(120)),
            tar::EntryType::Regular,
            b"long name",
        );
        b.append_pax_extensions([("SCHILY.xattr.security.capability", &b"\x01\x02"[..])])
            .unwrap();
        add(&mut b, "bin/ping", tar::EntryType::Regular, b"elf");
        let raw = b.into_inner().unwrap();
        let mut out = Vec::new();
        copy_omitting(&raw[..], &mut out, &[PathBuf::from("run/secrets")]).unwrap();
        let mut ar = tar::Archive::new(out.as_slice());
        let mut got = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let caps = e
                .pax_extensions()
                .unwrap()
                .map(|x| {
                    x.filter_map(|x| x.ok())
                        .map(|x| x.value_bytes().to_vec())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            let h = e.header().clone();
            let mut body = String::new();
            e.read_to_string(&mut body).unwrap();
            got.push((
                e.path().unwrap().display().to_string(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.mtime().unwrap(),
                body,
                caps,
            ));
        }
        let names: Vec<&str> = got.iter().map(|g| g.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "run/",
                "run/keep",
                &format!("deep/{}/made", "d".repeat(120)),
                "bin/ping"
            ]
        );
        assert_eq!(
            (got[1].1, got[1].2, got[1].3, got[1].4.as_str()),
            (0o640, 7, 1234, "kept")
        );
        assert_eq!(got[3].5, vec![b"\x01\x02".to_vec()], "capabilities kept");
        assert_eq!(got[2].4, "long name");
    }
}
