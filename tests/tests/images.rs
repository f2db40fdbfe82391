//! End-to-end: the real docker CLI and raw HTTP against a real wharfd, for the API edge and
//! every local image operation, hostile archives, crash safety and the data-root lock.

mod common;

use std::io::{Read, Write};
use std::process::Command;

use common::*;
use serde_json::Value;

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn api_edge_headers_versions_and_errors() {
    let d = Wharfd::start();
    let (st, h, body) = d.http("HEAD", "/_ping", b"");
    assert!(st.contains("200"), "{st}");
    assert!(body.is_empty());
    assert_eq!(header(&h, "api-version"), Some("1.50"));
    assert_eq!(header(&h, "ostype"), Some("linux"));
    assert_eq!(header(&h, "server"), Some("Docker/28.2.2 (linux)"));
    assert_eq!(header(&h, "cache-control"), Some("no-cache, no-store, must-revalidate"));
    assert_eq!(header(&h, "pragma"), Some("no-cache"));
    let (_, _, body) = d.http("GET", "/_ping", b"");
    assert_eq!(body, b"OK");

    let (st, h, body) = d.http("GET", "/version", b"");
    assert!(st.contains("200"));
    assert_eq!(header(&h, "content-type"), Some("application/json"));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["ApiVersion"], "1.50");
    assert_eq!(v["MinAPIVersion"], "1.24");
    assert_eq!(v["Components"][0]["Name"], "Engine");
    assert!(v["Platform"]["Name"].is_string());

    let (st, _, _) = d.http("GET", "/v1.24/version", b"");
    assert!(st.contains("200"), "{st}");
    let (st, h, body) = d.http("GET", "/v1.99/version", b"");
    assert!(st.contains("400"), "{st}");
    assert_eq!(header(&h, "content-type"), Some("application/json"));
    let e: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        e["message"],
        "client version 1.99 is too new. Maximum supported API version is 1.50"
    );
    let (st, _, body) = d.http("GET", "/v1.12/version", b"");
    assert!(st.contains("400"));
    assert!(String::from_utf8_lossy(&body).contains("too old"));
    let (st, h, body) = d.http("GET", "/v1.50/no/such/route", b"");
    assert!(st.contains("404"));
    assert_eq!(header(&h, "content-type"), Some("application/json"));
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["message"],
        "page not found"
    );
    let (st, _, body) = d.http("GET", "/images/nosuch/json", b"");
    assert!(st.contains("404"));
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["message"],
        "No such image: nosuch"
    );
    let (st, _, _) = d.http("GET", "/images/json?filters=%7Bbad", b"");
    assert!(st.contains("400"), "{st}");
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn docker_cli_version_and_info() {
    let d = Wharfd::start();
    assert_eq!(d.ok(&["version", "--format", "{{.Server.APIVersion}}"]).trim(), "1.50");
    assert_eq!(
        d.ok(&["version", "--format", "{{.Server.Os}}/{{.Server.Arch}}"]).trim(),
        "linux/amd64"
    );
    let info = d.ok(&["info"]);
    assert!(info.contains("Storage Driver: overlay2"), "{info}");
    assert!(
        info.contains(&format!("Docker Root Dir: {}", d.data_root().display())),
        "{info}"
    );
    assert_eq!(d.ok(&["info", "--format", "{{.Images}}"]).trim(), "0");
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn import_tag_history_inspect_rmi() {
    let d = Wharfd::start();
    let images = images_dir();
    // From a file, with changes and a message.
    let id = d
        .ok(&[
            "import",
            "-m",
            "stand-in busybox",
            "-c",
            "CMD [\"/bin/sh\"]",
            "-c",
            "ENV A=1",
            "-c",
            "LABEL team=wharf",
            "-c",
            "WORKDIR /srv",
            "-c",
            "EXPOSE 80",
            images.join("busybox-rootfs.tar").to_str().unwrap(),
            "busybox:latest",
        ])
        .trim()
        .to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    let cfg: Value = serde_json::from_str(&d.ok(&["image", "inspect", "busybox"])).unwrap();
    let c = &cfg[0];
    assert_eq!(c["Id"], id);
    assert_eq!(c["Config"]["Cmd"][0], "/bin/sh");
    assert_eq!(c["Config"]["Env"][0], "A=1");
    assert_eq!(c["Config"]["Labels"]["team"], "wharf");
    assert_eq!(c["Config"]["WorkingDir"], "/srv");
    assert!(c["Config"]["ExposedPorts"]["80/tcp"].is_object());
    assert_eq!(c["Comment"], "stand-in busybox");
    assert_eq!(c["RepoTags"][0], "busybox:latest");
    assert_eq!(c["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    // The image ID is the digest of the config, and the diff ID the digest of the tar.
    let (_, _, raw) = d.http("GET", "/images/get?names=busybox", b"");
    let mut ar = tar::Archive::new(&raw[..]);
    let mut seen_config = false;
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().display().to_string();
        if p == format!("blobs/sha256/{}", &id[7..]) {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut b).unwrap();
            assert_eq!(
                format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&b))),
                id
            );
            seen_config = true;
        }
    }
    assert!(seen_config);
    let tar_bytes = std::fs::read(images.join("busybox-rootfs.tar")).unwrap();
    let diff = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&tar_bytes))
    );
    assert_eq!(c["RootFS"]["Layers"][0], diff);

    // From stdin, gzip-compressed, untagged.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&std::fs::read(images.join("hello-rootfs.tar")).unwrap())
        .unwrap();
    let gz = gz.finish().unwrap();
    let o = d.docker_stdin(&["import", "-"], Some(&gz));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let hello_id = String::from_utf8(o.stdout).unwrap().trim().to_string();
    assert_eq!(
        d.ok(&["images", "-q", "--filter", "dangling=true"]).trim(),
        &hello_id[7..19]
    );

    // tag, images with filters and formats.
    d.ok(&["tag", "busybox", "busybox:1.35"]);
    d.ok(&["tag", &hello_id[7..19], "localhost:5000/team/hello:v1"]);
    let list = d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let mut names: Vec<&str> = list.lines().collect();
    names.sort();
    assert_eq!(
        names,
        vec!["busybox:1.35", "busybox:latest", "localhost:5000/team/hello:v1"]
    );
    assert_eq!(
        d.ok(&["images", "-q", "--filter", "reference=busybox"]).lines().count(),
        2
    );
    assert_eq!(
        d.ok(&["images", "-q", "--filter", "label=team=wharf"]).lines().count(),
        2
    );
    assert_eq!(d.ok(&["images", "-q", "--filter", "dangling=true"]).trim(), "");
    assert_eq!(d.ok(&["images", "-q", "--no-trunc", "busybox:1.35"]).trim(), id);
    let table = d.ok(&["images"]);
    assert!(table.starts_with("REPOSITORY"), "{table}");
    assert!(d.fails(&["tag", "nosuch", "x"]).contains("No such image: nosuch"));
    assert!(d
        .fails(&["tag", "busybox", "Bad:Name"])
        .contains("invalid reference format"));

    // history
    let h = d.ok(&["history", "--no-trunc", "--format", "{{.ID}} {{.Comment}}", "busybox"]);
    assert_eq!(h.trim(), format!("{id} stand-in busybox"));

    // rmi: untag while other tags remain, then delete with the last one.
    let out = d.ok(&["rmi", "busybox:1.35"]);
    assert_eq!(out.trim(), "Untagged: busybox:1.35");
    assert!(d.ok(&["image", "inspect", "busybox"]).contains(&id));
    // Deleting by ID an image named in two repositories needs -f.
    d.ok(&["tag", "busybox", "other/name:x"]);
    let err = d.fails(&["rmi", &id[7..19]]);
    assert!(err.contains("image is referenced in multiple repositories"), "{err}");
    let out = d.ok(&["rmi", "-f", &id[7..19]]);
    assert!(
        out.contains("Untagged: busybox:latest") && out.contains("Untagged: other/name:x"),
        "{out}"
    );
    assert!(out.contains(&format!("Deleted: {id}")), "{out}");
    assert!(d.fails(&["image", "inspect", &id]).contains("No such image"));
    // The layer left with the image (no other image shares it).
    let left = tree(&d.data_root().join("overlay2"));
    assert_eq!(
        left.iter().filter(|p| !p.starts_with('l') && !p.contains('/')).count(),
        1,
        "{left:?}"
    );
    assert!(d.fails(&["rmi", "nosuch"]).contains("No such image: nosuch"));

    // prune removes the untagged hello once its tag goes.
    d.ok(&["rmi", "localhost:5000/team/hello:v1"]);
    assert_eq!(d.ok(&["images", "-q"]).trim(), "");
    let df = d.ok(&["system", "df"]);
    assert!(df.contains("Images"), "{df}");
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn prune_and_df() {
    let d = Wharfd::start();
    let a = d.import_busybox("keep:me");
    let tar = images_dir().join("hello-rootfs.tar");
    let b = d.ok(&["import", tar.to_str().unwrap()]).trim().to_string();
    let df = d.ok(&["system", "df", "--format", "{{.Type}} {{.TotalCount}}"]);
    assert!(df.contains("Images 2"), "{df}");
    let out = d.ok(&["image", "prune", "-f"]);
    assert!(out.contains(&format!("deleted: {b}")), "{out}");
    assert_eq!(d.ok(&["images", "-q", "--no-trunc"]).trim(), a);
    d.ok(&["image", "prune", "-a", "-f"]);
    assert_eq!(d.ok(&["images", "-q"]).trim(), "");
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn save_load_roundtrip_keeps_ids_overlay2_and_vfs() {
    for extra in [&[][..], &["--storage-driver", "vfs"][..]] {
        let d = Wharfd::start_with(extra);
        let a = d.import_busybox("busybox:latest");
        d.ok(&["tag", "busybox", "busybox:two"]);
        let hello = images_dir().join("hello-rootfs.tar");
        let b = d.ok(&["import", hello.to_str().unwrap(), "hello"]).trim().to_string();
        let out = d.dir.path().join("both.tar");
        d.ok(&["save", "-o", out.to_str().unwrap(), "busybox", "hello"]);
        d.ok(&["rmi", "busybox:latest", "busybox:two", "hello"]);
        assert_eq!(d.ok(&["images", "-q"]).trim(), "");
        let loaded = d.ok(&["load", "-i", out.to_str().unwrap()]);
        assert!(loaded.contains("Loaded image: busybox:latest"), "{loaded}");
        assert!(loaded.contains("Loaded image: busybox:two"), "{loaded}");
        assert!(loaded.contains("Loaded image: hello:latest"), "{loaded}");
        assert_eq!(d.image_id("busybox:two"), a);
        assert_eq!(d.image_id("hello"), b);
        // Loading again is idempotent.
        d.ok(&["load", "-i", out.to_str().unwrap()]);
        assert_eq!(d.ok(&["images", "-q"]).lines().count(), 3);
        // save to stdout works too.
        let o = d.docker(&["save", "hello"]);
        assert!(o.status.success());
        assert!(o.stdout.len() > 10_000);
        // The stored layer really holds the files.
        let v: Value = serde_json::from_str(&d.ok(&["image", "inspect", "busybox"])).unwrap();
        let upper = v[0]["GraphDriver"]["Data"]["UpperDir"].as_str().unwrap().to_string();
        assert!(std::path::Path::new(&upper).join("bin/busybox").exists(), "{upper}");
        let info = d.ok(&["info", "--format", "{{.Driver}}"]);
        assert_eq!(info.trim(), if extra.is_empty() { "overlay2" } else { "vfs" });
        // The layer is stored once: its files, and the tar without their contents (the
        // save above gave back the same IDs from it).
        let diff = v[0]["RootFS"]["Layers"][0]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")
            .to_string();
        let content = d.data_root().join("content");
        assert!(
            !content.join("blobs/sha256").join(&diff).exists(),
            "a full copy of the layer tar ({extra:?})"
        );
        let record = std::fs::metadata(content.join("split/sha256").join(&diff))
            .unwrap()
            .len();
        let tar = std::fs::metadata(images_dir().join("busybox-rootfs.tar"))
            .unwrap()
            .len();
        assert!(record * 10 < tar, "record of {record} bytes for a {tar}-byte tar");
    }
}

/// Builds a docker-archive by hand so that tests can make it hostile.
fn archive(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        let raw = h.as_old_mut();
        raw.name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

fn sha(b: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b))
}

