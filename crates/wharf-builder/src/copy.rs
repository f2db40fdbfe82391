//! COPY and ADD from the build context: the sources resolved as Docker resolves them
//! (wildcards, a directory's contents, symlinks followed only inside the context, nothing
//! outside it), written as a tar of their destination paths with the owner and mode the step
//! asks for, and digested (paths, types, modes, owners, link targets, contents; never times)
//! for the cache key.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use wharf_store::saferoot::SafeRoot;

use crate::context::{clean, glob, Ignore};
use crate::{BuildError, Result};

/// Content digests (hex sha256) of context files, by their path on this host.
pub type ContextDigests = std::collections::HashMap<PathBuf, String>;

/// Where the copied files go, and as whom.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// The absolute destination, cleaned.
    pub dest: String,
    /// `dest` is a directory the sources go into (it ends in `/`, there are several sources,
    /// or it is a directory in the image).
    pub into_dir: bool,
    /// Owner of every entry.
    pub owner: (u64, u64),
    /// `--chmod`: mode of every entry.
    pub chmod: Option<u32>,
    /// ADD: a local tar archive (plain, gzip, bzip2, xz or zstd) is extracted into `dest`, its entries'
    /// modes and owners kept, instead of copied.
    pub extract: bool,
    /// `--parents`: each source keeps its path (from the context's root, or from a `/./` in
    /// its pattern) under `dest`.
    pub parents: bool,
    /// `--exclude`: paths left out (matched from the copied directory, or a file's own path).
    pub exclude: Option<Ignore>,
    /// `SOURCE_DATE_EPOCH`: no entry's time is later.
    pub epoch: Option<u64>,
    /// The content digests the daemon knows of context files (by path), so a file's content
    /// is read only when its bytes are needed.
    pub known: Option<std::sync::Arc<ContextDigests>>,
    /// Only the digest is wanted (the bytes go nowhere): known files are not read at all.
    pub digest_only: bool,
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// The context-relative paths `src` names: itself, or what its pattern matches.
pub fn resolve_sources(ctx: &Path, src: &str, what: &str) -> Result<Vec<String>> {
    let outside = || BuildError::Step(format!("forbidden path outside the build context: {src} ()"));
    // `..` may not climb above the root (an absolute path is the context's root).
    let mut depth: i64 = 0;
    for c in src.split('/').filter(|c| !c.is_empty() && *c != ".") {
        depth += if c == ".." { -1 } else { 1 };
        if depth < 0 {
            return Err(outside());
        }
    }
    let rel = clean(src);
    let not_found = || {
        BuildError::Step(format!(
            "{what} failed: file not found in build context or excluded by .dockerignore: stat {rel}: file does not exist"
        ))
    };
    if !has_glob(&rel) {
        let root = SafeRoot::open(ctx).map_err(|e| BuildError::Context(e.to_string()))?;
        let comps: Vec<std::ffi::OsString> = rel.split('/').filter(|c| !c.is_empty()).map(Into::into).collect();
        // Symlinks are followed, but never out of the context.
        let resolved = wharf_store::archive::resolve(&root, &comps, true).map_err(|_| not_found())?;
        let path: PathBuf = resolved.iter().collect();
        if fs::symlink_metadata(ctx.join(&path)).is_err() {
            return Err(not_found());
        }
        return Ok(vec![path.to_string_lossy().into_owned()]);
    }
    let pat: Vec<&str> = rel.split('/').collect();
    let mut out = Vec::new();
    walk_matches(ctx, &mut PathBuf::new(), &pat, &mut out).map_err(|e| BuildError::Context(e.to_string()))?;
    if out.is_empty() {
        return Err(not_found());
    }
    out.sort();
    Ok(out)
}

fn walk_matches(ctx: &Path, rel: &mut PathBuf, pat: &[&str], out: &mut Vec<String>) -> io::Result<()> {
    let Some((first, rest)) = pat.split_first() else {
        return Ok(());
    };
    let mut names: Vec<_> = fs::read_dir(ctx.join(&*rel))?.collect::<io::Result<Vec<_>>>()?;
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let name = e.file_name();
        if !glob(first.as_bytes(), name.as_encoded_bytes()) {
            continue;
        }
        rel.push(&name);
        if rest.is_empty() {
            out.push(rel.to_string_lossy().into_owned());
        } else if e.file_type()?.is_dir() {
            walk_matches(ctx, rel, rest, out)?;
        }
        rel.pop();
    }
    Ok(())
}

