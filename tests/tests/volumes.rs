//! Volumes, binds, tmpfs and `docker cp` for real, through the real docker CLI against wharfd,
//! including the escapes engines have had: a directory swapped for a symlink while `cp` runs,
//! and a symlinked mount destination.

mod common;

use std::path::Path;

use common::{test_subnet, Wharfd};

fn daemon() -> Wharfd {
    let w = Wharfd::start();
    w.import_busybox("busybox:latest");
    w
}

fn out(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

fn mounts_under(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(dir))
        .map(String::from)
        .collect()
}

fn volume_names(w: &Wharfd) -> Vec<String> {
    w.ok(&["volume", "ls", "-q"]).lines().map(String::from).collect()
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn named_volumes_survive_and_are_shared() {
    let w = daemon();
    assert_eq!(w.ok(&["volume", "create", "--label", "tier=db", "data"]), "data\n");
    let mp = w.ok(&[
        "volume",
        "inspect",
        "-f",
        "{{.Mountpoint}} {{.Driver}} {{.Labels.tier}}",
        "data",
    ]);
    assert_eq!(
        mp.trim(),
        format!("{}/volumes/data/_data local db", w.data_root().display())
    );
    assert_eq!(w.ok(&["volume", "ls", "-q", "--filter", "label=tier=db"]), "data\n");
    // Written by one container, seen by the next after the first is gone.
    w.ok(&[
        "run",
        "--rm",
        "-v",
        "data:/d",
        "busybox",
        "sh",
        "-c",
        "echo keep > /d/f",
    ]);
    assert_eq!(
        w.ok(&["run", "--rm", "-v", "data:/d", "busybox", "cat", "/d/f"]),
        "keep\n"
    );
    // `:ro` is enforced by the kernel.
    let o = w.docker(&[
        "run",
        "--rm",
        "-v",
        "data:/d:ro",
        "busybox",
        "sh",
        "-c",
        "echo x > /d/g",
    ]);
    assert!(!o.status.success());
    assert!(out(&o).contains("Read-only file system"), "{}", out(&o));
    // --volumes-from shares it, read-only when asked.
    w.ok(&["create", "--name", "donor", "-v", "data:/d", "busybox", "true"]);
    assert_eq!(
        w.ok(&["run", "--rm", "--volumes-from", "donor", "busybox", "cat", "/d/f"]),
        "keep\n"
    );
    let o = w.docker(&["run", "--rm", "--volumes-from", "donor:ro", "busybox", "touch", "/d/h"]);
    assert!(out(&o).contains("Read-only file system"), "{}", out(&o));
    let mounts = w.ok(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}} {{.RW}} {{.Mode}}{{end}}",
        "donor",
    ]);
    assert_eq!(mounts.trim(), "volume data /d true z");
    // In use: refused (with or without -f), and it changes nothing.
    let e = w.fails(&["volume", "rm", "-f", "data"]);
    assert!(e.contains("remove data: volume is in use - ["), "{e}");
    assert_eq!(w.ok(&["ps", "-aq", "--filter", "volume=data"]).lines().count(), 1);
    // rm -v never takes a named volume.
    w.ok(&["rm", "-v", "donor"]);
    assert_eq!(volume_names(&w), ["data"]);
    assert_eq!(w.ok(&["volume", "rm", "data"]), "data\n");
    assert!(!w.data_root().join("volumes/data").exists());
    let e = w.fails(&["volume", "inspect", "data"]);
    assert!(e.contains("get data: no such volume"), "{e}");
    // Bad names and duplicate destinations are refused with Docker's words.
    let e = w.fails(&["volume", "create", "a/b"]);
    assert!(e.contains("includes invalid characters for a local volume name"), "{e}");
    let e = w.fails(&["run", "--rm", "-v", "a1:/x", "-v", "b1:/x", "busybox", "true"]);
    assert!(e.contains("Duplicate mount point: /x"), "{e}");
    let e = w.fails(&["run", "--rm", "-v", "/tmp:/proc", "busybox", "true"]);
    assert!(e.contains("inside /proc"), "{e}");
    let e = w.fails(&["run", "--rm", "-v", "/tmp:/x:bogus", "busybox", "true"]);
    assert!(e.contains("invalid mode: bogus"), "{e}");
    assert!(volume_names(&w).is_empty(), "a refused create leaves no volume behind");
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn anonymous_volumes_copy_up_and_go_with_their_container() {
    let w = daemon();
    let tar = common::images_dir().join("busybox-rootfs.tar");
    w.ok(&["import", "-c", "VOLUME /etc", tar.to_str().unwrap(), "volimg"]);
    // The image's files at the VOLUME path are copied into the new, empty volume.
    let listing = w.ok(&["run", "--name", "a1", "volimg", "cat", "/etc/passwd"]);
    assert!(listing.starts_with("root:x:0:0"), "{listing}");
    let name = w.ok(&["inspect", "-f", "{{range .Mounts}}{{.Name}}{{end}}", "a1"]);
    let name = name.trim().to_string();
    assert_eq!(name.len(), 64, "{name}");
    let passwd = w.data_root().join(format!("volumes/{name}/_data/passwd"));
    assert!(passwd.is_file(), "copy-up wrote {}", passwd.display());
    assert_eq!(
        w.ok(&["volume", "inspect", "-f", "{{json .Labels}}", &name]).trim(),
        r#"{"com.docker.volume.anonymous":""}"#
    );
    // A volume with content is not copied over again: the container's change stays.
    w.ok(&["start", "-a", "a1"]);
    w.ok(&["rm", "-v", "a1"]);
    assert!(volume_names(&w).is_empty(), "rm -v removes the anonymous volume");
    // `-v /path` makes one too, and --rm removes it.
    w.ok(&["run", "--rm", "-v", "/scratch", "busybox", "touch", "/scratch/x"]);
    assert!(volume_names(&w).is_empty());
    // Without -v the anonymous volume stays, and prune takes it (named ones only with -a).
    w.ok(&["run", "--name", "a2", "-v", "/scratch", "busybox", "true"]);
    w.ok(&["volume", "create", "named"]);
    w.ok(&["rm", "a2"]);
    assert_eq!(volume_names(&w).len(), 2);
    let p = w.ok(&["volume", "prune", "-f"]);
    assert!(p.contains("Deleted Volumes:"), "{p}");
    assert_eq!(volume_names(&w), ["named"]);
    w.ok(&["volume", "prune", "-af"]);
    assert!(volume_names(&w).is_empty());
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn binds_tmpfs_and_option_volumes() {
    let w = daemon();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in"), "from-host\n").unwrap();
    let hp = host.path().display().to_string();
    let o = w.ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{hp}:/h"),
        "busybox",
        "sh",
        "-c",
        "cat /h/in; echo back > /h/out",
    ]);
    assert_eq!(o, "from-host\n");
    assert_eq!(std::fs::read_to_string(host.path().join("out")).unwrap(), "back\n");
    let o = w.docker(&["run", "--rm", "-v", &format!("{hp}:/h:ro"), "busybox", "touch", "/h/x"]);
    assert!(out(&o).contains("Read-only file system"), "{}", out(&o));
    // A -v bind's missing source is created; a --mount bind's is an error.
    let created = host.path().join("made/by/v");
    w.ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/m", created.display()),
        "busybox",
        "true",
    ]);
    assert!(created.is_dir());
    let e = w.fails(&[
        "run",
        "--rm",
        "--mount",
        &format!("type=bind,source={hp}/nope,target=/n"),
        "busybox",
        "true",
    ]);
    assert!(
        e.contains(&format!("bind source path does not exist: {hp}/nope")),
        "{e}"
    );
    w.ok(&[
        "create",
        "--name",
        "b1",
        "--mount",
        &format!("type=bind,src={hp},dst=/h,readonly"),
        "busybox",
        "true",
    ]);
    assert_eq!(
        w.ok(&[
            "inspect",
            "-f",
            "{{range .Mounts}}{{.Type}} {{.Source}} {{.RW}} {{.Propagation}}{{end}}",
            "b1"
        ])
        .trim(),
        format!("bind {hp} false rprivate")
    );
    // tmpfs of the size asked for, by --tmpfs and by --mount.
    let df = w.ok(&[
        "run",
        "--rm",
        "--tmpfs",
        "/t:size=1m",
        "--mount",
        "type=tmpfs,target=/m,tmpfs-size=2m,tmpfs-mode=1770",
        "busybox",
        "sh",
        "-c",
        "df -k /t /m | tail -2; stat -c %a /m",
    ]);
    let lines: Vec<Vec<&str>> = df.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!((lines[0][0], lines[0][1]), ("tmpfs", "1024"), "{df}");
    assert_eq!((lines[1][0], lines[1][1]), ("tmpfs", "2048"), "{df}");
    assert_eq!(lines[2][0], "1770", "{df}");
    // A local volume with driver options is mounted while used and unmounted after.
    w.ok(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "-o",
        "o=size=3m",
        "tv",
    ]);
    let df = w.ok(&[
        "run",
        "--rm",
        "-v",
        "tv:/tv",
        "busybox",
        "sh",
        "-c",
        "df -k /tv | tail -1",
    ]);
    assert!(
        df.starts_with("tmpfs") && df.split_whitespace().nth(1) == Some("3072"),
        "{df}"
    );
    assert!(mounts_under(&w.data_root().join("volumes")).is_empty());
    // cp into a running container's bind mount lands on the host directory.
    w.ok(&[
        "run",
        "-d",
        "--name",
        "bd",
        "-v",
        &format!("{hp}:/h"),
        "busybox",
        "sleep",
        "1000",
    ]);
    std::fs::write(host.path().join("in2"), "via-cp\n").unwrap();
    w.ok(&["cp", &format!("{hp}/in2"), "bd:/h/copied"]);
    assert_eq!(std::fs::read_to_string(host.path().join("copied")).unwrap(), "via-cp\n");
    w.ok(&["rm", "-f", "bd"]);
    // An image's VOLUME /proc is refused at create.
    let tar = common::images_dir().join("busybox-rootfs.tar");
    w.ok(&["import", "-c", "VOLUME /proc", tar.to_str().unwrap(), "procvol"]);
    let e = w.fails(&["create", "procvol", "true"]);
    assert!(e.contains("inside /proc"), "{e}");
    // A local volume bound to a host directory (type=none, o=bind).
    let dev = tempfile::tempdir().unwrap();
    let devp = dev.path().display().to_string();
    w.ok(&[
        "volume",
        "create",
        "-o",
        "type=none",
        "-o",
        &format!("device={devp}"),
        "-o",
        "o=bind",
        "bv",
    ]);
    w.ok(&["run", "--rm", "-v", "bv:/b", "busybox", "sh", "-c", "echo bound > /b/f"]);
    assert_eq!(std::fs::read_to_string(dev.path().join("f")).unwrap(), "bound\n");
    assert!(mounts_under(&w.data_root().join("volumes")).is_empty());
    let e = w.fails(&["volume", "create", "-o", "colour=red", "bad"]);
    assert!(e.contains("invalid option key: \"colour\""), "{e}");
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn cp_both_ways_running_and_stopped() {
    let w = daemon();
    let host = tempfile::tempdir().unwrap();
    let h = host.path();
    std::fs::create_dir_all(h.join("dir/sub")).unwrap();
    std::fs::write(h.join("dir/a"), "A\n").unwrap();
    std::fs::write(h.join("dir/sub/b"), "B\n").unwrap();
    std::fs::write(h.join("file"), "F\n").unwrap();
    std::os::unix::fs::symlink("file", h.join("link")).unwrap();
    let p = |n: &str| h.join(n).display().to_string();
    w.ok(&[
        "run", "-d", "--name", "cpc", "-v", "cv:/vol", "busybox", "sleep", "1000",
    ]);
    // Into a running container: a file, a directory, a symlink (which stays a symlink).
    w.ok(&["cp", &p("file"), "cpc:/tmp/file"]);
    w.ok(&["cp", &p("dir"), "cpc:/tmp/"]);
    w.ok(&["cp", &p("link"), "cpc:/tmp/link"]);
    w.ok(&["cp", &p("file"), "cpc:/vol/"]);
    let o = w.ok(&[
        "exec",
        "cpc",
        "sh",
        "-c",
        "cat /tmp/file /tmp/dir/a /tmp/dir/sub/b /vol/file; readlink /tmp/link",
    ]);
    assert_eq!(o, "F\nA\nB\nF\nfile\n");
    // Out of it: the same three, and -L follows the link.
    let back = tempfile::tempdir().unwrap();
    let b = |n: &str| back.path().join(n).display().to_string();
    w.ok(&["cp", "cpc:/tmp/file", &b("f2")]);
    w.ok(&["cp", "cpc:/tmp/dir", &b("d2")]);
    w.ok(&["cp", "cpc:/tmp/link", &b("l2")]);
    w.ok(&["cp", "-L", "cpc:/tmp/link", &b("l3")]);
    w.ok(&["cp", "cpc:/vol/file", &b("v2")]);
    assert_eq!(std::fs::read_to_string(b("f2")).unwrap(), "F\n");
    assert_eq!(std::fs::read_to_string(back.path().join("d2/sub/b")).unwrap(), "B\n");
    assert_eq!(std::fs::read_link(b("l2")).unwrap().to_str(), Some("file"));
    assert_eq!(std::fs::read_to_string(b("l3")).unwrap(), "F\n");
    assert_eq!(std::fs::read_to_string(b("v2")).unwrap(), "F\n");
    // Tar on stdout and stdin.
    let o = w.docker(&["cp", "cpc:/tmp/dir/a", "-"]);
    let mut ar = tar::Archive::new(&o.stdout[..]);
    let names: Vec<String> = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(names, ["a"]);
    let mut t = tar::Builder::new(Vec::new());
    let mut hd = tar::Header::new_gnu();
    hd.set_size(3);
    hd.set_mode(0o640);
    t.append_data(&mut hd, "piped", &b"P!\n"[..]).unwrap();
    let bytes = t.into_inner().unwrap();
    let o = w.docker_stdin(&["cp", "-", "cpc:/tmp"], Some(&bytes));
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(
        w.ok(&["exec", "cpc", "stat", "-c", "%a %U %n", "/tmp/piped"]),
        "640 root /tmp/piped\n"
    );
    // A stopped container, and its volume: in and out, then seen after a start.
    w.ok(&["stop", "-t", "0", "cpc"]);
    w.ok(&["cp", &p("dir/a"), "cpc:/tmp/while-stopped"]);
    w.ok(&["cp", &p("dir/sub/b"), "cpc:/vol/b"]);
    w.ok(&["cp", "cpc:/tmp/file", &b("stopped-out")]);
    assert_eq!(std::fs::read_to_string(b("stopped-out")).unwrap(), "F\n");
    assert!(
        mounts_under(&w.data_root()).is_empty(),
        "a copy leaves no mount: {:?}",
        mounts_under(&w.data_root())
    );
    w.ok(&["start", "cpc"]);
    assert_eq!(w.ok(&["exec", "cpc", "cat", "/tmp/while-stopped", "/vol/b"]), "A\nB\n");
    assert_eq!(w.ok(&["run", "--rm", "-v", "cv:/x", "busybox", "cat", "/x/b"]), "B\n");
    // Ownership: root's without -a, the archive's with it.
    std::fs::write(h.join("owned"), "O\n").unwrap();
    std::os::unix::fs::chown(h.join("owned"), Some(1234), Some(2345)).unwrap();
    w.ok(&["cp", &p("owned"), "cpc:/tmp/plain"]);
    w.ok(&["cp", "-a", &p("owned"), "cpc:/tmp/kept"]);
    assert_eq!(
        w.ok(&["exec", "cpc", "stat", "-c", "%u:%g", "/tmp/plain", "/tmp/kept"]),
        "0:0\n1234:2345\n"
    );
    // Errors: a missing path, a read-only root.
    let e = w.fails(&["cp", "cpc:/nope", &b("x")]);
    assert!(e.contains("Could not find the file /nope in container cpc"), "{e}");
    w.ok(&["run", "-d", "--name", "ro", "--read-only", "busybox", "sleep", "1000"]);
    let e = w.fails(&["cp", &p("file"), "ro:/tmp/"]);
    assert!(e.contains("container rootfs is marked read-only"), "{e}");
    w.ok(&["rm", "-f", "cpc", "ro"]);
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn cp_and_mounts_cannot_escape_the_root() {
    let w = daemon();
    let host = tempfile::tempdir().unwrap();
    let hp = host.path().display().to_string();
    std::fs::write(host.path().join("secret"), "HOST\n").unwrap();
    // The container flips /x between a real directory and a symlink to the host's directory
    // (a path that only means something on the host) as fast as it can.
    let script = format!(
        "mkdir -p {hp}; echo CTR > {hp}/secret; while true; do rm -rf /x; mkdir /x; echo DIR > /x/secret; rm -rf /x; ln -s {hp} /x; done"
    );
    w.ok(&["run", "-d", "--name", "flip", "busybox", "sh", "-c", &script]);
    let back = tempfile::tempdir().unwrap();
    let mut seen = std::collections::HashSet::new();
    for i in 0..60 {
        let dst = back.path().join(format!("s{i}"));
        let o = w.docker(&["cp", "flip:/x/secret", dst.to_str().unwrap()]);
        if o.status.success() {
            seen.insert(std::fs::read_to_string(&dst).unwrap());
        }
        let planted = format!("planted-{i}");
        std::fs::write(back.path().join(&planted), "x").unwrap();
        let _ = w.docker(&["cp", back.path().join(&planted).to_str().unwrap(), "flip:/x/"]);
        assert!(
            !host.path().join(&planted).exists(),
            "cp wrote through the symlink onto the host"
        );
    }
    assert!(!seen.contains("HOST\n"), "cp read the host's file: {seen:?}");
    assert!(!seen.is_empty(), "no copy succeeded at all");
    assert_eq!(std::fs::read_to_string(host.path().join("secret")).unwrap(), "HOST\n");
    w.ok(&["rm", "-f", "flip"]);

    // A mount destination that is a symlink to a host path (in the image) lands inside the
    // container.
    let src = std::fs::read(common::images_dir().join("busybox-rootfs.tar")).unwrap();
    let mut t = tar::Builder::new(Vec::new());
    for e in tar::Archive::new(&src[..]).entries().unwrap() {
        let mut e = e.unwrap();
        let hd = e.header().clone();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        t.append(&hd, &data[..]).unwrap();
    }
    let mut hd = tar::Header::new_gnu();
    hd.set_entry_type(tar::EntryType::Symlink);
    hd.set_size(0);
    hd.set_mode(0o777);
    t.append_link(&mut hd, "evil", &hp).unwrap();
    let img = back.path().join("evil.tar");
    std::fs::write(&img, t.into_inner().unwrap()).unwrap();
    w.ok(&["import", img.to_str().unwrap(), "evil"]);
    let o = w.docker(&[
        "run",
        "--rm",
        "-v",
        "mv:/evil",
        "evil",
        "sh",
        "-c",
        "echo in > /evil/f; cat /evil/f",
    ]);
    assert_eq!(out(&o), "in\n");
    assert!(mounts_under(host.path()).is_empty(), "a mount landed on the host path");
    assert!(!host.path().join("f").exists());
    assert_eq!(std::fs::read_to_string(host.path().join("secret")).unwrap(), "HOST\n");
    let vol = w.data_root().join("volumes/mv/_data/f");
    assert_eq!(
        std::fs::read_to_string(&vol).unwrap(),
        "in\n",
        "the volume got the write"
    );
}

/// `--mount type=volume,volume-subpath=` (API 1.45): only that part of the volume is mounted,
/// a directory or a file, resolved inside the volume (a symlink in it to `/` is the volume's
/// root, never the host's); a subpath that climbs out is refused at create, a missing one at
/// start; the image's files are not copied into it; nothing stays mounted after the run.
#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn volume_subpaths() {
    let w = daemon();
    w.ok(&["volume", "create", "sv"]);
    w.ok(&[
        "run",
        "--rm",
        "-v",
        "sv:/data",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /data/sub/deep && echo hi > /data/sub/deep/f && echo top > /data/top && ln -s / /data/escape",
    ]);
    let sub = |p: &str| format!("type=volume,src=sv,dst=/m,volume-subpath={p}");
    assert_eq!(
        w.ok(&[
            "run",
            "--rm",
            "--mount",
            &sub("sub"),
            "busybox",
            "sh",
            "-c",
            "cat /m/deep/f; echo new > /m/new; ls /m"
        ]),
        "hi\ndeep\nnew\n"
    );
    assert_eq!(
        w.ok(&["run", "--rm", "-v", "sv:/data", "busybox", "cat", "/data/sub/new"]),
        "new\n"
    );
    assert_eq!(
        w.ok(&["run", "--rm", "--mount", &sub("top"), "busybox", "cat", "/m"]),
        "top\n"
    );
    // The symlink to `/` inside the volume is the volume's root.
    let listed = w.ok(&["run", "--rm", "--mount", &sub("escape"), "busybox", "ls", "/m"]);
    assert_eq!(listed, "escape\nsub\ntop\n");
    let err = w.fails(&["run", "--rm", "--mount", &sub("../x"), "busybox", "true"]);
    assert!(
        err.contains("subpath must be a relative path within the volume"),
        "{err}"
    );
    let err = w.fails(&["run", "--rm", "--mount", &sub("nope"), "busybox", "true"]);
    assert!(err.contains("cannot access path") && err.contains("nope"), "{err}");
    // A running container's pin goes with it.
    w.ok(&[
        "run",
        "-d",
        "--name",
        "pinned",
        "--mount",
        &sub("sub"),
        "busybox",
        "sleep",
        "100",
    ]);
    assert_eq!(
        mounts_under(&w.dir.path().join("data/containers"))
            .iter()
            .filter(|m| m.contains("/mounts/subpath/"))
            .count(),
        1
    );
    w.ok(&["rm", "-f", "pinned"]);
    assert!(mounts_under(w.dir.path())
        .iter()
        .all(|m| !m.contains("/mounts/subpath/")));
    w.ok(&["volume", "rm", "sv"]);
}

