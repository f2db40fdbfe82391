//! The snapshot conformance suite (`wharf_store::snapshot::testsuite`) against both
//! snapshotters, on the real kernel (root: it mounts, makes devices and sets owners), and a
//! chain over layers the snapshotters do not own.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wharf_store::snapshot::{testsuite, NoParents, OverlaySnapshotter, ParentLayers, Snapshotter, VfsSnapshotter};

fn root_or_skip() -> bool {
    !wharf_store::root_tier::skip_unless_root("the snapshot suite")
}

/// overlayfs stacks at most 500 layers (`OVL_MAX_STACK`): the deep chain mounts exactly that
/// many, more than one page of mount options holds.
#[test]
fn overlay_conforms() {
    if root_or_skip() {
        testsuite::run_all(
            &|root| Box::new(OverlaySnapshotter::open(root, Arc::new(NoParents)).unwrap()),
            500,
        );
    }
}

/// vfs has no stacking limit; every snapshot is a copy, so the chain is shorter.
#[test]
fn vfs_conforms() {
    if root_or_skip() {
        testsuite::run_all(
            &|root| Box::new(VfsSnapshotter::open(root, Arc::new(NoParents)).unwrap()),
            48,
        );
    }
}

/// Layers of another store, found by key.
struct Dirs(Vec<(String, Vec<PathBuf>)>);

impl ParentLayers for Dirs {
    fn layer_dirs(&self, key: &str) -> Option<Vec<PathBuf>> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, d)| d.clone())
    }
}

#[test]
fn snapshots_stack_on_layers_they_do_not_own() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let p = |n: &str| dir.path().join(n);
    for (d, f) in [("low0", "a"), ("low1", "b")] {
        std::fs::create_dir(p(d)).unwrap();
        std::fs::write(p(d).join(f), d).unwrap();
    }
    // overlay: the layer and its parent, top first; vfs: the layer's whole tree.
    let overlay = Dirs(vec![("sha256:top".into(), vec![p("low1"), p("low0")])]);
    std::fs::create_dir(p("full")).unwrap();
    for f in ["a", "b"] {
        std::fs::write(p("full").join(f), f).unwrap();
    }
    let vfs = Dirs(vec![("sha256:top".into(), vec![p("full")])]);
    let stores: [Box<dyn Snapshotter>; 2] = [
        Box::new(OverlaySnapshotter::open(&p("o"), Arc::new(overlay)).unwrap()),
        Box::new(VfsSnapshotter::open(&p("v"), Arc::new(vfs)).unwrap()),
    ];
    for s in stores {
        let m = s.prepare("c", Some("sha256:top")).unwrap();
        let target = p("m");
        std::fs::create_dir_all(&target).unwrap();
        m[0].mount(&target).unwrap();
        let seen = (target.join("a").exists(), target.join("b").exists());
        std::fs::write(target.join("c"), "mine").unwrap();
        wharf_store::snapshot::unmount(&target).unwrap();
        assert_eq!(seen, (true, true), "{s:?}");
        assert!(!Path::new(&p("low1")).join("c").exists() && !p("full").join("c").exists());
        let mut tar = Vec::new();
        s.diff("c", &mut tar).unwrap();
        let names: Vec<String> = tar::Archive::new(&tar[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["c"], "{s:?}");
        assert!(s.prepare("d", Some("sha256:other")).is_err());
        s.remove("c").unwrap();
    }
}
