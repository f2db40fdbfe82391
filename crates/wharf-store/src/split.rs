//! A layer's uncompressed tar kept without the file contents the layer directory already holds
//! (what Docker's tar-split does): `save` and `push` must send the exact bytes that were loaded
//! or pulled, or the diff IDs change, but keeping the whole tar beside the extracted files stored
//! every image twice.
//!
//! While a layer is extracted its tar is spooled to an unlinked scratch file and every regular
//! file's data is noted (offset in the stream, size, path, inode). Afterwards, if every such
//! path still reaches the same inode with the same size (nothing later in the archive replaced
//! or removed it), the record is written: the bytes between file contents (headers, padding,
//! the end blocks) verbatim, and a reference (size and path) for each file's data. Otherwise
//! the whole tar is kept as a blob, as before. Reading a record back rebuilds the stream from
//! the layer directory, opening each file beneath it without following any symlink, and fails
//! at the end unless the bytes hash to the diff ID.
//!
//! Record format: a sequence of segments, `0` + u64 LE length + that many bytes (verbatim), or
//! `1` + u64 LE length + u32 LE path length + the path (relative, `/`-separated).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};
use wharf_reference::{BackgroundSha256, Digest};

const RAW: u8 = 0;
const FILE: u8 = 1;

/// One regular file's data in a layer tar, and the file extraction wrote it to.
#[derive(Debug, Clone)]
pub struct FileData {
    /// Offset of the data in the uncompressed stream.
    pub pos: u64,
    /// Its length.
    pub size: u64,
    /// The file, relative to the layer directory.
    pub path: PathBuf,
    /// Device and inode of the file as written.
    pub dev: u64,
    /// See `dev`.
    pub ino: u64,
}

fn open_beneath(root: &File, path: &Path, flags: OFlags) -> io::Result<File> {
    let fd = openat2(
        root,
        path,
        flags | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )?;
    Ok(File::from(fd))
}

/// True when every file is still the one extraction wrote (same inode, same size, reached by
/// the same path without symlinks).
pub fn still_in_place(root: &Path, files: &[FileData]) -> bool {
    let Ok(dir) = File::open(root) else { return false };
    files.iter().all(|f| {
        open_beneath(&dir, &f.path, OFlags::PATH)
            .and_then(|h| rustix::fs::fstat(&h).map_err(io::Error::from))
            .is_ok_and(|st| st.st_dev == f.dev && st.st_ino == f.ino && st.st_size as u64 == f.size)
    })
}

/// Write the record of a tar of `len` bytes whose file data `files` lists, in stream order,
/// from `raw`: the tar's bytes without that data, in order (what the layer's spool keeps).
pub fn write_compact_record(raw: &mut File, len: u64, files: &[FileData], out: impl Write) -> io::Result<()> {
    let mut raw = BufReader::with_capacity(1 << 16, raw);
    let mut out = BufWriter::with_capacity(1 << 16, out);
    let mut verbatim = |out: &mut BufWriter<_>, n: u64| -> io::Result<()> {
        out.write_all(&[RAW])?;
        out.write_all(&n.to_le_bytes())?;
        if io::copy(&mut (&mut raw).take(n), out)? != n {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "spooled tar is short"));
        }
        Ok(())
    };
    let mut at = 0;
    for f in files {
        if f.pos < at || f.pos + f.size > len {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "file data out of order"));
        }
        verbatim(&mut out, f.pos - at)?;
        let p = f.path.as_os_str().as_bytes();
        out.write_all(&[FILE])?;
        out.write_all(&f.size.to_le_bytes())?;
        out.write_all(&(p.len() as u32).to_le_bytes())?;
        out.write_all(p)?;
        at = f.pos + f.size;
    }
    verbatim(&mut out, len - at)?;
    out.flush()
}

enum Segment {
    Raw(u64),
    File(File, u64),
}