/// `--mount type=image` (API 1.48): another image's files, read-only, at the target (or only
/// its `image-subpath`); a missing image is "No such image"; the image is in use while a
/// container mounts it; nothing stays mounted after the container.
#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn image_mounts() {
    let w = daemon();
    let hello = common::images_dir().join("hello-rootfs.tar");
    w.ok(&["import", hello.to_str().unwrap(), "hello:latest"]);
    let run = |extra: &[&str]| {
        let mut a = vec!["run", "--rm", "--pull", "never"];
        a.extend_from_slice(extra);
        w.docker(&a)
    };
    let o = run(&[
        "--mount",
        "type=image,source=hello,target=/img",
        "busybox",
        "sh",
        "-c",
        "ls /img; touch /img/x",
    ]);
    assert!(!o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hello\n");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Read-only file system"),
        "{}",
        out(&o)
    );
    let o = run(&[
        "--mount",
        "type=image,source=busybox,target=/img,image-subpath=etc",
        "busybox",
        "cat",
        "/img/group",
    ]);
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("root:x:0:"),
        "{}",
        out(&o)
    );
    let o = run(&["--mount", "type=image,source=nosuch,target=/img", "busybox", "true"]);
    assert!(out(&o).contains("No such image: nosuch"), "{}", out(&o));
    let o = run(&[
        "--mount",
        "type=image,source=busybox,target=/img,image-subpath=../x",
        "busybox",
        "true",
    ]);
    assert!(
        out(&o).contains("subpath must be a relative path within the image"),
        "{}",
        out(&o)
    );
    w.ok(&[
        "run",
        "-d",
        "--pull",
        "never",
        "--name",
        "mounter",
        "--mount",
        "type=image,source=hello,target=/img",
        "busybox",
        "sleep",
        "100",
    ]);
    assert_eq!(
        w.ok(&[
            "inspect",
            "-f",
            "{{range .Mounts}}{{.Type}} {{.Destination}} {{.RW}}{{end}}",
            "mounter"
        ])
        .trim(),
        "image /img false"
    );
    let e = w.fails(&["rmi", "hello"]);
    assert!(e.contains("conflict") || e.contains("being used"), "{e}");
    w.ok(&["rm", "-f", "mounter"]);
    assert!(mounts_under(w.dir.path()).iter().all(|m| !m.contains("/mounts/image/")));
    w.ok(&["rmi", "hello"]);
}