/// Writes the tar of `sources` (context-relative) for `target` to `w`; returns the digest of
/// what was written, times left out.
pub fn write_tar(ctx: &Path, sources: &[String], target: &Target, w: impl Write) -> Result<String> {
    let mut b = tar::Builder::new(w);
    b.follow_symlinks(false);
    let mut h = Sha256::new();
    let io = |e: io::Error| BuildError::Context(e.to_string());
    let dest = Path::new(&target.dest);
    let mut parents_made = std::collections::BTreeSet::new();
    for src in sources {
        let path = ctx.join(src);
        let md = fs::symlink_metadata(&path).map_err(io)?;
        if target.excluded(src, true) {
            continue;
        }
        if target.parents {
            // `a/./b/c` keeps `b/c`; `a/b/c` keeps all of it. Its parents come first, with
            // their own modes.
            let (pivot, kept) = src.split_once("/./").unwrap_or(("", src.as_str()));
            let mut rel = PathBuf::new();
            for c in Path::new(kept).parent().into_iter().flat_map(Path::components) {
                rel.push(c);
                if parents_made.insert(rel.clone()) {
                    let p = ctx.join(pivot).join(&rel);
                    let pmd = fs::symlink_metadata(&p).map_err(io)?;
                    add_one(&mut b, &mut h, &p, &pmd, &dest.join(&rel), target).map_err(io)?;
                }
            }
            let to = dest.join(kept);
            add_one(&mut b, &mut h, &path, &md, &to, target).map_err(io)?;
            if md.is_dir() {
                add_tree(&mut b, &mut h, &path, Path::new(""), &to, target).map_err(io)?;
            }
        } else if md.is_dir() {
            add_tree(&mut b, &mut h, &path, Path::new(""), dest, target).map_err(io)?;
        } else if target.extract && md.is_file() && is_archive(&path) {
            add_archive(&mut b, &mut h, &path, dest, target.epoch).map_err(io)?;
        } else {
            let name = Path::new(src).file_name().map(PathBuf::from).unwrap_or_default();
            let to = if target.into_dir {
                dest.join(name)
            } else {
                dest.to_path_buf()
            };
            add_one(&mut b, &mut h, &path, &md, &to, target).map_err(io)?;
        }
    }
    b.into_inner().map_err(io)?.flush().map_err(io)?;
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

impl Target {
    /// `--exclude` leaves `rel` out: a path in a copied directory, or (`source`) a source's
    /// context path, matched whole or by its file name.
    fn excluded(&self, rel: &str, source: bool) -> bool {
        let Some(x) = &self.exclude else { return false };
        let rel = clean(rel.replace("/./", "/").as_str());
        if x.excludes(&rel) {
            return true;
        }
        source && !rel.is_empty() && x.excludes(rel.rsplit('/').next().unwrap_or(&rel))
    }
}

/// Whether a file is a tar archive ADD extracts: gzip, bzip2, xz or zstd compressed, or a
/// plain tar.
pub(crate) fn is_archive(path: &Path) -> bool {
    let mut head = [0u8; 512];
    let n = fs::File::open(path).and_then(|mut f| f.read(&mut head)).unwrap_or(0);
    let head = &head[..n];
    head.starts_with(&[0x1f, 0x8b])
        || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || head.starts_with(b"BZh")
        || head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00])
        || head.get(257..262) == Some(b"ustar")
}

/// A local archive's entries re-rooted under `dest` (a directory), each as the archive has it;
/// an entry that would climb out of `dest` is refused.
fn add_archive<W: Write>(
    b: &mut tar::Builder<W>,
    h: &mut Sha256,
    path: &Path,
    dest: &Path,
    epoch: Option<u64>,
) -> io::Result<()> {
    let f = fs::File::open(path)?;
    let mut ar = tar::Archive::new(wharf_store::decompress(io::BufReader::new(f))?);
    let base = dest.strip_prefix("/").unwrap_or(dest).to_path_buf();
    let reroot = |p: &Path| -> io::Result<PathBuf> {
        if !stays_within(p) {
            return Err(io::Error::other(format!(
                "{}: climbs out of the destination",
                p.display()
            )));
        }
        Ok(base.join(clean(&p.to_string_lossy())))
    };
    for entry in ar.entries()? {
        let mut entry = entry?;
        let mut hd = entry.header().clone();
        if let Some(e) = epoch {
            hd.set_mtime(hd.mtime()?.min(e));
        }
        let kind = hd.entry_type();
        if matches!(kind, tar::EntryType::XGlobalHeader | tar::EntryType::XHeader) {
            continue;
        }
        let name = reroot(&entry.path()?)?;
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        let mut field = |s: &[u8]| {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s);
        };
        field(name.as_os_str().as_encoded_bytes());
        field(format!("{:?} {:o} {} {}", kind, hd.mode()?, hd.uid()?, hd.gid()?).as_bytes());
        field(&data);
        let link = entry.link_name()?.map(|l| l.into_owned()).unwrap_or_default();
        match kind {
            tar::EntryType::Link => {
                let target = reroot(&link)?;
                field(target.as_os_str().as_encoded_bytes());
                b.append_link(&mut hd, &name, &target)?;
            }
            tar::EntryType::Symlink => {
                field(link.as_os_str().as_encoded_bytes());
                b.append_link(&mut hd, &name, &link)?;
            }
            _ => b.append_data(&mut hd, &name, data.as_slice())?,
        }
    }
    Ok(())
}