/// The tar rebuilt from a record and the layer directory; the stream ends with an error unless
/// it hashes to `expected`.
pub struct Rebuilt {
    record: BufReader<File>,
    root: File,
    cur: Option<Segment>,
    /// Taken at the end of the stream.
    hasher: Option<BackgroundSha256>,
    expected: Digest,
    done: bool,
}

impl Rebuilt {
    /// Read the record `record` against the layer directory `root`.
    pub fn open(record: File, root: &Path, expected: Digest) -> io::Result<Self> {
        Ok(Rebuilt {
            record: BufReader::with_capacity(1 << 16, record),
            root: File::open(root)?,
            cur: None,
            hasher: Some(BackgroundSha256::new()),
            expected,
            done: false,
        })
    }

    /// The next segment, or `None` at the end of the record.
    fn next_segment(&mut self) -> io::Result<Option<Segment>> {
        let mut tag = [0u8; 1];
        if self.record.read(&mut tag)? == 0 {
            return Ok(None);
        }
        let mut n = [0u8; 8];
        self.record.read_exact(&mut n)?;
        let n = u64::from_le_bytes(n);
        match tag[0] {
            RAW => Ok(Some(Segment::Raw(n))),
            FILE => {
                let mut l = [0u8; 4];
                self.record.read_exact(&mut l)?;
                let mut p = vec![0u8; u32::from_le_bytes(l) as usize];
                self.record.read_exact(&mut p)?;
                let path = Path::new(std::ffi::OsStr::from_bytes(&p));
                let f = open_beneath(&self.root, path, OFlags::RDONLY)
                    .map_err(|e| io::Error::new(e.kind(), format!("layer file {}: {e}", path.display())))?;
                Ok(Some(Segment::File(f, n)))
            }
            _ => Err(io::Error::new(io::ErrorKind::InvalidData, "corrupt layer record")),
        }
    }
}