fn layer_tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let owned: Vec<(&str, Vec<u8>)> = entries.iter().map(|(n, d)| (*n, d.to_vec())).collect();
    archive(&owned)
}

fn config_for(diffs: &[String]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diffs.iter().map(|d| format!("sha256:{d}")).collect::<Vec<_>>()},
    }))
    .unwrap()
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn hostile_archives_get_clear_errors_and_change_nothing() {
    let d = Wharfd::start();
    let good_layer = layer_tar(&[("f", b"data")]);
    let evil_layer = layer_tar(&[("../../../../../tmp/wharf-pwned", b"x")]);
    let gl = sha(&good_layer);
    let el = sha(&evil_layer);
    let cfg_good = config_for(std::slice::from_ref(&gl));
    let cfg_evil = config_for(std::slice::from_ref(&el));
    let man = |cfg: &[u8], layers: &[&str]| {
        serde_json::to_vec(&serde_json::json!([{
            "Config": format!("blobs/sha256/{}", sha(cfg)), "RepoTags": ["evil:latest"],
            "Layers": layers.iter().map(|l| format!("blobs/sha256/{l}")).collect::<Vec<_>>(),
        }]))
        .unwrap()
    };
    let blob = |b: &[u8]| format!("blobs/sha256/{}", sha(b));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("layer escaping the root", archive(&[
            (&blob(&evil_layer), evil_layer.clone()),
            (&blob(&cfg_evil), cfg_evil.clone()),
            ("manifest.json", man(&cfg_evil, &[&el])),
        ]), "escapes the root"),
        ("diff ID mismatch", archive(&[
            (&blob(&good_layer), good_layer.clone()),
            (&blob(&cfg_evil), cfg_evil.clone()),
            ("manifest.json", man(&cfg_evil, &[&gl])),
        ]), "mismatch"),
        ("manifest names a path outside", archive(&[
            (&blob(&cfg_good), cfg_good.clone()),
            ("manifest.json", serde_json::to_vec(&serde_json::json!([{
                "Config": "../../../../etc/passwd", "RepoTags": ["evil:latest"], "Layers": []}])).unwrap()),
        ]), "no file"),
        ("malformed config digest in OCI index", archive(&[
            ("oci-layout", b"{\"imageLayoutVersion\":\"1.0.0\"}".to_vec()),
            ("index.json", br#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:../../x","size":1}]}"#.to_vec()),
        ]), "invalid"),
        ("unknown digest algorithm", archive(&[
            ("index.json", br#"{"schemaVersion":2,"manifests":[{"digest":"md5:d41d8cd98f00b204e9800998ecf8427e","size":1}]}"#.to_vec()),
        ]), "unsupported digest algorithm"),
        ("layer count disagrees with config", archive(&[
            (&blob(&good_layer), good_layer.clone()),
            (&blob(&cfg_good), cfg_good.clone()),
            ("manifest.json", man(&cfg_good, &[&gl, &gl])),
        ]), "diff IDs"),
        ("oversized config", archive(&[
            ("manifest.json", man(b"x", &[])),
            (&blob(b"x"), vec![b' '; 9 << 20]),
        ]), "not a layer"),
        ("config with a huge uid is still just JSON; bad rootfs type", archive(&[
            (&blob(br#"{"rootfs":{"type":"bogus","diff_ids":[]},"config":{"User":"4294967296"}}"#), br#"{"rootfs":{"type":"bogus","diff_ids":[]},"config":{"User":"4294967296"}}"#.to_vec()),
            ("manifest.json", man(br#"{"rootfs":{"type":"bogus","diff_ids":[]},"config":{"User":"4294967296"}}"#, &[])),
        ]), "rootfs type"),
        ("truncated archive", {
            let mut a = archive(&[(&blob(&good_layer), good_layer.clone())]);
            a.truncate(700);
            a
        }, "invalid"),
        ("not a tar at all", b"this is not a tar archive, not even close".repeat(40), "invalid"),
        ("empty archive", archive(&[]), "neither manifest.json"),
    ];
    let _ = std::fs::remove_file("/tmp/wharf-pwned");
    for (name, data, want) in cases {
        let o = d.docker_stdin(&["load"], Some(&data));
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(!o.status.success(), "{name}: load succeeded");
        assert!(err.contains(want), "{name}: error {err:?} does not say {want:?}");
        assert_eq!(d.ok(&["images", "-qa"]).trim(), "", "{name}: an image became visible");
        let left: Vec<String> = tree(&d.data_root().join("overlay2"))
            .into_iter()
            .filter(|p| p != "l")
            .collect();
        assert!(left.is_empty(), "{name}: layer directories left behind: {left:?}");
        let blobs = tree(&d.data_root().join("content/blobs/sha256"));
        assert!(blobs.is_empty(), "{name}: blobs left behind: {blobs:?}");
    }
    assert!(!std::path::Path::new("/tmp/wharf-pwned").exists());
    // Hostile names at the API.
    for bad in ["../x", "a/../b", "UPPER", ""] {
        let (st, _, _) = d.http("POST", &format!("/images/busybox/tag?repo={bad}"), b"");
        assert!(st.contains("400") || st.contains("404"), "tag repo={bad:?}: {st}");
    }
    let long = "a".repeat(10_000);
    let (st, _, _) = d.http("POST", &format!("/images/create?fromSrc=-&repo={long}"), b"");
    assert!(st.contains("400"), "{st}");
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn kill9_during_load_leaves_no_half_visible_image() {
    let mut d = Wharfd::start();
    // A layer big enough that the load is still running when the daemon dies.
    let mut big = Vec::with_capacity(300 << 20);
    {
        let mut b = tar::Builder::new(&mut big);
        for i in 0..30 {
            let data = vec![i as u8; 10 << 20];
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            h.set_path(format!("f{i}")).unwrap();
            h.set_cksum();
            b.append(&h, &data[..]).unwrap();
        }
        b.finish().unwrap();
    }
    let cfg = config_for(&[sha(&big)]);
    let man = serde_json::to_vec(&serde_json::json!([{
        "Config": format!("blobs/sha256/{}", sha(&cfg)), "RepoTags": ["big:latest"],
        "Layers": [format!("blobs/sha256/{}", sha(&big))]}]))
    .unwrap();
    let arch = archive(&[
        (&format!("blobs/sha256/{}", sha(&cfg)), cfg.clone()),
        (&format!("blobs/sha256/{}", sha(&big)), big),
        ("manifest.json", man),
    ]);
    let path = d.dir.path().join("big.tar");
    std::fs::write(&path, &arch).unwrap();
    drop(arch);
    let sock = d.sock.clone();
    let p2 = path.clone();
    let loader = std::thread::spawn(move || {
        Command::new("docker")
            .args(["load", "-i", p2.to_str().unwrap()])
            .env("DOCKER_HOST", format!("unix://{}", sock.display()))
            .output()
            .unwrap()
    });
    // Kill once the layer is partly extracted.
    let start = std::time::Instant::now();
    loop {
        let n = tree(&d.data_root().join("overlay2"))
            .iter()
            .filter(|p| p.contains("/diff/f"))
            .count();
        if n >= 3 || start.elapsed() > std::time::Duration::from_secs(60) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    d.kill9();
    let o = loader.join().unwrap();
    assert!(!o.status.success(), "load should have been cut off");
    d.spawn();
    assert_eq!(d.ok(&["images", "-qa"]).trim(), "");
    let left: Vec<String> = tree(&d.data_root().join("overlay2"))
        .into_iter()
        .filter(|p| p != "l")
        .collect();
    assert!(left.is_empty(), "leftovers after restart: {left:?}");
    assert!(tree(&d.data_root().join("content/ingest")).is_empty());
    // And the same load now completes.
    assert!(d
        .ok(&["load", "-i", path.to_str().unwrap()])
        .contains("Loaded image: big:latest"));
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn data_root_lock_refuses_a_second_daemon_and_shutdown_is_clean() {
    let mut d = Wharfd::start();
    let o = Command::new(bin("wharfd"))
        .args([
            "--data-root",
            d.data_root().to_str().unwrap(),
            "--exec-root",
            d.dir.path().join("exec2").to_str().unwrap(),
            "-H",
            &format!("unix://{}", d.dir.path().join("second.sock").display()),
            "--config-file",
            "/nonexistent.json",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("already using data root"), "{err}");
    // Plain TCP is refused unless forced, before anything is set up on the machine.
    let refused_bridge = format!("{}x", common::bridge_name(d.dir.path()));
    let o = Command::new(bin("wharfd"))
        .args([
            "--data-root",
            d.dir.path().join("d3").to_str().unwrap(),
            "--exec-root",
            d.dir.path().join("exec3").to_str().unwrap(),
            "-H",
            "tcp://127.0.0.1:0",
            "--config-file",
            "/nonexistent.json",
            "--bridge",
            &refused_bridge,
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("without TLS"));
    let link = Command::new("ip")
        .args(["link", "show", &refused_bridge])
        .output()
        .unwrap();
    assert!(!link.status.success(), "a refused start made a bridge");
    let table = Command::new("nft")
        .args(["list", "table", "ip", &format!("wharf_{refused_bridge}")])
        .output()
        .unwrap();
    assert!(!table.status.success(), "a refused start made an nftables table");
    // A flag and the config file naming the same setting is an error, as in dockerd.
    let cfg = d.dir.path().join("daemon.json");
    std::fs::write(&cfg, br#"{"data-root": "/tmp/x"}"#).unwrap();
    let o = Command::new(bin("wharfd"))
        .args(["--data-root", "/tmp/y", "--config-file", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("specified both as a flag and in the configuration file"));
    d.stop();
    assert!(!d.sock.exists(), "socket removed on shutdown");
    assert!(
        !d.dir.path().join("exec/wharfd.pid").exists(),
        "pidfile removed on shutdown"
    );
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn import_from_a_url() {
    // A server of the test's own on loopback hands out the busybox rootfs.
    let tar = std::fs::read(images_dir().join("busybox-rootfs.tar")).unwrap();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        use std::io::{BufRead, BufReader, Write};
        for c in l.incoming().flatten() {
            let mut out = c.try_clone().unwrap();
            let mut line = String::new();
            let mut r = BufReader::new(c);
            let _ = r.read_line(&mut line);
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
            }
            if line.contains(" /rootfs.tar ") {
                let _ = write!(
                    out,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    tar.len()
                );
                let _ = out.write_all(&tar);
            } else {
                let _ = out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        }
    });
    let w = Wharfd::start();
    let out = w.ok(&[
        "import",
        "-c",
        "CMD [\"/bin/sh\"]",
        &format!("http://{host}/rootfs.tar"),
        "fromurl:1",
    ]);
    let id = out.lines().last().unwrap_or("").trim().to_string();
    assert!(id.starts_with("sha256:"), "{out}");
    assert_eq!(w.image_id("fromurl:1"), id);
    assert_eq!(w.ok(&["run", "--rm", "fromurl:1", "echo", "imported"]), "imported\n");
    let hist = w.ok(&["history", "--no-trunc", "--format", "{{.Comment}}", "fromurl:1"]);
    assert_eq!(hist.trim(), format!("Imported from http://{host}/rootfs.tar"));
    let e = w.fails(&["import", &format!("http://{host}/missing.tar"), "nope:1"]);
    assert!(e.contains("404"), "{e}");
    // Only http and https are fetched (the docker CLI takes other names for files).
    let (status, _, body) = w.http("POST", "/images/create?fromSrc=ftp://example.invalid/x.tar", b"");
    assert!(status.contains(" 400 "), "{status}");
    assert!(String::from_utf8_lossy(&body).contains("unsupported URL scheme"));
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn answers_follow_the_api_version_asked_and_there_is_no_swarm() {
    let d = Wharfd::start();
    d.import_busybox("busybox:latest");
    // Before API 1.45 image inspect carried the image's container and its config.
    d.ok(&["run", "--name", "src", "busybox", "touch", "/made"]);
    let img = d.ok(&["commit", "src", "committed:1"]).trim().to_string();
    let cid = d.ok(&["inspect", "-f", "{{.Id}}", "src"]).trim().to_string();
    let get = |path: &str| -> Value {
        let (st, _, body) = d.http("GET", path, b"");
        assert!(st.contains("200"), "{path}: {st}");
        serde_json::from_slice(&body).unwrap()
    };
    let old = get("/v1.44/images/committed:1/json");
    assert_eq!(old["Id"], img.as_str());
    assert_eq!(old["Container"], cid.as_str());
    assert_eq!(old["ContainerConfig"]["Cmd"], serde_json::json!(["touch", "/made"]));
    let new = get("/v1.50/images/committed:1/json");
    assert!(
        new.get("Container").is_none() && new.get("ContainerConfig").is_none(),
        "{new}"
    );
    // Before API 1.42 a volume prune took named volumes too; since, only anonymous ones.
    d.ok(&["volume", "create", "named1"]);
    let (_, _, body) = d.http("POST", "/v1.50/volumes/prune", b"");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["VolumesDeleted"], serde_json::json!([]), "{v}");
    let (_, _, body) = d.http("POST", "/v1.41/volumes/prune", b"");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["VolumesDeleted"], serde_json::json!(["named1"]), "{v}");
    // Swarm endpoints answer as dockerd does on a node outside a swarm.
    let e = d.fails(&["swarm", "leave"]);
    assert!(e.contains("This node is not part of a swarm"), "{e}");
    let e = d.fails(&["node", "ls"]);
    assert!(e.contains("This node is not a swarm manager."), "{e}");
    let (st, _, _) = d.http("GET", "/services", b"");
    assert!(st.contains("503"), "{st}");
    let e = d.fails(&["swarm", "init"]);
    assert!(e.contains("swarm mode is not supported"), "{e}");
    d.ok(&["rm", "src"]);
}

/// A layer tar holding one file of `size` zero bytes, compressed with zstd (a few KiB).
fn zstd_zeros_layer(size: u64) -> Vec<u8> {
    use std::io::Write;
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_path("zeros").unwrap();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    enc.write_all(h.as_bytes()).unwrap();
    let chunk = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        enc.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    enc.write_all(&[0u8; 1024]).unwrap();
    enc.finish().unwrap()
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn decompression_bombs_are_refused_and_leave_nothing() {
    let d = Wharfd::start();
    // 1.5 GiB of zeros in ~50 KiB: past the 1 GiB floor at far more than 1000x.
    let bomb = zstd_zeros_layer(3 << 29);
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    let check = |what: &str, o: std::process::Output| {
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(!o.status.success(), "{what}: it was accepted");
        assert!(err.contains("refused as a decompression bomb: zstd"), "{what}: {err}");
        assert_eq!(d.ok(&["images", "-qa"]).trim(), "", "{what}: an image became visible");
        let left: Vec<String> = tree(&d.data_root().join("overlay2"))
            .into_iter()
            .filter(|p| p != "l")
            .collect();
        assert!(left.is_empty(), "{what}: layer directories left behind: {left:?}");
    };
    check("import", d.docker_stdin(&["import", "-", "bomb:1"], Some(&bomb)));
    // The same layer inside a docker-archive.
    let diff = "sha256:0000000000000000000000000000000000000000000000000000000000000000".to_string();
    let cfg = config_for(std::slice::from_ref(&diff));
    let archive_bytes = archive(&[
        (&format!("blobs/sha256/{}", sha(&bomb)), bomb.clone()),
        (&format!("blobs/sha256/{}", sha(&cfg)), cfg.clone()),
        (
            "manifest.json",
            serde_json::to_vec(&serde_json::json!([{
                "Config": format!("blobs/sha256/{}", sha(&cfg)), "RepoTags": ["bomb:2"],
                "Layers": [format!("blobs/sha256/{}", sha(&bomb))],
            }]))
            .unwrap(),
        ),
    ]);
    check("load", d.docker_stdin(&["load"], Some(&archive_bytes)));
    // The daemon is fine afterwards.
    d.import_busybox("busybox:latest");
}

/// Images as docker-py and the CLI read them: `save` gives an image's layers and config its
/// creation time, an untagged image saves with `"RepoTags": null` and loads back, the `until`
/// filter lists what was created before, and an import from the request body has answered
/// only once the image exists.
#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn images_save_load_filter_and_import_as_dockerd() {
    let w = Wharfd::start();
    w.import_busybox("busybox:latest");
    // Imported from the request body: the image is there as soon as the answer ends.
    let tar = std::fs::read(common::images_dir().join("busybox-rootfs.tar")).unwrap();
    let (st, _, b) = w.http("POST", "/images/create?fromSrc=-&repo=imp&tag=now", &tar);
    assert!(st.contains(" 200 "), "{st} {}", String::from_utf8_lossy(&b));
    let (st, _, _) = w.http("GET", "/images/imp:now/json", b"");
    assert!(st.contains(" 200 "), "{st}");
    w.ok(&["create", "--name", "cc", "busybox"]);
    w.ok(&["commit", "-c", "LABEL x=1", "cc"]);
    w.ok(&["rm", "cc"]);
    let untagged = w.ok(&["images", "-q", "--filter", "dangling=true"]).trim().to_string();
    assert!(!untagged.is_empty());
    let created = w
        .ok(&["image", "inspect", "-f", "{{.Created}}", &untagged])
        .trim()
        .to_string();
    let out = w.dir.path().join("untagged.tar");
    w.ok(&["save", "-o", out.to_str().unwrap(), &untagged]);
    let mut ar = tar::Archive::new(std::fs::File::open(&out).unwrap());
    let mut manifest = None;
    let mut config_mtime = None;
    let id = w
        .ok(&["image", "inspect", "-f", "{{.Id}}", &untagged])
        .trim()
        .to_string();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().display().to_string();
        if path == "manifest.json" {
            let mut b = Vec::new();
            e.read_to_end(&mut b).unwrap();
            manifest = Some(serde_json::from_slice::<serde_json::Value>(&b).unwrap());
        } else if path == format!("blobs/sha256/{}", id.trim_start_matches("sha256:")) {
            config_mtime = Some(e.header().mtime().unwrap());
        }
    }
    let manifest = manifest.unwrap();
    assert!(manifest[0]["RepoTags"].is_null(), "{manifest}");
    let created_unix = std::process::Command::new("date")
        .args(["-d", &created, "+%s"])
        .output()
        .unwrap();
    let created_unix: u64 = String::from_utf8_lossy(&created_unix.stdout).trim().parse().unwrap();
    assert_eq!(config_mtime, Some(created_unix), "created {created}");
    w.ok(&["rmi", &untagged]);
    let loaded = w.ok(&["load", "-i", out.to_str().unwrap()]);
    assert!(loaded.contains(&id), "{loaded}");
    // `until`: images created before a time.
    let later = created_unix + 1;
    let before_then = w.ok(&["images", "-q", "--no-trunc", "--filter", &format!("until={later}")]);
    assert!(before_then.contains(&id), "{before_then}");
    let before_epoch = w.ok(&["images", "-q", "--filter", "until=1000000000"]);
    assert_eq!(before_epoch.trim(), "");
}

/// Platforms and paths judged as Docker 28 judges them: an invalid platform is a 400 before
/// anything is read or looked up (create, image inspect, save, load, import); an image of
/// another platform is not found (404), never run on the wrong architecture; an import's
/// platform is the image's; `archive?path=<file>/` is "not a directory" (400).
#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn platforms_and_paths_judged_as_docker() {
    let w = Wharfd::start();
    w.import_busybox("busybox:latest");
    let host = w
        .ok(&["image", "inspect", "-f", "{{.Os}}/{{.Architecture}}", "busybox"])
        .trim()
        .to_string();
    let other = if host.ends_with("arm64") {
        "linux/amd64"
    } else {
        "linux/arm64"
    };
    let body = br#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"NetworkMode":"none"}}"#;
    for (method, path, body) in [
        ("POST", "/containers/create?platform=linux/amd64/v1/x", &body[..]),
        ("GET", "/images/busybox/json?platform=plan9%2Famd64", &b""[..]),
        ("GET", "/images/get?names=busybox&platform=linux%2F%2Fv7", &b""[..]),
        ("POST", "/images/load?platform=%2F", &b"not a tar at all"[..]),
        (
            "POST",
            "/images/create?fromSrc=-&repo=plat&platform=a/b/c/d",
            &b"not a tar at all"[..],
        ),
    ] {
        let (st, _, b) = w.http(method, path, body);
        let b = String::from_utf8_lossy(&b);
        assert!(st.contains(" 400 "), "{path}: {st} {b}");
        assert!(b.contains("invalid platform"), "{path}: {b}");
    }
    // Another platform than the image's: not found, for create, inspect and save.
    let (st, _, b) = w.http("POST", &format!("/containers/create?platform={other}"), body);
    assert!(st.contains(" 404 "), "{st} {}", String::from_utf8_lossy(&b));
    assert!(String::from_utf8_lossy(&b).contains("does not match the specified platform"));
    let (st, _, _) = w.http("GET", &format!("/images/busybox/json?platform={other}"), b"");
    assert!(st.contains(" 404 "), "{st}");
    let (st, _, _) = w.http("GET", &format!("/images/get?names=busybox&platform={other}"), b"");
    assert!(st.contains(" 404 "), "{st}");
    // The image's own platform (however it is spelt) is found.
    let spelt = host.replace("amd64", "x86_64");
    let (st, _, b) = w.http("POST", &format!("/containers/create?name=plat&platform={spelt}"), body);
    assert!(st.contains(" 201 "), "{st} {}", String::from_utf8_lossy(&b));
    w.ok(&["rm", "plat"]);
    let (st, _, _) = w.http("GET", &format!("/images/busybox/json?platform={host}"), b"");
    assert!(st.contains(" 200 "), "{st}");
    // An import's platform is the image's.
    let tar = std::fs::read(common::images_dir().join("busybox-rootfs.tar")).unwrap();
    let (st, _, _) = w.http(
        "POST",
        "/images/create?fromSrc=-&repo=armish&platform=linux%2Farm%2Fv6",
        &tar,
    );
    assert!(st.contains(" 200 "), "{st}");
    assert_eq!(
        w.ok(&[
            "image",
            "inspect",
            "-f",
            "{{.Os}}/{{.Architecture}}/{{.Variant}}",
            "armish"
        ])
        .trim(),
        "linux/arm/v6"
    );
    // A path that asks for a directory where there is a file.
    w.ok(&["create", "--name", "files", "busybox", "true"]);
    for method in ["GET", "HEAD"] {
        let (st, _, _) = w.http(method, "/containers/files/archive?path=/bin/sh/", b"");
        assert!(st.contains(" 400 "), "{method}: {st}");
    }
    let (st, _, _) = w.http("HEAD", "/containers/files/archive?path=/etc/", b"");
    assert!(st.contains(" 200 "), "{st}");
    let err = w.fails(&["cp", "files:/bin/sh/", w.dir.path().join("out").to_str().unwrap()]);
    assert!(err.contains("not a directory"), "{err}");
    w.ok(&["rm", "files"]);
}