/// A path of an archive that stays inside it (`a/../b` does, `../b` and `/b` do not climb).
fn stays_within(p: &Path) -> bool {
    let mut depth = 0i64;
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => depth -= 1,
            std::path::Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

/// A directory's contents (not the directory itself) under `dest`, sorted; `rel` is where
/// `dir` is in the copied tree (what `--exclude` matches).
fn add_tree<W: Write>(
    b: &mut tar::Builder<W>,
    h: &mut Sha256,
    dir: &Path,
    rel: &Path,
    dest: &Path,
    t: &Target,
) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<io::Result<Vec<_>>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let r = rel.join(e.file_name());
        if t.excluded(&r.to_string_lossy(), false) {
            continue;
        }
        let p = e.path();
        let md = fs::symlink_metadata(&p)?;
        let to = dest.join(e.file_name());
        add_one(b, h, &p, &md, &to, t)?;
        if md.is_dir() {
            add_tree(b, h, &p, &r, &to, t)?;
        }
    }
    Ok(())
}

/// One entry at `to` (absolute), with the target's owner and mode.
fn add_one<W: Write>(
    b: &mut tar::Builder<W>,
    h: &mut Sha256,
    src: &Path,
    md: &fs::Metadata,
    to: &Path,
    t: &Target,
) -> io::Result<()> {
    let name = to.strip_prefix("/").unwrap_or(to);
    let mut hd = tar::Header::new_gnu();
    let mode = t.chmod.unwrap_or(md.permissions().mode() & 0o7777);
    hd.set_mode(mode);
    hd.set_uid(t.owner.0);
    hd.set_gid(t.owner.1);
    hd.set_mtime(
        t.epoch
            .map_or(md.mtime().max(0) as u64, |e| e.min(md.mtime().max(0) as u64)),
    );
    let ft = md.file_type();
    let mut field = |s: &[u8]| {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s);
    };
    field(name.as_os_str().as_encoded_bytes());
    field(format!("{mode:o} {} {}", t.owner.0, t.owner.1).as_bytes());
    if ft.is_dir() {
        field(b"dir");
        hd.set_entry_type(tar::EntryType::Directory);
        hd.set_size(0);
        b.append_data(&mut hd, name, io::empty())
    } else if ft.is_symlink() {
        let target = fs::read_link(src)?;
        field(b"symlink");
        field(target.as_os_str().as_encoded_bytes());
        hd.set_entry_type(tar::EntryType::Symlink);
        hd.set_size(0);
        b.append_link(&mut hd, name, &target)
    } else if ft.is_file() {
        // The content enters the key as its sha256, known or computed here.
        field(b"file");
        let known = t.known.as_ref().and_then(|k| k.get(src));
        hd.set_entry_type(tar::EntryType::Regular);
        if let (Some(hex), true) = (known, t.digest_only) {
            field(hex.as_bytes());
            hd.set_size(md.len());
            return b.append_data(&mut hd, name, io::repeat(0).take(md.len()));
        }
        let mut data = Vec::with_capacity(md.len() as usize);
        fs::File::open(src)?.read_to_end(&mut data)?;
        match known {
            Some(hex) => field(hex.as_bytes()),
            None => field(hex::encode(Sha256::digest(&data)).as_bytes()),
        }
        hd.set_size(data.len() as u64);
        b.append_data(&mut hd, name, data.as_slice())
    } else {
        // Sockets, devices and fifos in a context are not copied, as in Docker.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        fs::create_dir_all(p.join("app/sub")).unwrap();
        fs::write(p.join("app/a.txt"), "a").unwrap();
        fs::write(p.join("app/sub/b.txt"), "b").unwrap();
        fs::write(p.join("top.txt"), "top").unwrap();
        fs::write(p.join("x.log"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", p.join("escape")).unwrap();
        std::os::unix::fs::symlink("app/a.txt", p.join("inside")).unwrap();
        d
    }

    fn names(ctx: &Path, srcs: &[String], t: &Target) -> (Vec<String>, String) {
        let mut buf = Vec::new();
        let digest = write_tar(ctx, srcs, t, &mut buf).unwrap();
        let mut ar = tar::Archive::new(buf.as_slice());
        let n = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                format!(
                    "{} {:o} {}:{}",
                    e.path().unwrap().display(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap()
                )
            })
            .collect();
        (n, digest)
    }

    #[test]
    fn sources_resolve_inside_the_context_only() {
        let d = ctx();
        let p = d.path();
        assert_eq!(resolve_sources(p, "app", "COPY").unwrap(), ["app"]);
        assert_eq!(resolve_sources(p, "./app/../top.txt", "COPY").unwrap(), ["top.txt"]);
        assert_eq!(resolve_sources(p, "/top.txt", "COPY").unwrap(), ["top.txt"]);
        assert_eq!(resolve_sources(p, "*.txt", "COPY").unwrap(), ["top.txt"]);
        assert_eq!(resolve_sources(p, "app/*.txt", "COPY").unwrap(), ["app/a.txt"]);
        assert_eq!(resolve_sources(p, "inside", "COPY").unwrap(), ["app/a.txt"]);
        // A link out of the context resolves inside it, where nothing is.
        assert!(resolve_sources(p, "escape", "COPY").is_err());
        assert_eq!(
            resolve_sources(p, "../etc/passwd", "COPY").unwrap_err().to_string(),
            "forbidden path outside the build context: ../etc/passwd ()"
        );
        assert_eq!(
            resolve_sources(p, "nope", "COPY").unwrap_err().to_string(),
            "COPY failed: file not found in build context or excluded by .dockerignore: stat nope: file does not exist"
        );
        assert!(resolve_sources(p, "*.md", "COPY").is_err());
    }

    #[test]
    fn tars_hold_the_destination_owner_and_mode_and_digest_contents_not_times() {
        let d = ctx();
        let p = d.path();
        let t = Target {
            dest: "/srv".into(),
            into_dir: true,
            owner: (70, 70),
            chmod: Some(0o640),
            extract: false,
            ..Target::default()
        };
        let (n, digest) = names(p, &["app".into(), "top.txt".into()], &t);
        assert_eq!(
            n,
            [
                "srv/a.txt 640 70:70",
                "srv/sub 640 70:70",
                "srv/sub/b.txt 640 70:70",
                "srv/top.txt 640 70:70"
            ]
        );
        // A file to a file path; the mode kept without --chmod.
        fs::set_permissions(p.join("top.txt"), fs::Permissions::from_mode(0o751)).unwrap();
        let one = Target {
            dest: "/etc/conf".into(),
            into_dir: false,
            owner: (0, 0),
            chmod: None,
            extract: false,
            ..Target::default()
        };
        assert_eq!(names(p, &["top.txt".into()], &one).0, ["etc/conf 751 0:0"]);
        // A new mtime is the same content; new bytes are not.
        let again = names(p, &["app".into(), "top.txt".into()], &t).1;
        std::thread::sleep(std::time::Duration::from_millis(10));
        fs::write(p.join("app/a.txt"), "a").unwrap();
        assert_eq!(names(p, &["app".into(), "top.txt".into()], &t).1, again);
        assert_eq!(again, digest);
        fs::write(p.join("app/a.txt"), "A").unwrap();
        assert_ne!(names(p, &["app".into(), "top.txt".into()], &t).1, digest);
    }

    #[test]
    fn add_extracts_local_archives_keeping_modes_and_owners_and_nothing_climbs_out() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o750);
        h.set_uid(70);
        h.set_gid(70);
        h.set_size(2);
        b.append_data(&mut h, "bin/tool", &b"#!"[..]).unwrap();
        fs::write(p.join("rootfs.tar"), b.into_inner().unwrap()).unwrap();
        let t = Target {
            dest: "/opt".into(),
            into_dir: false,
            owner: (0, 0),
            chmod: None,
            extract: true,
            ..Target::default()
        };
        assert_eq!(names(p, &["rootfs.tar".into()], &t).0, ["opt/bin/tool 750 70:70"]);
        // COPY copies it as it is.
        let copy = Target {
            extract: false,
            ..t.clone()
        };
        assert_eq!(names(p, &["rootfs.tar".into()], &copy).0, ["opt 644 0:0"]);
        // An entry that climbs out of the destination is refused. (The tar crate will not
        // write `..` itself, so the name is put in the header's bytes.)
        let mut h = tar::Header::new_ustar();
        h.as_mut_bytes()[..9].copy_from_slice(b"../escape");
        h.set_mode(0o644);
        h.set_size(1);
        h.set_cksum();
        let mut bytes = h.as_bytes().to_vec();
        bytes.extend_from_slice(b"x");
        bytes.resize(512 * 2, 0);
        bytes.extend_from_slice(&[0u8; 1024]);
        fs::write(p.join("evil.tar"), bytes).unwrap();
        let mut out = Vec::new();
        let err = write_tar(p, &["evil.tar".into()], &t, &mut out)
            .unwrap_err()
            .to_string();
        assert!(err.contains("climbs out of the destination"), "{err}");
    }

    #[test]
    fn parents_keep_their_paths_and_excludes_leave_paths_out() {
        let d = ctx();
        let p = d.path();
        let t = Target {
            dest: "/dst".into(),
            into_dir: true,
            parents: true,
            ..Target::default()
        };
        let (n, _) = names(p, &["app/sub/b.txt".into(), "top.txt".into()], &t);
        assert_eq!(
            n,
            [
                "dst/app 755 0:0",
                "dst/app/sub 755 0:0",
                "dst/app/sub/b.txt 644 0:0",
                "dst/top.txt 644 0:0"
            ]
        );
        // `app/./sub`: the path from the pivot on.
        let (n, _) = names(p, &["app/./sub".into()], &t);
        assert_eq!(n, ["dst/sub 755 0:0", "dst/sub/b.txt 644 0:0"]);
        let x = Target {
            dest: "/dst".into(),
            into_dir: true,
            exclude: Some(Ignore::parse("**/b.txt\n*.log")),
            ..Target::default()
        };
        let (n, with) = names(p, &["app".into(), "x.log".into(), "top.txt".into()], &x);
        assert_eq!(n, ["dst/a.txt 644 0:0", "dst/sub 755 0:0", "dst/top.txt 644 0:0"]);
        let (_, without) = names(
            p,
            &["app".into(), "top.txt".into()],
            &Target {
                exclude: None,
                ..x.clone()
            },
        );
        assert_ne!(with, without, "what is left out changes the digest");
    }

    #[test]
    fn a_known_content_digest_keys_alike_and_spares_reading_the_file() {
        let d = ctx();
        let p = d.path();
        let t = Target {
            dest: "/srv".into(),
            into_dir: true,
            ..Target::default()
        };
        let srcs = ["top.txt".to_string(), "app".to_string()];
        let read = write_tar(p, &srcs, &t, io::sink()).unwrap();
        let sum = |b: &[u8]| hex::encode(Sha256::digest(b));
        let mut known = ContextDigests::new();
        known.insert(p.join("top.txt"), sum(b"top"));
        known.insert(p.join("app/a.txt"), sum(b"a"));
        let with = Target {
            known: Some(std::sync::Arc::new(known.clone())),
            digest_only: true,
            ..t.clone()
        };
        assert_eq!(write_tar(p, &srcs, &with, io::sink()).unwrap(), read);
        // Not read at all: a digest the daemon holds is what counts (here, a planted one).
        known.insert(p.join("top.txt"), sum(b"planted"));
        let planted = Target {
            known: Some(std::sync::Arc::new(known)),
            ..with.clone()
        };
        assert_ne!(write_tar(p, &srcs, &planted, io::sink()).unwrap(), read);
        // Writing a layer always reads the bytes.
        let mut tar = Vec::new();
        let writing = Target {
            digest_only: false,
            ..planted
        };
        write_tar(p, &srcs, &writing, &mut tar).unwrap();
        let mut ar = tar::Archive::new(tar.as_slice());
        let mut top = String::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            if e.path().unwrap().ends_with("top.txt") {
                e.read_to_string(&mut top).unwrap();
            }
        }
        assert_eq!(top, "top");
    }
}
