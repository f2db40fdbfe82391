//! Root tests of the layer store on the real kernel: hostile layer tars (the breakout cases
//! containerd's TestBreakouts names), whiteouts and opaque directories through a real overlay
//! mount, and the vfs driver's whiteout semantics.

use std::fs;
use std::io::Cursor;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use wharf_store::{apply_tar, ContentStore, Driver, LayerStore, WhiteoutMode};

enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Sym(&'a str, &'a str),
    Hard(&'a str, &'a str),
    Char(&'a str),
}

/// Builds a tar byte by byte, so names the `tar` crate's safe builder would refuse (`..`,
/// absolute) can be written as an attacker would.
fn tar_of(entries: &[E]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut h = tar::Header::new_gnu();
        let (name, kind, data, link): (&str, tar::EntryType, &[u8], Option<&str>) = match e {
            E::Dir(n) => (n, tar::EntryType::Directory, b"", None),
            E::File(n, d) => (n, tar::EntryType::Regular, d, None),
            E::Sym(n, t) => (n, tar::EntryType::Symlink, b"", Some(t)),
            E::Hard(n, t) => (n, tar::EntryType::Link, b"", Some(t)),
            E::Char(n) => (n, tar::EntryType::Char, b"", None),
        };
        {
            let raw = h.as_old_mut();
            raw.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                raw.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        h.set_entry_type(kind);
        h.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_size(data.len() as u64);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        out.extend(std::iter::repeat_n(0u8, pad));
    }
    out.extend(std::iter::repeat_n(0u8, 1024));
    out
}

/// A scratch area: `root/target` is where layers go, `root/outside` is a sentinel that no
/// archive may touch.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("target")).unwrap();
        fs::create_dir(dir.path().join("outside")).unwrap();
        fs::write(dir.path().join("outside/secret"), b"untouched").unwrap();
        Scratch { dir }
    }
    fn target(&self) -> std::path::PathBuf {
        self.dir.path().join("target")
    }
    fn outside_unchanged(&self) {
        let mut names: Vec<_> = fs::read_dir(self.dir.path().join("outside"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, vec!["secret"], "something was created outside the target");
        assert_eq!(fs::read(self.dir.path().join("outside/secret")).unwrap(), b"untouched");
        let mut top: Vec<_> = fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        top.sort();
        assert_eq!(
            top,
            vec!["outside", "target"],
            "something was created beside the target"
        );
    }
}

