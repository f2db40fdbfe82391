//! Interoperability with the real Docker engine and skopeo: archives written by one load into
//! the other with the same image IDs. dockerd runs on its own socket, data root, exec root and
//! pidfile, with no bridge and no iptables rules, and is stopped and cleaned up after.

mod common;

use std::process::Command;

use common::*;

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn archives_cross_between_dockerd_and_wharf_with_the_same_ids() {
    let real = Dockerd::start();
    let w = Wharfd::start();
    let imgs = images_dir();
    // dockerd -> wharf
    let real_id = real
        .docker(&[
            "import",
            "-c",
            "CMD [\"/bin/sh\"]",
            imgs.join("busybox-rootfs.tar").to_str().unwrap(),
            "fromdocker:v1",
        ])
        .trim()
        .to_string();
    let from_docker = w.dir.path().join("from-docker.tar");
    real.docker(&["save", "-o", from_docker.to_str().unwrap(), "fromdocker:v1"]);
    let out = w.ok(&["load", "-i", from_docker.to_str().unwrap()]);
    assert!(out.contains("Loaded image: fromdocker:v1"), "{out}");
    assert_eq!(w.image_id("fromdocker:v1"), real_id);
    // wharf -> dockerd
    let wharf_id = w.import_busybox("fromwharf:v2");
    let from_wharf = w.dir.path().join("from-wharf.tar");
    w.ok(&["save", "-o", from_wharf.to_str().unwrap(), "fromwharf:v2"]);
    let out = real.docker(&["load", "-i", from_wharf.to_str().unwrap()]);
    assert!(out.contains("fromwharf:v2"), "{out}");
    assert_eq!(
        real.docker(&["image", "inspect", "--format", "{{.Id}}", "fromwharf:v2"])
            .trim(),
        wharf_id
    );
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn skopeo_docker_archive_and_oci_layout_load() {
    let w = Wharfd::start();
    let id = w.import_busybox("src:latest");
    let saved = w.dir.path().join("saved.tar");
    w.ok(&["save", "-o", saved.to_str().unwrap(), "src:latest"]);
    // skopeo reads wharf's archive and writes both formats.
    let oci_dir = w.dir.path().join("oci");
    let sk = |args: &[&str]| {
        let o = Command::new("skopeo")
            .args(args)
            .output()
            .expect("skopeo is required: apt-get install skopeo");
        assert!(
            o.status.success(),
            "skopeo {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    sk(&[
        "copy",
        "--quiet",
        &format!("docker-archive:{}", saved.display()),
        &format!("oci:{}:v1", oci_dir.display()),
    ]);
    let sk_archive = w.dir.path().join("skopeo.tar");
    sk(&[
        "copy",
        "--quiet",
        &format!("docker-archive:{}", saved.display()),
        &format!("docker-archive:{}:skopeo/made:v3", sk_archive.display()),
    ]);
    w.ok(&["rmi", "src:latest"]);
    // docker-archive written by skopeo.
    let out = w.ok(&["load", "-i", sk_archive.to_str().unwrap()]);
    assert!(out.contains("Loaded image: skopeo/made:v3"), "{out}");
    assert_eq!(w.image_id("skopeo/made:v3"), id);
    w.ok(&["rmi", "skopeo/made:v3"]);
    // OCI layout (tarred, as `docker load` takes it); skopeo compresses layers with gzip.
    let oci_tar = w.dir.path().join("oci.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&oci_dir)
        .arg("-cf")
        .arg(&oci_tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    // skopeo rewrites the config into OCI form, so the image ID is that config's digest.
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(oci_dir.join("index.json")).unwrap()).unwrap();
    let mdigest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(oci_dir.join("blobs/sha256").join(&mdigest)).unwrap()).unwrap();
    let oci_id = manifest["config"]["digest"].as_str().unwrap().to_string();
    assert!(
        manifest["layers"][0]["mediaType"].as_str().unwrap().contains("gzip"),
        "{manifest}"
    );
    let out = w.ok(&["load", "-i", oci_tar.to_str().unwrap()]);
    assert!(out.contains(&format!("Loaded image ID: {oci_id}")), "{out}");
    assert_eq!(w.ok(&["images", "-q", "--no-trunc"]).trim(), oci_id);
    // Same files: the diff ID of the (decompressed) layer is the original one.
    let layers = w.ok(&["image", "inspect", "--format", "{{index .RootFS.Layers 0}}", &oci_id]);
    let orig: serde_json::Value = serde_json::from_slice(&std::fs::read(saved_manifest_cfg(&saved)).unwrap()).unwrap();
    assert_eq!(layers.trim(), orig["rootfs"]["diff_ids"][0].as_str().unwrap());
    let _ = id;
}

/// Extract the config of the first image in a docker-archive to a file and return its path.
fn saved_manifest_cfg(archive: &std::path::Path) -> std::path::PathBuf {
    let out = archive.with_extension("cfg.json");
    let mut ar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    let mut files = std::collections::HashMap::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().display().to_string();
        if e.size() < 1 << 20 {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut b).unwrap();
            files.insert(p, b);
        }
    }
    let m: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    std::fs::write(&out, &files[m[0]["Config"].as_str().unwrap()]).unwrap();
    out
}