impl Read for Rebuilt {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.done || buf.is_empty() {
                return Ok(0);
            }
            let n = match &mut self.cur {
                None => match self.next_segment()? {
                    Some(s) => {
                        self.cur = Some(s);
                        continue;
                    }
                    None => {
                        self.done = true;
                        let actual = match self.hasher.take() {
                            Some(h) => h.finish()?,
                            None => return Ok(0),
                        };
                        if actual != self.expected {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!(
                                    "layer {} on disk no longer matches its diff ID (got {actual})",
                                    self.expected
                                ),
                            ));
                        }
                        return Ok(0);
                    }
                },
                Some(Segment::Raw(0)) | Some(Segment::File(_, 0)) => {
                    self.cur = None;
                    continue;
                }
                Some(Segment::Raw(left)) => {
                    let want = (*left).min(buf.len() as u64) as usize;
                    let n = self.record.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "corrupt layer record"));
                    }
                    *left -= n as u64;
                    n
                }
                Some(Segment::File(f, left)) => {
                    let want = (*left).min(buf.len() as u64) as usize;
                    let n = f.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "a layer file got shorter"));
                    }
                    *left -= n as u64;
                    n
                }
            };
            if let Some(h) = &mut self.hasher {
                h.update(&buf[..n]);
            }
            return Ok(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::layer::{Driver, LayerStore};
    use crate::ContentStore;

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut d = tar::Header::new_gnu();
        d.set_entry_type(tar::EntryType::Directory);
        d.set_mode(0o755);
        d.set_size(0);
        b.append_data(&mut d, "dir/", &[][..]).unwrap();
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, *data).unwrap();
        }
        let mut l = tar::Header::new_gnu();
        l.set_entry_type(tar::EntryType::Symlink);
        l.set_size(0);
        b.append_link(&mut l, "dir/link", "../a").unwrap();
        b.into_inner().unwrap()
    }

    fn store() -> (tempfile::TempDir, ContentStore, LayerStore) {
        let t = tempfile::tempdir_in("/var/tmp").unwrap();
        let content = ContentStore::open(&t.path().join("content")).unwrap();
        let layers = LayerStore::open(t.path(), Driver::Vfs, content.clone()).unwrap();
        (t, content, layers)
    }

    fn rebuilt(content: &ContentStore, layers: &LayerStore, rec: &crate::LayerRecord) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        Rebuilt::open(
            content.open_split(&rec.diff_id).unwrap(),
            &layers.diff_dir(rec),
            rec.diff_id,
        )?
        .read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn a_layer_keeps_only_what_its_files_do_not_hold() {
        if crate::root_tier::skip_unless_root("a_layer_keeps_only_what_its_files_do_not_hold") {
            return;
        }
        let (_t, content, layers) = store();
        let big = vec![7u8; 300_000];
        let tar = tar_of(&[("a", b"hello"), ("dir/big", &big), ("dir/empty", b"")]);
        let rec = layers.create(None, None, &tar[..], None).unwrap();
        assert_eq!(rec.diff_id, Digest::of(&tar));
        assert!(content.open_blob(&rec.diff_id).is_err(), "no full copy");
        let kept = content.open_split(&rec.diff_id).unwrap().metadata().unwrap().len();
        assert!(kept < 10_000, "record of {kept} bytes");
        assert_eq!(
            rebuilt(&content, &layers, &rec).unwrap(),
            tar,
            "the exact bytes come back"
        );
    }

    #[test]
    fn an_entry_overwriting_an_earlier_one_keeps_the_whole_tar() {
        if crate::root_tier::skip_unless_root("an_entry_overwriting_an_earlier_one_keeps_the_whole_tar") {
            return;
        }
        let (_t, content, layers) = store();
        let tar = tar_of(&[("a", b"first"), ("a", b"second")]);
        let rec = layers.create(None, None, &tar[..], None).unwrap();
        let mut whole = Vec::new();
        content
            .open_blob(&rec.diff_id)
            .unwrap()
            .read_to_end(&mut whole)
            .unwrap();
        assert_eq!(whole, tar);
    }

    /// A tar of `(name, kind, data or link target)` entries.
    fn tar_with(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            match kind {
                tar::EntryType::Link | tar::EntryType::Symlink => {
                    h.set_size(0);
                    b.append_link(&mut h, name, std::str::from_utf8(data).unwrap()).unwrap();
                }
                _ => {
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, name, *data).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn later_entries_removing_earlier_files_keep_the_whole_tar_exactly() {
        if crate::root_tier::skip_unless_root("later_entries_removing_earlier_files_keep_the_whole_tar_exactly") {
            return;
        }
        use tar::EntryType::{Directory as D, Link as L, Regular as R};
        // Past the inline hashing size, so the file data skipped is large.
        let big: Vec<u8> = (0..(5usize << 20)).map(|i| (i % 251) as u8).collect();
        let cases: [&[(&str, tar::EntryType, &[u8])]; 4] = [
            &[("big", R, &big), ("a", R, b"gone"), (".wh.a", R, b"")],
            &[
                ("big", R, &big),
                ("d/", D, b""),
                ("d/x", R, b"in d"),
                ("d", R, b"a file now"),
            ],
            &[("big", R, &big), ("h", L, b"big"), ("big", R, b"replaced")],
            &[
                ("a", R, b"one"),
                ("big", R, &big),
                ("d/", D, b""),
                ("d/.wh..wh..opq", R, b""),
                ("a", R, b"two"),
            ],
        ];
        for (i, entries) in cases.iter().enumerate() {
            let (_t, content, layers) = store();
            let tar = tar_with(entries);
            let rec = layers.create(None, None, &tar[..], None).unwrap();
            assert_eq!(rec.diff_id, Digest::of(&tar), "case {i}");
            let mut whole = Vec::new();
            content
                .open_blob(&rec.diff_id)
                .unwrap_or_else(|e| panic!("case {i}: no whole tar kept: {e}"))
                .read_to_end(&mut whole)
                .unwrap();
            assert!(whole == tar, "case {i}: the kept tar differs");
        }
    }

    #[test]
    fn the_spool_leaves_file_data_out() {
        if crate::root_tier::skip_unless_root("the_spool_leaves_file_data_out") {
            return;
        }
        let t = tempfile::tempdir_in("/var/tmp").unwrap();
        let dir = t.path().join("layer");
        std::fs::create_dir(&dir).unwrap();
        let big = vec![3u8; 3 << 20];
        let tar = tar_of(&[("a", b"hello"), ("dir/big", &big)]);
        let scratch = Box::new(|| tempfile::tempfile_in("/var/tmp"));
        let (mut tee, mut hooks) = crate::spool::spool(&tar[..], &dir, scratch).unwrap();
        let root = crate::saferoot::SafeRoot::open(&dir).unwrap();
        let opts = crate::ApplyOptions {
            record_files: true,
            ..crate::ApplyOptions::layer(crate::WhiteoutMode::Overlay)
        };
        crate::apply::apply_tar_recorded(&root, &[], &mut tee, opts, &mut hooks).unwrap();
        io::copy(&mut tee, &mut io::sink()).unwrap();
        drop(tee);
        let (digest, len, kept) = hooks.finish().unwrap();
        assert_eq!((digest, len), (Digest::of(&tar), tar.len() as u64));
        let crate::spool::Kept::Compact(raw, files) = kept else {
            panic!("nothing was removed: the spool must stay compact");
        };
        assert_eq!(files.len(), 2);
        assert_eq!(
            raw.metadata().unwrap().len(),
            tar.len() as u64 - 5 - (3 << 20),
            "only the bytes between file contents are kept"
        );
    }

    #[test]
    fn a_changed_byte_in_a_large_layer_fails_the_rebuild() {
        // Past the size where hashing moves to a thread of its own: the check still holds.
        if crate::root_tier::skip_unless_root("a_changed_byte_in_a_large_layer_fails_the_rebuild") {
            return;
        }
        let (_t, content, layers) = store();
        let big: Vec<u8> = (0..(6usize << 20)).map(|i| (i % 253) as u8).collect();
        let tar = tar_of(&[("big", &big[..]), ("small", b"x")]);
        let rec = layers.create(None, None, &tar[..], None).unwrap();
        assert_eq!(rec.diff_id, Digest::of(&tar));
        assert!(
            rebuilt(&content, &layers, &rec).unwrap() == tar,
            "the rebuilt tar differs"
        );
        let mut changed = big.clone();
        changed[5 << 20] ^= 1;
        std::fs::write(layers.diff_dir(&rec).join("big"), &changed).unwrap();
        let e = rebuilt(&content, &layers, &rec).unwrap_err();
        assert!(e.to_string().contains("no longer matches its diff ID"), "{e}");
    }

    #[test]
    fn a_changed_file_fails_the_rebuild() {
        if crate::root_tier::skip_unless_root("a_changed_file_fails_the_rebuild") {
            return;
        }
        let (_t, content, layers) = store();
        let tar = tar_of(&[("a", b"hello")]);
        let rec = layers.create(None, None, &tar[..], None).unwrap();
        std::fs::write(layers.diff_dir(&rec).join("a"), b"HELLO").unwrap();
        let e = rebuilt(&content, &layers, &rec).unwrap_err();
        assert!(e.to_string().contains("no longer matches its diff ID"), "{e}");
        // A file swapped for a symlink is never followed.
        std::fs::remove_file(layers.diff_dir(&rec).join("a")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", layers.diff_dir(&rec).join("a")).unwrap();
        let e = rebuilt(&content, &layers, &rec).unwrap_err();
        assert!(e.to_string().contains("layer file a"), "{e}");
    }
}