fn apply(s: &Scratch, entries: &[E], mode: WhiteoutMode) -> Result<(), String> {
    apply_tar(&s.target(), Cursor::new(tar_of(entries)), mode)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn breakouts_are_refused_or_contained() {
    // Each case: entries, and whether applying must fail outright. Either way nothing outside
    // the target may change.
    let cases: Vec<(&str, Vec<E>, bool)> = vec![
        ("dotdot name", vec![E::File("../outside/secret", b"pwned")], true),
        ("dotdot deep", vec![E::File("a/../../outside/x", b"pwned")], true),
        ("absolute name", vec![E::File("/outside/secret2", b"contained")], false),
        (
            "symlink out then write through",
            vec![E::Sym("link", "../outside"), E::File("link/secret", b"pwned")],
            false,
        ),
        (
            "absolute symlink then write",
            vec![E::Sym("link", "/"), E::File("link/outside/secret", b"pwned")],
            false,
        ),
        (
            "symlink parent chain",
            vec![
                E::Sym("a", ".."),
                E::Sym("a/b", ".."),
                E::File("a/b/outside/secret", b"pwned"),
            ],
            false,
        ),
        ("hardlink to outside", vec![E::Hard("h", "../outside/secret")], true),
        (
            "hardlink through symlink",
            vec![E::Sym("l", "../outside"), E::Hard("h", "l/secret")],
            false,
        ),
        (
            "symlink replaced by dir",
            vec![E::Sym("d", "../outside"), E::Dir("d"), E::File("d/secret", b"inside")],
            false,
        ),
        (
            "dir replaced by symlink then write",
            vec![E::Dir("d"), E::Sym("d", "../outside"), E::File("d/secret", b"pwned")],
            false,
        ),
        ("whiteout of parent", vec![E::File("a/.wh...", b"")], true),
        (
            "whiteout through symlink",
            vec![E::Sym("l", "../outside"), E::File("l/.wh.secret", b"")],
            false,
        ),
        (
            "opaque through symlink",
            vec![E::Sym("l", "../outside"), E::File("l/.wh..wh..opq", b"")],
            false,
        ),
        (
            "duplicate entries",
            vec![E::File("f", b"one"), E::File("f", b"two")],
            false,
        ),
        (
            "proc magic link",
            vec![E::Sym("p", "/proc/self/root"), E::File("p/outside/secret", b"pwned")],
            false,
        ),
    ];
    for mode in [WhiteoutMode::Overlay, WhiteoutMode::Delete] {
        for (name, entries, must_fail) in &cases {
            let s = Scratch::new();
            let r = apply(&s, entries, mode);
            if *must_fail {
                assert!(r.is_err(), "{name} ({mode:?}): expected an error, applied fine");
            }
            s.outside_unchanged();
        }
    }
}

#[test]
fn writes_land_inside_the_root() {
    if wharf_store::root_tier::skip_unless_root("writes_land_inside_the_root") {
        return;
    }
    let s = Scratch::new();
    apply(
        &s,
        &[
            E::Dir("etc"),
            E::Sym("link", "/etc"),
            E::File("link/passwd", b"root:x:0:0"),
            E::File("/abs", b"a"),
            E::File("f", b"one"),
            E::File("f", b"two"),
        ],
        WhiteoutMode::Delete,
    )
    .unwrap();
    let t = s.target();
    assert_eq!(fs::read(t.join("etc/passwd")).unwrap(), b"root:x:0:0");
    assert_eq!(fs::read(t.join("abs")).unwrap(), b"a");
    assert_eq!(fs::read(t.join("f")).unwrap(), b"two");
    s.outside_unchanged();
}

#[test]
fn truncated_and_garbage_streams_fail() {
    let s = Scratch::new();
    let mut t = tar_of(&[E::File("big", &[7u8; 4000])]);
    t.truncate(1024);
    assert!(apply_tar(&s.target(), Cursor::new(t), WhiteoutMode::Overlay).is_err());
    let s = Scratch::new();
    let garbage = vec![0x55u8; 2048];
    assert!(apply_tar(&s.target(), Cursor::new(garbage), WhiteoutMode::Overlay).is_err());
}

fn layer_store(dir: &Path, driver: Driver) -> LayerStore {
    let cs = ContentStore::open(&dir.join("content")).unwrap();
    LayerStore::open(dir, driver, cs).unwrap()
}

/// Unmounts on drop, so a failed assertion does not leak the mount.
struct Mounted(std::path::PathBuf);
impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(self.0.as_path(), rustix::mount::UnmountFlags::DETACH);
    }
}

