//! The conformance suite every [`Snapshotter`] passes (it needs root: it mounts, makes devices
//! and sets owners). Each check gets a fresh snapshotter from `open(dir)` in a directory of
//! its own under a disk file system, and leaves nothing mounted: the lifecycle and its errors;
//! every file type with modes, owners, times and xattrs; whiteouts and opaque directories; hard
//! links made across layers; a deep chain of layers; and diff/apply round trips byte for byte.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::{unmount, Kind, Mount, SnapshotError, Snapshotter};

/// Makes a snapshotter rooted at the given directory.
pub type Open<'a> = &'a dyn Fn(&Path) -> Box<dyn Snapshotter>;

/// Runs every check; `depth` is the length of the chain the deep-chain check mounts (the
/// kernel's limit for overlayfs).
pub fn run_all(open: Open<'_>, depth: usize) {
    lifecycle(open);
    file_types(open);
    whiteouts_and_opaque_directories(open);
    hard_links_across_layers(open);
    diff_apply_round_trip(open);
    deep_chain(open, depth);
}

/// A directory for one check, and a mount point inside it.
struct Scratch {
    dir: tempfile::TempDir,
    mounted: Vec<PathBuf>,
    made: usize,
}

impl Scratch {
    fn new() -> Scratch {
        // /var/tmp: a disk file system (overlayfs wants one for its upper directories).
        Scratch {
            dir: tempfile::tempdir_in("/var/tmp").expect("scratch dir"),
            mounted: Vec::new(),
            made: 0,
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// Mounts `mounts` at a new directory and returns it.
    fn mount(&mut self, mounts: &[Mount]) -> PathBuf {
        self.made += 1;
        let target = self.dir.path().join(format!("m{}", self.made));
        fs::create_dir(&target).expect("mount point");
        for m in mounts {
            m.mount(&target).unwrap_or_else(|e| panic!("mount {m:?}: {e}"));
        }
        self.mounted.push(target.clone());
        target
    }

    fn unmount_all(&mut self) {
        for m in self.mounted.drain(..).rev() {
            unmount(&m).expect("unmount");
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for m in self.mounted.drain(..).rev() {
            let _ = unmount(&m);
        }
    }
}

/// A layer tar built entry by entry.
struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    fn new() -> Layer {
        Layer(tar::Builder::new(Vec::new()))
    }

    fn header(kind: tar::EntryType, mode: u32, uid: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_mtime(1_000_000_000);
        h.set_size(0);
        h
    }

    fn dir(mut self, path: &str, mode: u32) -> Layer {
        let mut h = Self::header(tar::EntryType::Directory, mode, 0);
        self.0.append_data(&mut h, path, &[][..]).expect("dir");
        self
    }

    fn file(mut self, path: &str, data: &[u8], mode: u32, uid: u64) -> Layer {
        let mut h = Self::header(tar::EntryType::Regular, mode, uid);
        h.set_size(data.len() as u64);
        self.0.append_data(&mut h, path, data).expect("file");
        self
    }

    fn link(mut self, kind: tar::EntryType, path: &str, target: &str) -> Layer {
        let mut h = Self::header(kind, 0o777, 0);
        self.0.append_link(&mut h, path, target).expect("link");
        self
    }

    fn node(mut self, kind: tar::EntryType, path: &str, major: u32, minor: u32) -> Layer {
        let mut h = Self::header(kind, 0o666, 0);
        h.set_device_major(major).expect("major");
        h.set_device_minor(minor).expect("minor");
        self.0.append_data(&mut h, path, &[][..]).expect("node");
        self
    }

    /// An extended attribute of the next entry.
    fn xattr(mut self, name: &str, value: &[u8]) -> Layer {
        let key = format!("SCHILY.xattr.{name}");
        self.0.append_pax_extensions([(key.as_str(), value)]).expect("pax");
        self
    }

    fn bytes(self) -> Vec<u8> {
        self.0.into_inner().expect("tar")
    }
}

/// Prepares `key` over `parent`, applies `layer`, commits it as `name`.
fn layer(s: &dyn Snapshotter, name: &str, parent: Option<&str>, layer: Layer) {
    let key = format!("{name}-active");
    s.prepare(&key, parent).expect("prepare");
    s.apply(&key, &mut &layer.bytes()[..]).expect("apply");
    s.commit(name, &key).expect("commit");
}

fn lifecycle(open: Open<'_>) {
    let mut sc = Scratch::new();
    let s = open(&sc.root());
    let m = s.prepare("a", None).unwrap();
    assert!(matches!(&m[..], [Mount::Bind { readonly: false, .. }]), "{m:?}");
    assert_eq!(s.stat("a").unwrap().kind, Kind::Active);
    assert!(matches!(s.prepare("a", None), Err(SnapshotError::AlreadyExists(_))));
    assert!(matches!(
        s.prepare("", None),
        Err(SnapshotError::FailedPrecondition { .. })
    ));
    assert!(matches!(s.prepare("b", Some("nope")), Err(SnapshotError::NotFound(_))));
    // Only a committed snapshot can be a parent.
    assert!(matches!(
        s.prepare("b", Some("a")),
        Err(SnapshotError::FailedPrecondition { .. })
    ));
    s.apply("a", &mut &Layer::new().file("f", b"one", 0o644, 0).bytes()[..])
        .unwrap();
    s.commit("A", "a").unwrap();
    assert!(matches!(s.stat("a"), Err(SnapshotError::NotFound(_))));
    assert_eq!(s.stat("A").unwrap().kind, Kind::Committed);
    assert!(matches!(
        s.commit("A2", "A"),
        Err(SnapshotError::FailedPrecondition { .. })
    ));
    assert!(matches!(s.mounts("A"), Err(SnapshotError::FailedPrecondition { .. })));
    assert!(matches!(
        s.apply("A", &mut &[][..]),
        Err(SnapshotError::FailedPrecondition { .. })
    ));
    s.prepare("b", Some("A")).unwrap();
    assert_eq!(s.stat("b").unwrap().parent.as_deref(), Some("A"));
    assert!(matches!(s.commit("A", "b"), Err(SnapshotError::AlreadyExists(_))));
    // A writable root over the parent: writes stay in the child.
    let root = sc.mount(&s.mounts("b").unwrap());
    assert_eq!(fs::read(root.join("f")).unwrap(), b"one");
    fs::write(root.join("f"), b"two").unwrap();
    sc.unmount_all();
    let v = sc.mount(&s.view("v", Some("A")).unwrap());
    assert_eq!(fs::read(v.join("f")).unwrap(), b"one");
    assert!(fs::write(v.join("g"), b"x").is_err(), "a view is read-only");
    sc.unmount_all();
    assert!(s.usage("b").unwrap().size >= 3);
    let mut keys = Vec::new();
    s.walk(&mut |i| keys.push((i.key.clone(), i.kind))).unwrap();
    assert_eq!(
        keys,
        [
            ("A".to_string(), Kind::Committed),
            ("b".to_string(), Kind::Active),
            ("v".to_string(), Kind::View)
        ]
    );
    assert!(matches!(s.remove("A"), Err(SnapshotError::FailedPrecondition { .. })));
    s.remove("b").unwrap();
    s.remove("v").unwrap();
    s.remove("A").unwrap();
    assert!(matches!(s.remove("A"), Err(SnapshotError::NotFound(_))));
    s.cleanup().unwrap();
    // The records outlive the snapshotter.
    s.prepare("kept", None).unwrap();
    drop(s);
    let s = open(&sc.root());
    assert_eq!(s.stat("kept").unwrap().kind, Kind::Active);
    s.remove("kept").unwrap();
}

fn file_types(open: Open<'_>) {
    let mut sc = Scratch::new();
    let s = open(&sc.root());
    let l = Layer::new()
        .dir("d", 0o750)
        .xattr("user.wharf", b"v1")
        .file("d/f", b"data", 0o640, 1000)
        .file("d/x", b"setuid", 0o4755, 0)
        .link(tar::EntryType::Symlink, "d/sym", "../nowhere")
        .link(tar::EntryType::Link, "d/hard", "d/f")
        .node(tar::EntryType::Fifo, "d/fifo", 0, 0)
        .node(tar::EntryType::Char, "d/null", 1, 3);
    layer(&*s, "L", None, l);
    let root = sc.mount(&s.view("v", Some("L")).unwrap());
    let md = |p: &str| root.join(p).symlink_metadata().unwrap_or_else(|e| panic!("{p}: {e}"));
    assert!(md("d").is_dir());
    assert_eq!(md("d").mode() & 0o7777, 0o750);
    let f = md("d/f");
    assert_eq!(
        (f.mode() & 0o7777, f.uid(), f.gid(), f.len(), f.nlink()),
        (0o640, 1000, 1000, 4, 2)
    );
    assert_eq!(f.mtime(), 1_000_000_000);
    assert_eq!(md("d/hard").ino(), f.ino());
    assert_eq!(md("d/x").mode() & 0o7777, 0o4755);
    assert_eq!(fs::read_link(root.join("d/sym")).unwrap(), Path::new("../nowhere"));
    assert!(md("d/fifo").file_type().is_fifo());
    let null = md("d/null");
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    let mut buf = [0u8; 16];
    let n = rustix::fs::lgetxattr(root.join("d/f"), "user.wharf", &mut buf[..]).expect("xattr");
    assert_eq!(&buf[..n], b"v1");
    sc.unmount_all();
    s.remove("v").unwrap();
    s.remove("L").unwrap();
}

fn whiteouts_and_opaque_directories(open: Open<'_>) {
    let mut sc = Scratch::new();
    let s = open(&sc.root());
    let base = Layer::new()
        .dir("a", 0o755)
        .file("a/x", b"x", 0o644, 0)
        .file("a/y", b"y", 0o644, 0)
        .file("b", b"b", 0o644, 0)
        .dir("c", 0o755)
        .file("c/d", b"d", 0o644, 0);
    layer(&*s, "L1", None, base);
    let top = Layer::new()
        .file(".wh.b", b"", 0o644, 0)
        .dir("a", 0o755)
        .file("a/.wh..wh..opq", b"", 0o644, 0)
        .file("a/z", b"z", 0o644, 0)
        .file("c/.wh.d", b"", 0o644, 0);
    layer(&*s, "L2", Some("L1"), top);
    let root = sc.mount(&s.view("v", Some("L2")).unwrap());
    let names = |d: &str| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(root.join(d))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(""), ["a", "c"]);
    assert_eq!(names("a"), ["z"]);
    assert!(names("c").is_empty());
    sc.unmount_all();
    // The diff of the top layer says the same again.
    let mut tar = Vec::new();
    s.diff("L2", &mut tar).unwrap();
    let entries = tar_entries(&tar);
    for want in [".wh.b", "a/", "a/z", "c/", "c/.wh.d"] {
        assert!(entries.iter().any(|e| e == want), "{want} in {entries:?}");
    }
    // The emptied directory: opaque (overlay keeps the mark), or each name it hid deleted (a
    // naive diff, as Docker's vfs writes it); either applies to the same tree.
    let has = |e: &str| entries.iter().any(|x| x == e);
    assert!(
        has("a/.wh..wh..opq") || (has("a/.wh.x") && has("a/.wh.y")),
        "{entries:?}"
    );
    for k in ["v", "L2", "L1"] {
        s.remove(k).unwrap();
    }
}

fn hard_links_across_layers(open: Open<'_>) {
    let mut sc = Scratch::new();
    let s = open(&sc.root());
    layer(&*s, "L1", None, Layer::new().file("orig", b"shared", 0o644, 0));
    s.prepare("c", Some("L1")).unwrap();
    let root = sc.mount(&s.mounts("c").unwrap());
    fs::hard_link(root.join("orig"), root.join("again")).unwrap();
    sc.unmount_all();
    let mut tar = Vec::new();
    s.diff("c", &mut tar).unwrap();
    s.prepare("t", Some("L1")).unwrap();
    s.apply("t", &mut &tar[..]).unwrap();
    s.commit("T", "t").unwrap();
    let v = sc.mount(&s.view("v", Some("T")).unwrap());
    let (a, b) = (v.join("orig").metadata().unwrap(), v.join("again").metadata().unwrap());
    assert_eq!(a.ino(), b.ino(), "one inode for both names");
    assert_eq!(fs::read(v.join("again")).unwrap(), b"shared");
    sc.unmount_all();
    for k in ["v", "T", "c", "L1"] {
        s.remove(k).unwrap();
    }
}

fn diff_apply_round_trip(open: Open<'_>) {
    let mut sc = Scratch::new();
    let s = open(&sc.root());
    let base = Layer::new()
        .dir("keep", 0o755)
        .file("keep/same", b"same", 0o644, 0)
        .file("keep/edit", b"before", 0o644, 0)
        .file("gone", b"bye", 0o644, 0)
        .dir("tree", 0o755)
        .file("tree/leaf", b"leaf", 0o644, 0);
    layer(&*s, "B", None, base);
    s.prepare("work", Some("B")).unwrap();
    let root = sc.mount(&s.mounts("work").unwrap());
    fs::write(root.join("keep/edit"), b"after").unwrap();
    fs::remove_file(root.join("gone")).unwrap();
    fs::remove_dir_all(root.join("tree")).unwrap();
    fs::create_dir(root.join("tree")).unwrap();
    fs::write(root.join("tree/new"), b"new").unwrap();
    fs::create_dir_all(root.join("added/deep")).unwrap();
    std::os::unix::fs::symlink("/keep/same", root.join("added/ln")).unwrap();
    // File capabilities (cap_net_raw, permitted and effective) travel in layers, as in Docker's.
    fs::write(root.join("added/ping"), b"elf").unwrap();
    rustix::fs::setxattr(
        root.join("added/ping"),
        "security.capability",
        &CAP_NET_RAW,
        rustix::fs::XattrFlags::empty(),
    )
    .expect("set capability");
    sc.unmount_all();
    let ch = s.changes("work").unwrap();
    for want in [
        ("/added", 1),
        ("/added/ln", 1),
        ("/gone", 2),
        ("/keep/edit", 0),
        ("/tree/new", 1),
    ] {
        assert!(
            ch.iter().any(|(p, k)| p == want.0 && *k == want.1),
            "{want:?} in {ch:?}"
        );
    }
    assert!(!ch.iter().any(|(p, _)| p == "/keep/same"), "{ch:?}");
    let mut first = Vec::new();
    s.diff("work", &mut first).unwrap();
    s.commit("W", "work").unwrap();
    // The diff applied over the same parent gives the same tree, and the same diff again.
    s.prepare("again", Some("B")).unwrap();
    s.apply("again", &mut &first[..]).unwrap();
    let mut second = Vec::new();
    s.diff("again", &mut second).unwrap();
    assert_eq!(tar_entries(&first), tar_entries(&second));
    assert!(first == second, "diff → apply → diff is byte for byte the same");
    s.commit("A", "again").unwrap();
    let w = sc.mount(&s.view("vw", Some("W")).unwrap());
    let a = sc.mount(&s.view("va", Some("A")).unwrap());
    assert_eq!(tree(&w), tree(&a));
    let mut buf = [0u8; 64];
    let n = rustix::fs::lgetxattr(a.join("added/ping"), "security.capability", &mut buf[..]).expect("capability");
    assert_eq!(&buf[..n], &CAP_NET_RAW[..]);
    let t = tree(&w);
    assert!(t.iter().any(|l| l.starts_with("keep/edit f 644 0 after")), "{t:?}");
    assert!(
        !t.iter().any(|l| l.starts_with("gone") || l.starts_with("tree/leaf")),
        "{t:?}"
    );
    sc.unmount_all();
    for k in ["vw", "va", "W", "A", "B"] {
        s.remove(k).unwrap();
    }
}

fn deep_chain(open: Open<'_>, depth: usize) {
    let mut sc = Scratch::new();
    let s = open(&sc.root());
    let mut parent: Option<String> = None;
    for i in 0..depth {
        let name = format!("layer-{i}");
        let l = Layer::new().file(&format!("f{i}"), i.to_string().as_bytes(), 0o644, 0);
        layer(&*s, &name, parent.as_deref(), l);
        parent = Some(name);
    }
    let top = parent.expect("a chain");
    let root = sc.mount(&s.view("v", Some(&top)).unwrap());
    for i in [0, depth / 2, depth - 1] {
        assert_eq!(fs::read(root.join(format!("f{i}"))).unwrap(), i.to_string().as_bytes());
    }
    assert_eq!(fs::read_dir(&root).unwrap().count(), depth);
    sc.unmount_all();
    s.remove("v").unwrap();
    for i in (0..depth).rev() {
        s.remove(&format!("layer-{i}")).unwrap();
    }
}

/// `security.capability` for cap_net_raw, permitted and effective (`vfs_cap_data` revision 2).
const CAP_NET_RAW: [u8; 20] = [1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// The names in a tar, in order.
fn tar_entries(tar: &[u8]) -> Vec<String> {
    tar::Archive::new(tar)
        .entries()
        .expect("tar")
        .map(|e| e.expect("entry").path().expect("path").display().to_string())
        .map(|p| if p.is_empty() { "./".into() } else { p })
        .collect::<Vec<_>>()
        .into_iter()
        .zip(tar_kinds(tar))
        .map(|(p, dir)| if dir && !p.ends_with('/') { format!("{p}/") } else { p })
        .collect()
}

fn tar_kinds(tar: &[u8]) -> Vec<bool> {
    tar::Archive::new(tar)
        .entries()
        .expect("tar")
        .map(|e| e.expect("entry").header().entry_type().is_dir())
        .collect()
}

/// A tree as lines: path, type, mode, owner, and content or target.
fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, rel: &Path, out: &mut Vec<String>) {
        let mut ents: Vec<_> = fs::read_dir(root.join(rel)).unwrap().map(|e| e.unwrap()).collect();
        ents.sort_by_key(|e| e.file_name());
        for e in ents {
            let r = rel.join(e.file_name());
            let md = e.path().symlink_metadata().unwrap();
            let what = if md.is_dir() {
                "d".to_string()
            } else if md.file_type().is_symlink() {
                format!("l {}", fs::read_link(e.path()).unwrap().display())
            } else {
                let mut s = String::new();
                fs::File::open(e.path()).unwrap().read_to_string(&mut s).unwrap();
                format!("f {:o} {} {s}", md.mode() & 0o7777, md.uid())
            };
            out.push(format!("{} {what}", r.display()));
            if md.is_dir() {
                walk(root, &r, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, Path::new(""), &mut out);
    out
}