/// Volume and network events come from the engine, whatever made the change: the API's
/// create and remove, a container's anonymous volume and its `--rm`, prune, connect.
#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: needs root (a real daemon: namespaces, mounts, cgroups)"
)]
fn volume_and_network_events_come_from_the_engine() {
    let w = daemon();
    // (`--until 0s` is the current second, as the docker CLI sends it: what happened in it
    // shows a second later.)
    let events = |typ: &str| {
        std::thread::sleep(std::time::Duration::from_millis(1100));
        w.ok(&[
            "events",
            "--since",
            "0",
            "--until",
            "0s",
            "--filter",
            &format!("type={typ}"),
            "--format",
            "{{.Action}} {{.Actor.ID}} {{index .Actor.Attributes \"container\"}}",
        ])
    };
    w.ok(&["volume", "create", "named"]);
    w.ok(&["volume", "create", "spare"]);
    let cid = w.ok(&["create", "-v", "/anon", "busybox", "true"]).trim().to_string();
    let anon = w
        .ok(&["inspect", "-f", "{{range .Mounts}}{{.Name}}{{end}}", &cid])
        .trim()
        .to_string();
    w.ok(&["rm", "-v", &cid]);
    w.ok(&["volume", "rm", "named"]);
    w.ok(&["volume", "prune", "-a", "-f"]);
    let v = events("volume");
    let lines: Vec<&str> = v.lines().map(str::trim).collect();
    for want in [
        "create named".to_string(),
        "create spare".to_string(),
        format!("create {anon}"),
        format!("destroy {anon}"),
        "destroy named".to_string(),
        "destroy spare".to_string(),
    ] {
        assert!(lines.contains(&want.as_str()), "{want} in {v}");
    }
    let subnet = test_subnet(&w, 0);
    let nid = w
        .ok(&["network", "create", "--subnet", &subnet, "evnet"])
        .trim()
        .to_string();
    let c = w.ok(&["run", "-d", "busybox", "sleep", "600"]).trim().to_string();
    w.ok(&["network", "connect", "evnet", &c]);
    w.ok(&["network", "disconnect", "evnet", &c]);
    w.ok(&["rm", "-f", &c]);
    w.ok(&["network", "prune", "-f"]);
    let n = events("network");
    for want in [
        format!("create {nid}"),
        format!("connect {nid} {c}"),
        format!("disconnect {nid} {c}"),
        format!("destroy {nid}"),
    ] {
        assert!(n.lines().any(|l| l.trim() == want), "{want} in {n}");
    }
}