#[test]
fn overlay_whiteouts_and_opaque_dirs_through_a_real_mount() {
    if wharf_store::root_tier::skip_unless_root("overlay_whiteouts_and_opaque_dirs_through_a_real_mount") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    assert!(
        wharf_store::layer::overlay_supported(dir.path()),
        "overlayfs must work on this machine"
    );
    let ls = layer_store(dir.path(), Driver::Overlay2);
    let l1 = ls
        .create(
            None,
            None,
            Cursor::new(tar_of(&[
                E::Dir("a"),
                E::File("a/x", b"x"),
                E::File("a/keep", b"k"),
                E::Dir("b"),
                E::File("b/y", b"y"),
            ])),
            None,
        )
        .unwrap();
    let l2 = ls
        .create(
            Some(l1.chain_id),
            None,
            Cursor::new(tar_of(&[
                E::File("a/.wh.x", b""),
                E::File("b/.wh..wh..opq", b""),
                E::File("b/z", b"z"),
            ])),
            None,
        )
        .unwrap();
    let l3 = ls
        .create(
            Some(l2.chain_id),
            None,
            Cursor::new(tar_of(&[E::File("c", b"c")])),
            None,
        )
        .unwrap();
    // The stored whiteout is the kernel's form.
    let wh = fs::symlink_metadata(ls.diff_dir(&l2).join("a/x")).unwrap();
    assert_eq!((wh.mode() & 0o170000, wh.rdev()), (0o020000, 0));
    let target = dir.path().join("mnt");
    fs::create_dir(&target).unwrap();
    ls.mount(&[l1.clone(), l2.clone(), l3.clone()], &target, None).unwrap();
    let _m = Mounted(target.clone());
    assert!(!target.join("a/x").exists(), "whiteout must hide a/x");
    assert_eq!(fs::read(target.join("a/keep")).unwrap(), b"k");
    assert!(!target.join("b/y").exists(), "opaque dir must hide b/y");
    assert_eq!(fs::read(target.join("b/z")).unwrap(), b"z");
    assert_eq!(fs::read(target.join("c")).unwrap(), b"c");
    // Chain IDs as Docker computes them.
    assert_eq!(l1.chain_id, l1.diff_id);
    assert_eq!(l2.chain_id, wharf_reference::chain_ids(&[l1.diff_id, l2.diff_id])[1]);
}

#[test]
fn vfs_applies_whiteouts_by_deleting() {
    if wharf_store::root_tier::skip_unless_root("vfs_applies_whiteouts_by_deleting") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ls = layer_store(dir.path(), Driver::Vfs);
    let l1 = ls
        .create(
            None,
            None,
            Cursor::new(tar_of(&[
                E::File("a/x", b"x"),
                E::File("a/keep", b"k"),
                E::File("b/y", b"y"),
            ])),
            None,
        )
        .unwrap();
    let l2 = ls
        .create(
            Some(l1.chain_id),
            Some(&l1),
            Cursor::new(tar_of(&[
                E::File("b/z", b"z"),
                E::File("a/.wh.x", b""),
                E::File("b/.wh..wh..opq", b""),
            ])),
            None,
        )
        .unwrap();
    let t = ls.diff_dir(&l2);
    assert!(!t.join("a/x").exists());
    assert!(t.join("a/keep").exists());
    assert!(!t.join("b/y").exists(), "opaque whiteout removes what lower layers had");
    assert_eq!(
        fs::read(t.join("b/z")).unwrap(),
        b"z",
        "but keeps what this layer added"
    );
    assert!(ls.diff_dir(&l1).join("a/x").exists(), "the parent layer is untouched");
}

#[test]
fn diff_id_mismatch_discards_the_layer() {
    if wharf_store::root_tier::skip_unless_root("diff_id_mismatch_discards_the_layer") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ls = layer_store(dir.path(), Driver::Overlay2);
    let wrong = wharf_reference::Digest::of(b"not this");
    let err = ls
        .create(None, None, Cursor::new(tar_of(&[E::File("f", b"1")])), Some(wrong))
        .unwrap_err();
    assert!(err.to_string().contains("mismatch"), "{err}");
    let left: Vec<_> = fs::read_dir(ls.root())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "l")
        .collect();
    assert!(left.is_empty(), "a rejected layer leaves no directory: {left:?}");
}

#[test]
fn gzip_and_zstd_layers() {
    if wharf_store::root_tier::skip_unless_root("gzip_and_zstd_layers") {
        return;
    }
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let ls = layer_store(dir.path(), Driver::Overlay2);
    let plain = tar_of(&[E::File("f", b"hello")]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain).unwrap();
    let gz = gz.finish().unwrap();
    let zs = zstd::encode_all(&plain[..], 3).unwrap();
    let want = wharf_reference::Digest::of(&plain);
    for data in [plain.clone(), gz, zs] {
        let rec = ls.create(None, None, Cursor::new(data), Some(want)).unwrap();
        assert_eq!(rec.diff_id, want);
        assert_eq!(fs::read(ls.diff_dir(&rec).join("f")).unwrap(), b"hello");
        ls.discard(&rec).unwrap();
    }
    let _ = E::Char("unused");
}
