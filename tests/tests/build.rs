//! `docker build` for real: the docker CLI (with no buildx, so the classic `POST /build`)
//! against wharfd; the images checked field by field and run; the cache reused, and missed
//! exactly when an input changed; multi-stage builds with `--target`; Docker's messages for
//! what fails; contexts that try to reach outside themselves.

mod common;

use std::fs;
use std::path::Path;

use common::Wharfd;

fn daemon() -> Wharfd {
    let w = Wharfd::start();
    w.import_busybox("busybox:latest");
    w
}

fn context(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, body) in files {
        let p = d.path().join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, body).unwrap();
    }
    d
}

fn build(w: &Wharfd, ctx: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["build"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    w.docker(&args)
}

fn text(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

/// The lines of a build's output that say a step was taken from the cache.
fn cache_hits(out: &str) -> usize {
    out.lines().filter(|l| l.trim() == "---> Using cache").count()
}

const APP: &str = r#"FROM busybox
ARG VERSION=1.0
ENV APP_HOME=/srv/app MODE="a b"
LABEL org.example.version=$VERSION maintainer="me"
WORKDIR $APP_HOME
COPY requirements.txt ./
RUN echo "installing $(cat requirements.txt) for $VERSION" && echo "$VERSION" > /installed
COPY app/ ./
COPY --chown=postgres:postgres --chmod=640 secret.conf /etc/app.conf
EXPOSE 8080 53/udp
USER postgres
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /installed; ls $APP_HOME"]
"#;

#[cfg_attr(not(root_tier), ignore = "root tier: needs wharfd (namespaces, cgroups, mounts)")]
#[test]
fn a_dockerfile_builds_runs_and_rebuilds_from_its_cache() {
    let w = daemon();
    let ctx = context(&[
        ("Dockerfile", APP),
        ("requirements.txt", "flask"),
        ("app/main.py", "print('hi')"),
        ("app/static/index.html", "<p>"),
        ("secret.conf", "k=v"),
        (".dockerignore", "**/*.pyc\n"),
        ("app/junk.pyc", "x"),
    ]);
    let o = build(&w, ctx.path(), &["-t", "app:1"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}\n{}", w.log());
    assert!(out.contains("Step 1/13 : FROM busybox"), "{out}");
    assert!(out.contains("Step 7/13 : RUN echo \"installing"), "{out}");
    assert!(
        out.contains("installing flask for 1.0"),
        "the step's output is shown: {out}"
    );
    assert!(out.contains("Successfully tagged app:1"), "{out}");
    let id = w.image_id("app:1");
    assert!(out.contains(&format!("Successfully built {}", &id[7..19])), "{out}");
    assert_eq!(cache_hits(&out), 0);

    // The image, field by field.
    let f = |t: &str| w.ok(&["image", "inspect", "--format", t, "app:1"]).trim().to_string();
    assert_eq!(f("{{json .Config.Env}}"), r#"["APP_HOME=/srv/app","MODE=a b"]"#);
    assert_eq!(
        f("{{json .Config.Labels}}"),
        r#"{"maintainer":"me","org.example.version":"1.0"}"#
    );
    assert_eq!(f("{{.Config.WorkingDir}}"), "/srv/app");
    assert_eq!(f("{{.Config.User}}"), "postgres");
    assert_eq!(f("{{json .Config.Entrypoint}}"), r#"["/bin/sh","-c"]"#);
    assert_eq!(f("{{json .Config.Cmd}}"), r#"["cat /installed; ls $APP_HOME"]"#);
    assert_eq!(f("{{json .Config.ExposedPorts}}"), r#"{"53/udp":{},"8080/tcp":{}}"#);
    // A layer per RUN, COPY and the new WORKDIR; none for the metadata steps.
    assert_eq!(f("{{len .RootFS.Layers}}"), "6");
    let history = w.ok(&["history", "--no-trunc", "--format", "{{.CreatedBy}}", "app:1"]);
    assert!(
        history.contains("|1 VERSION=1.0 /bin/sh -c echo \"installing"),
        "{history}"
    );
    assert!(
        history.contains("/bin/sh -c #(nop)  ENV APP_HOME=/srv/app MODE=a b"),
        "{history}"
    );

    // It runs as built: files, owners and modes, the ignored file absent.
    let run = w.ok(&["run", "--rm", "--network", "none", "app:1"]);
    assert_eq!(run, "1.0\nmain.py\nrequirements.txt\nstatic\n");
    let stat = w.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "stat",
        "app:1",
        "-c",
        "%n %u:%g %a",
        "/etc/app.conf",
        "/srv/app/main.py",
        "/srv/app/static",
    ]);
    assert_eq!(
        stat,
        "/etc/app.conf 70:70 640\n/srv/app/main.py 0:0 644\n/srv/app/static 0:0 755\n"
    );

    // Built again: every step from the cache, the same image.
    let o = build(&w, ctx.path(), &["-t", "app:2"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert_eq!(cache_hits(&out), 12, "{out}");
    assert_eq!(w.image_id("app:2"), id);

    // One copied file changed (same name and size): that step and the ones after it miss.
    fs::write(ctx.path().join("app/main.py"), "print('ho')").unwrap();
    let out = text(&build(&w, ctx.path(), &["-t", "app:3"]));
    assert_eq!(cache_hits(&out), 6, "steps 2 to 7 hit, 8 to 13 miss: {out}");
    assert_eq!(
        w.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "cat",
            "app:3",
            "main.py"
        ]),
        "print('ho')"
    );
    // A build argument the RUN sees changes it; one nothing declares changes nothing and says so.
    let out = text(&build(
        &w,
        ctx.path(),
        &["--build-arg", "VERSION=2.0", "--build-arg", "UNUSED=1"],
    ));
    assert_eq!(
        cache_hits(&out),
        2,
        "ARG and ENV hit; LABEL uses the argument and misses: {out}"
    );
    assert!(
        out.contains("[Warning] One or more build-args [UNUSED] were not consumed"),
        "{out}"
    );
    // --no-cache: nothing from the cache.
    let out = text(&build(&w, ctx.path(), &["--no-cache"]));
    assert_eq!(cache_hits(&out), 0, "{out}");
}

#[cfg_attr(not(root_tier), ignore = "root tier: needs wharfd (namespaces, cgroups, mounts)")]
#[test]
fn stages_build_what_the_target_needs_and_copy_between_them() {
    let w = daemon();
    let df = r#"# syntax=docker/dockerfile:1
FROM busybox AS build
RUN mkdir -p /out && echo artifact > /out/tool && chmod 755 /out/tool
RUN <<EOF
echo from-heredoc > /out/notes
EOF
FROM busybox AS broken
RUN exit 1
FROM scratch
COPY --from=build /out/ /app/
COPY <<EOT /app/readme
built by $BUILDER
EOT
ENV BUILDER=wharf
CMD ["/app/tool"]
"#;
    let ctx = context(&[("Dockerfile", df)]);
    let o = build(&w, ctx.path(), &["-t", "tool:1"]);
    let out = text(&o);
    assert!(o.status.success(), "the stage nothing needs is never built: {out}");
    assert!(!out.contains("exit 1"), "{out}");
    w.ok(&["create", "--pull", "never", "--name", "t1", "tool:1"]);
    let tar = ctx.path().join("t1.tar");
    w.ok(&["export", "-o", tar.to_str().unwrap(), "t1"]);
    let files = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -tvf {} | awk '{{print $1, $2, $6}}' | grep app",
            tar.display()
        ))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&files.stdout),
        "drwxr-xr-x 0/0 app\n-rw-r--r-- 0/0 app/notes\n-rw-r--r-- 0/0 app/readme\n-rwxr-xr-x 0/0 app/tool\n"
    );
    let layers = w.ok(&["image", "inspect", "--format", "{{len .RootFS.Layers}}", "tool:1"]);
    assert_eq!(layers.trim(), "2", "only what was copied: no busybox layer");
    // The heredoc expanded what was set before it: nothing yet.
    w.ok(&["cp", "t1:/app/readme", ctx.path().join("readme").to_str().unwrap()]);
    assert_eq!(fs::read_to_string(ctx.path().join("readme")).unwrap(), "built by \n");
    w.ok(&["rm", "t1"]);

    // --target: the first stage alone.
    let out = text(&build(&w, ctx.path(), &["--target", "build", "-t", "tool:build"]));
    assert!(out.contains("Step 3/3 : RUN <<EOF"), "{out}");
    assert_eq!(
        w.ok(&["run", "--rm", "--network", "none", "tool:build", "cat", "/out/notes"]),
        "from-heredoc\n"
    );
    let o = build(&w, ctx.path(), &["--target", "nope"]);
    assert!(
        text(&o).contains("failed to reach build target nope in Dockerfile"),
        "{}",
        text(&o)
    );
}

#[cfg_attr(not(root_tier), ignore = "root tier: needs wharfd (namespaces, cgroups, mounts)")]
#[test]
fn failures_say_what_docker_says_and_nothing_outside_the_context_is_read() {
    let w = daemon();
    let fails = |df: &str, files: &[(&str, &str)], want: &str, code: i32| {
        let mut all = vec![("Dockerfile", df)];
        all.extend_from_slice(files);
        let ctx = context(&all);
        let o = build(&w, ctx.path(), &["--network", "none"]);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(code), "{df}: {out}");
        assert!(out.contains(want), "{df}: wanted {want:?} in {out}");
    };
    fails(
        "FROM busybox\nRUN exit 3\n",
        &[],
        "The command '/bin/sh -c exit 3' returned a non-zero code: 3",
        3,
    );
    fails(
        "FROM busybox\nRUN true\nFOO bar\n",
        &[],
        "dockerfile parse error line 3: unknown instruction: FOO",
        1,
    );
    fails(
        "FROM busybox\nCOPY nope /x\n",
        &[],
        "COPY failed: file not found in build context or excluded by .dockerignore: stat nope: file does not exist",
        1,
    );
    fails(
        "FROM busybox\nCOPY secret /x\n",
        &[("secret", "s"), (".dockerignore", "secret\n")],
        "COPY failed: file not found in build context or excluded by .dockerignore: stat secret: file does not exist",
        1,
    );
    fails(
        "FROM busybox\nCOPY ../../../etc/shadow /x\n",
        &[],
        "forbidden path outside the build context: ../../../etc/shadow ()",
        1,
    );
    fails(
        "FROM busybox\nCOPY a b /dst\n",
        &[("a", "1"), ("b", "2")],
        "When using COPY with more than one source file, the destination must be a directory and end with a /",
        1,
    );
    // A base the engine lacks is pulled through the daemon's registry client: here from a
    // registry on this host that is not there (nothing leaves the host).
    fails("FROM 127.0.0.1:9/nosuch:1\n", &[], "Pulling 127.0.0.1:9/nosuch:1", 1);
    fails(
        "# syntax=example.com/evil/frontend\nFROM busybox\n",
        &[],
        "unsupported frontend",
        1,
    );
    fails(
        "FROM busybox\nCOPY --nope=1 a /a\n",
        &[("a", "1")],
        "dockerfile parse error line 2: unknown flag: nope",
        1,
    );
    fails(
        "FROM busybox\nADD --keep-git-dir=true a /a\n",
        &[("a", "1")],
        "--keep-git-dir is only for git sources",
        1,
    );

    // A link to the host's files is followed only inside the context: nothing is there.
    let ctx = context(&[("Dockerfile", "FROM busybox\nCOPY escape /x\n")]);
    std::os::unix::fs::symlink("/etc/hostname", ctx.path().join("escape")).unwrap();
    let out = text(&build(&w, ctx.path(), &[]));
    assert!(out.contains("stat escape: file does not exist"), "{out}");
    // A failed RUN leaves its container, as Docker does (--force-rm removes it).
    let before = w.ok(&["ps", "-aq"]).lines().count();
    assert!(before >= 1);
    let ctx = context(&[("Dockerfile", "FROM busybox\nRUN exit 4\n")]);
    build(&w, ctx.path(), &["--network", "none", "--force-rm"]);
    assert_eq!(w.ok(&["ps", "-aq"]).lines().count(), before);
}

#[cfg_attr(not(root_tier), ignore = "root tier: needs wharfd (namespaces, cgroups, mounts)")]
#[test]
fn prune_takes_an_untagged_builds_intermediate_images_with_it() {
    let w = daemon();
    let ctx = context(&[("Dockerfile", "FROM busybox\nENV A=1\nRUN echo one > /one\nLABEL l=1\n")]);
    let o = build(&w, ctx.path(), &["--network", "none", "-t", "keep:1"]);
    assert!(o.status.success(), "{}", text(&o));
    fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\nENV A=2\nRUN echo two > /two\nLABEL l=2\n",
    )
    .unwrap();
    let o = build(&w, ctx.path(), &["--network", "none"]);
    assert!(o.status.success(), "{}", text(&o));
    let all = |w: &Wharfd| w.ok(&["images", "-aq", "--no-trunc"]).lines().count();
    // busybox, and three steps of each build.
    assert_eq!(all(&w), 7);
    let out = w.ok(&["image", "prune", "-f"]);
    assert!(out.contains("Total reclaimed space"), "{out}");
    // The untagged build and its intermediate images are gone; the tagged one keeps its own.
    assert_eq!(all(&w), 4, "{}", w.ok(&["images", "-a"]));
    w.ok(&["image", "inspect", "keep:1"]);
}

#[cfg_attr(not(root_tier), ignore = "root tier: needs wharfd (namespaces, cgroups, mounts)")]
#[test]
fn add_extracts_local_archives_even_on_scratch_and_copy_does_not() {
    let w = daemon();
    let ctx = context(&[(
        "Dockerfile",
        "FROM scratch\nADD rootfs.tar.gz /\nADD rootfs.tar.gz /opt\nCOPY rootfs.tar.gz /copied/\n",
    )]);
    let src = ctx.path().join("src");
    fs::create_dir_all(src.join("bin")).unwrap();
    fs::write(src.join("bin/tool"), "#!/bin/sh\n").unwrap();
    std::process::Command::new("chmod")
        .args(["750"])
        .arg(src.join("bin/tool"))
        .status()
        .unwrap();
    let st = std::process::Command::new("tar")
        .args(["-czf", "rootfs.tar.gz", "--owner=70", "--group=70", "-C", "src", "bin"])
        .current_dir(ctx.path())
        .status()
        .unwrap();
    assert!(st.success());
    fs::remove_dir_all(&src).unwrap();
    let o = build(&w, ctx.path(), &["-t", "unpacked:1"]);
    assert!(o.status.success(), "{}", text(&o));
    w.ok(&["create", "--pull", "never", "--name", "u1", "unpacked:1", "/bin/tool"]);
    let tar = ctx.path().join("u1.tar");
    w.ok(&["export", "-o", tar.to_str().unwrap(), "u1"]);
    let listing = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -tvf {} | awk '{{print $1, $2, $6}}' | grep -E 'tool|copied'",
            tar.display()
        ))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&listing.stdout),
        "-rwxr-x--- 70/70 bin/tool\ndrwxr-xr-x 0/0 copied\n-rw-r--r-- 0/0 copied/rootfs.tar.gz\n-rwxr-x--- 70/70 opt/bin/tool\n"
    );
    w.ok(&["rm", "u1"]);
}

#[cfg_attr(not(root_tier), ignore = "root tier: needs wharfd (namespaces, cgroups, mounts)")]
#[test]
fn a_client_that_goes_away_cancels_the_build_and_leaves_no_container() {
    use std::io::{Read, Write};
    let w = daemon();
    let mut t = tar::Builder::new(Vec::new());
    let df = b"FROM busybox\nRUN echo step-started && sleep 60\n";
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(df.len() as u64);
    t.append_data(&mut h, "Dockerfile", &df[..]).unwrap();
    let body = t.into_inner().unwrap();
    let mut s = std::os::unix::net::UnixStream::connect(&w.sock).unwrap();
    write!(
        s,
        "POST /v1.50/build?networkmode=none&t=never:1 HTTP/1.1\r\nHost: wharf\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(&body).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    // The step's own output (not the "Step 2/2 : RUN echo step-started" line).
    while !String::from_utf8_lossy(&seen).contains("\"stream\":\"step-started\\n\"") {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "the build ended early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(w.ok(&["ps", "-q"]).lines().count(), 1, "the step runs");
    // The client goes away mid-step.
    drop(s);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !w.ok(&["ps", "-aq"]).trim().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the step's container outlived the cancelled build"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        w.docker(&["image", "inspect", "never:1"]).status.code() != Some(0),
        "nothing was tagged"
    );
}

#[cfg_attr(not(root_tier), ignore = "root tier: needs wharfd (namespaces, cgroups, mounts)")]
#[test]
fn run_mounts_a_cache_that_outlives_builds_a_tmpfs_and_context_binds() {
    let w = daemon();
    let df = r#"FROM busybox
RUN --mount=type=cache,target=/var/cache/app,id=appcache sh -c 'echo run >> /var/cache/app/log; wc -l < /var/cache/app/log > /runs'
RUN --mount=type=tmpfs,target=/scratch sh -c 'echo x > /scratch/f && grep -q tmpfs /proc/mounts && test -f /scratch/f'
RUN --mount=type=bind,source=data.txt,target=/mnt/data.txt cat /mnt/data.txt > /copied
RUN --mount=type=bind,source=data.txt,target=/mnt/ro.txt sh -c 'echo y > /mnt/ro.txt' || echo read-only > /ro
"#;
    let ctx = context(&[("Dockerfile", df), ("data.txt", "from the context\n")]);
    for (n, tag) in [(1, "mounts:1"), (2, "mounts:2")] {
        let o = build(&w, ctx.path(), &["--network", "none", "--no-cache", "-t", tag]);
        assert!(o.status.success(), "{}", text(&o));
        // The cache keeps what each build left: the second sees the first's line.
        let runs = w.ok(&["run", "--rm", "--network", "none", tag, "cat", "/runs"]);
        assert_eq!(runs.trim(), n.to_string());
    }
    let show = |p: &str| w.ok(&["run", "--rm", "--network", "none", "mounts:2", "cat", p]);
    assert_eq!(show("/copied"), "from the context\n");
    assert_eq!(show("/ro"), "read-only\n");
    // Nothing of the cache or the tmpfs is in the image.
    let o = w.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "mounts:2",
        "ls",
        "/var/cache/app/log",
        "/scratch/f",
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    // The docker CLI sends no secrets: one a step requires is an error; ssh needs an agent.
    let ctx2 = context(&[(
        "Dockerfile",
        "FROM busybox\nRUN --mount=type=secret,id=k,required cat /run/secrets/k\n",
    )]);
    let out = text(&build(&w, ctx2.path(), &["--network", "none"]));
    assert!(out.contains("secret k: not found"), "{out}");
    let ctx3 = context(&[("Dockerfile", "FROM busybox\nRUN --mount=type=ssh true\n")]);
    let out = text(&build(&w, ctx3.path(), &["--network", "none"]));
    assert!(out.contains("needs an SSH agent"), "{out}");
}

#[cfg_attr(not(root_tier), ignore = "root tier: needs wharfd (namespaces, cgroups, mounts)")]
#[test]
fn platform_arguments_platform_checks_and_proxy_arguments() {
    let w = daemon();
    let df = r#"FROM --platform=$BUILDPLATFORM busybox
ARG TARGETARCH
ARG TARGETPLATFORM
RUN echo "$TARGETPLATFORM $TARGETARCH" > /platform && echo "proxy=$HTTP_PROXY" > /proxy
"#;
    let ctx = context(&[("Dockerfile", df)]);
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    let o = build(
        &w,
        ctx.path(),
        &[
            "--network",
            "none",
            "--build-arg",
            "HTTP_PROXY=http://127.0.0.1:9",
            "-t",
            "plat:1",
        ],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(!out.contains("not consumed"), "a proxy argument needs no ARG: {out}");
    let show = |p: &str| w.ok(&["run", "--rm", "--network", "none", "plat:1", "cat", p]);
    assert_eq!(show("/platform"), format!("linux/{arch} {arch}\n"));
    assert_eq!(show("/proxy"), "proxy=http://127.0.0.1:9\n");
    let history = w.ok(&["history", "--no-trunc", "--format", "{{.CreatedBy}}", "plat:1"]);
    assert!(
        !history.contains("127.0.0.1:9"),
        "proxies stay out of the history: {history}"
    );
    // Another proxy: the RUN still comes from the cache.
    let out = text(&build(
        &w,
        ctx.path(),
        &["--network", "none", "--build-arg", "HTTP_PROXY=http://127.0.0.1:10"],
    ));
    assert_eq!(cache_hits(&out), 3, "{out}");
    // A base of another platform than the one asked for is an error, never a silent mismatch.
    let other = if arch == "arm64" { "linux/amd64" } else { "linux/arm64" };
    let ctx2 = context(&[("Dockerfile", "FROM busybox\nRUN true\n")]);
    let out = text(&build(&w, ctx2.path(), &["--network", "none", "--platform", other]));
    assert!(
        out.contains(&format!("image with reference busybox was found but its platform (linux/{arch}) does not match the specified platform ({other})")),
        "{out}"
    );
}

#[cfg_attr(not(root_tier), ignore = "root tier: needs wharfd (namespaces, cgroups, mounts)")]
#[test]
fn independent_stages_build_at_once_and_a_failure_stops_the_others() {
    let w = daemon();
    // Each stage's step waits for the other's to have started (through a cache mount both
    // see): built one after the other, the first gives up after 15 s with code 7.
    let id = format!("meet-{}", std::process::id());
    let wait_for = |me: &str, other: &str| {
        format!(
            "RUN --mount=type=cache,target=/r,id={id} sh -c 'touch /r/{me}; i=0; while [ ! -e /r/{other} ]; do i=$((i+1)); [ $i -gt 150 ] && exit 7; sleep 0.1; done; echo {me} > /{me}'"
        )
    };
    let df = format!(
        "FROM busybox AS a\n{}\nFROM busybox AS b\n{}\nFROM busybox\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n",
        wait_for("a", "b"),
        wait_for("b", "a")
    );
    let ctx = context(&[("Dockerfile", &df)]);
    let o = build(&w, ctx.path(), &["--network", "none", "-t", "both:1"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    // The output reads in the Dockerfile's order all the same.
    let steps: Vec<usize> = out
        .lines()
        .filter_map(|l| l.strip_prefix("Step ")?.split('/').next()?.parse().ok())
        .collect();
    assert_eq!(steps, (1..=7).collect::<Vec<_>>(), "{out}");
    let got = w.ok(&["run", "--rm", "--network", "none", "both:1", "cat", "/a", "/b"]);
    assert_eq!(got, "a\nb\n");

    // One stage fails at once: the other, mid-step, is stopped and its container removed;
    // the failed step's container is kept (no --force-rm), as Docker keeps it.
    let before = w.ok(&["ps", "-aq"]).lines().count();
    let df = "FROM busybox AS slow\nRUN sleep 60\nFROM busybox AS bad\nRUN sleep 1; exit 3\nFROM busybox\nCOPY --from=slow /etc/hostname /s\nCOPY --from=bad /etc/hostname /b\n";
    let ctx = context(&[("Dockerfile", df)]);
    let o = build(&w, ctx.path(), &["--network", "none"]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("The command '/bin/sh -c sleep 1; exit 3' returned a non-zero code: 3"),
        "{out}"
    );
    let left: Vec<String> = w
        .ok(&["ps", "-a", "--format", "{{.Command}}"])
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(left.len(), before + 1, "{left:?}");
    assert!(!left.iter().any(|c| c.contains("sleep 60")), "{left:?}");
}

#[cfg_attr(not(root_tier), ignore = "root tier: needs wharfd (namespaces, cgroups, mounts)")]
#[test]
fn run_binds_from_stages_and_images_and_a_bind_is_part_of_the_cache_key() {
    let w = daemon();
    let df = r#"FROM busybox AS tools
RUN mkdir /t && echo tool > /t/x
FROM busybox
RUN --mount=type=bind,from=tools,source=/t,target=/mnt cat /mnt/x > /got
RUN --mount=type=bind,from=tools,target=/m cat /m/t/x > /whole
RUN --mount=type=bind,from=busybox:latest,source=/bin/busybox,target=/bb test -x /bb && echo image > /img
RUN --mount=type=bind,from=tools,source=/t,target=/w,rw sh -c 'echo w > /w/new && cat /w/new' > /rw
RUN --mount=type=bind,source=data,target=/d,rw sh -c 'echo changed > /d/f' && echo ok > /ctx
COPY data/ /data/
RUN --mount=type=bind,source=data/f,target=/f cat /f > /seen
"#;
    let ctx = context(&[("Dockerfile", df), ("data/f", "one\n")]);
    let o = build(&w, ctx.path(), &["--network", "none", "-t", "binds:1"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let show = |p: &str| w.ok(&["run", "--rm", "--network", "none", "binds:1", "cat", p]);
    assert_eq!(show("/got"), "tool\n");
    assert_eq!(show("/whole"), "tool\n");
    assert_eq!(show("/img"), "image\n");
    assert_eq!(show("/rw"), "w\n");
    // A writable bind of the context writes to a copy: COPY still sees the context.
    assert_eq!(show("/data/f"), "one\n");
    assert_eq!(show("/seen"), "one\n");
    assert!(
        w.docker(&["run", "--rm", "--network", "none", "binds:1", "ls", "/mnt/x"])
            .status
            .code()
            != Some(0),
        "the mount's content is not in the image"
    );
    // Unchanged: every step from the cache. The bound file changed (same name and size): the
    // steps that see it run again.
    let out = text(&build(&w, ctx.path(), &["--network", "none", "-t", "binds:2"]));
    assert_eq!(cache_hits(&out), 8, "{out}");
    fs::write(ctx.path().join("data/f"), "two\n").unwrap();
    let out = text(&build(&w, ctx.path(), &["--network", "none", "-t", "binds:3"]));
    assert_eq!(cache_hits(&out), 5, "{out}");
    let seen = w.ok(&["run", "--rm", "--network", "none", "binds:3", "cat", "/seen"]);
    assert_eq!(seen, "two\n");
}

/// A loopback HTTP server for `ADD <url>`: `/files/<name>` answers `body` with a
/// `Last-Modified`, anything else 404. Serves until the test ends.
fn serve_files(body: &'static [u8]) -> String {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&req).lines().next().unwrap_or("").to_string();
            let ok = line.starts_with("GET /files/");
            let (status, b): (&str, &[u8]) = if ok { ("200 OK", body) } else { ("404 Not Found", b"no") };
            let _ = write!(
                c,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: close\r\n\r\n",
                b.len()
            );
            let _ = c.write_all(b);
        }
    });
    format!("http://{addr}")
}

#[cfg_attr(not(root_tier), ignore = "root tier: needs wharfd (namespaces, cgroups, mounts)")]
#[test]
fn add_fetches_urls_checks_checksums_and_copy_keeps_parents_and_leaves_out_excludes() {
    use sha2::Digest as _;
    let w = daemon();
    let url = serve_files(b"fetched\n");
    let sum = hex::encode(sha2::Sha256::digest(b"fetched\n"));
    let df = format!(
        r#"FROM busybox
ADD {url}/files/hello.txt /dl/
ADD --checksum=sha256:{sum} {url}/files/x /dl/named
COPY --parents app/sub/b.txt top.txt /p/
COPY --parents app/./sub /q/
COPY --exclude=**/*.log --exclude=secret* app /app/
"#
    );
    let ctx = context(&[
        ("Dockerfile", &df),
        ("app/sub/b.txt", "b"),
        ("app/a.txt", "a"),
        ("app/debug.log", "log"),
        ("app/sub/trace.log", "log"),
        ("app/secret.key", "k"),
        ("top.txt", "top"),
    ]);
    let o = build(&w, ctx.path(), &["--network", "none", "-t", "fetch:1"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let run = |cmd: &str| w.ok(&["run", "--rm", "--network", "none", "fetch:1", "sh", "-c", cmd]);
    // Docker's mode for a fetched file, the server's time.
    assert_eq!(
        run("cat /dl/hello.txt /dl/named; stat -c '%a %u %Y' /dl/hello.txt"),
        "fetched\nfetched\n600 0 784111777\n"
    );
    assert_eq!(
        run("cd /p && find . | sort; cd /q && find . | sort"),
        ".\n./app\n./app/sub\n./app/sub/b.txt\n./top.txt\n.\n./sub\n./sub/b.txt\n./sub/trace.log\n"
    );
    assert_eq!(run("cd /app && find . | sort"), ".\n./a.txt\n./sub\n./sub/b.txt\n");
    // A URL is fetched again each build; the same content is a cache hit.
    let out = text(&build(&w, ctx.path(), &["--network", "none"]));
    assert_eq!(cache_hits(&out), 5, "{out}");
    // A checksum that does not match, a server's error, a checksum on a local file.
    for (line, want) in [
        (
            format!("ADD --checksum=sha256:{} {url}/files/x /x", "0".repeat(64)),
            format!("digest mismatch sha256:{sum}: sha256:{}", "0".repeat(64)),
        ),
        (format!("ADD {url}/nope /x"), "with status 404".to_string()),
        (
            format!("ADD --checksum=sha256:{sum} top.txt /x"),
            "checksum can't be specified for non-HTTP(S) sources".to_string(),
        ),
    ] {
        let ctx = context(&[("Dockerfile", &format!("FROM busybox\n{line}\n")), ("top.txt", "t")]);
        let out = text(&build(&w, ctx.path(), &["--network", "none"]));
        assert!(out.contains(&want), "{line}: {out}");
    }
}

#[cfg_attr(not(root_tier), ignore = "root tier: needs wharfd (namespaces, cgroups, mounts)")]
#[test]
fn bzip2_and_xz_contexts_and_archives_as_docker_reads_them() {
    let w = daemon();
    let src = context(&[("pkg/bin/tool", "#!/bin/sh\necho tool\n")]);
    for (flag, ext) in [("-j", "bz2"), ("-J", "xz")] {
        let ctx = context(&[(
            "Dockerfile",
            &format!("FROM busybox\nADD pkg.tar.{ext} /opt/\nRUN test -d /opt/pkg/bin && cat /opt/pkg/bin/tool\n"),
        )]);
        let tar = ctx.path().join(format!("pkg.tar.{ext}"));
        let st = std::process::Command::new("tar")
            .args([
                "-C",
                src.path().to_str().unwrap(),
                flag,
                "-cf",
                tar.to_str().unwrap(),
                "pkg",
            ])
            .status()
            .unwrap();
        assert!(st.success());
        // The whole context compressed the same way, sent on stdin.
        let whole = tempfile::NamedTempFile::new().unwrap();
        let st = std::process::Command::new("tar")
            .args([
                "-C",
                ctx.path().to_str().unwrap(),
                flag,
                "-cf",
                whole.path().to_str().unwrap(),
                ".",
            ])
            .status()
            .unwrap();
        assert!(st.success());
        let body = fs::read(whole.path()).unwrap();
        let o = w.docker_stdin(
            &["build", "--network", "none", "-t", &format!("comp:{ext}"), "-"],
            Some(&body),
        );
        let out = text(&o);
        assert!(o.status.success(), "{ext}: {out}");
        let tag = format!("comp:{ext}");
        let got = w.ok(&["run", "--rm", "--network", "none", &tag, "cat", "/opt/pkg/bin/tool"]);
        assert_eq!(got, "#!/bin/sh\necho tool\n");
        if ext == "xz" {
            // The same files as the bzip2 archive's: the same step, from the cache.
            assert_eq!(cache_hits(&out), 2, "{out}");
        }
    }
}

#[cfg_attr(not(root_tier), ignore = "root tier: needs wharfd (namespaces, cgroups, mounts)")]
#[test]
fn source_date_epoch_builds_the_same_image_id_twice() {
    let w = daemon();
    let df = r#"FROM busybox
ARG SOURCE_DATE_EPOCH
COPY app.txt /srv/
RUN echo "epoch $SOURCE_DATE_EPOCH" > /srv/e && mkdir -p /var/lib/x && touch /var/lib/x/made
ENV A=b
WORKDIR /w
LABEL l=1
"#;
    let ctx = context(&[("Dockerfile", df), ("app.txt", "app\n")]);
    let args = ["--network", "none", "--build-arg", "SOURCE_DATE_EPOCH=1700000000"];
    let mut ids = Vec::new();
    for tag in ["repro:1", "repro:2"] {
        // Seconds apart, and the context's file touched: nothing of when shows.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        fs::write(ctx.path().join("app.txt"), "app\n").unwrap();
        let mut a = args.to_vec();
        a.extend(["--no-cache", "-t", tag]);
        let o = build(&w, ctx.path(), &a);
        let out = text(&o);
        assert!(o.status.success(), "{out}");
        assert!(!out.contains("not consumed"), "{out}");
        ids.push(w.image_id(tag));
    }
    assert_eq!(ids[0], ids[1], "two builds of one context with one epoch are one image");
    let created = w.ok(&["image", "inspect", "-f", "{{.Created}}", "repro:1"]);
    assert_eq!(created.trim(), "2023-11-14T22:13:20Z");
    let run = |cmd: &str| w.ok(&["run", "--rm", "--network", "none", "repro:1", "sh", "-c", cmd]);
    assert_eq!(run("cat /srv/e"), "epoch 1700000000\n");
    // Times after the epoch are the epoch, in every layer the build made.
    assert_eq!(
        run("stat -c %Y /srv/app.txt /srv/e /var/lib/x/made /var/lib/x /w"),
        "1700000000\n".repeat(5)
    );
    // Without the epoch the build is another (and its cache is not the epoch's).
    let o = build(&w, ctx.path(), &["--network", "none", "-t", "repro:now"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert_eq!(cache_hits(&out), 0, "{out}");
    assert_ne!(w.image_id("repro:now"), ids[0]);
    let out = text(&build(&w, ctx.path(), &args));
    assert_eq!(cache_hits(&out), 6, "{out}");
    let bad = text(&build(
        &w,
        ctx.path(),
        &["--network", "none", "--build-arg", "SOURCE_DATE_EPOCH=soon"],
    ));
    assert!(bad.contains("invalid SOURCE_DATE_EPOCH"), "{bad}");
}

/// `system df`'s build cache records, as (description, in use, size).
fn cache_records(w: &Wharfd) -> Vec<(String, bool, u64)> {
    let (status, _, body) = w.http("GET", "/system/df", b"");
    assert!(status.contains("200"), "{status}");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["BuildCache"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["Description"].as_str().unwrap().to_string(),
                r["InUse"].as_bool().unwrap(),
                r["Size"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[cfg_attr(not(root_tier), ignore = "root tier: needs wharfd (namespaces, cgroups, mounts)")]
#[test]
fn the_build_cache_shows_in_system_df_and_prunes_what_only_it_holds() {
    let mut w = daemon();
    let kept = context(&[("Dockerfile", "FROM busybox\nENV A=1\nRUN echo one > /one\nLABEL l=1\n")]);
    assert!(build(&w, kept.path(), &["--network", "none", "-t", "keep:1"])
        .status
        .success());
    let loose = context(&[(
        "Dockerfile",
        "FROM busybox\nRUN echo two > /two\nRUN head -c 100000 /dev/zero > /big\n",
    )]);
    assert!(build(&w, loose.path(), &["--network", "none"]).status.success());
    let recs = cache_records(&w);
    let find = |recs: &[(String, bool, u64)], part: &str| recs.iter().find(|r| r.0.contains(part)).cloned();
    let one = find(&recs, "echo one").expect("the tagged build's RUN");
    assert!(one.1 && one.2 > 0, "{recs:?}");
    let big = find(&recs, "/dev/zero").expect("the untagged build's RUN");
    assert!(!big.1 && big.2 >= 100_000, "{recs:?}");
    let df = w.ok(&["system", "df"]);
    assert!(df.lines().any(|l| l.starts_with("Build Cache")), "{df}");
    // The contexts' files the daemon keeps by content are part of it too.
    let sources = find(&recs, "contexts' files").expect("the context files' record");
    assert!(sources.2 > 0, "{recs:?}");

    // Prune: the untagged build's entries and images go; the tagged one's stay, and serve.
    let out = w.ok(&["builder", "prune", "-f"]);
    assert!(out.contains("Total:") || out.contains("Total reclaimed space"), "{out}");
    assert!(!out.contains("Total reclaimed space: 0B"), "{out}");
    let recs = cache_records(&w);
    assert!(
        find(&recs, "/dev/zero").is_none() && find(&recs, "echo two").is_none(),
        "{recs:?}"
    );
    assert!(find(&recs, "echo one").is_some(), "{recs:?}");
    assert!(
        find(&recs, "contexts' files").is_some(),
        "kept without --all or a limit: {recs:?}"
    );
    let all = w.ok(&["images", "-aq", "--no-trunc"]).lines().count();
    assert_eq!(all, 4, "busybox and keep:1's three steps: {}", w.ok(&["images", "-a"]));
    let out = text(&build(&w, kept.path(), &["--network", "none", "-t", "keep:1"]));
    assert_eq!(cache_hits(&out), 3, "{out}");
    // --all forgets the rest; the tagged image stays, and the next build runs every step.
    w.ok(&["builder", "prune", "-af"]);
    assert!(cache_records(&w).is_empty());
    w.ok(&["image", "inspect", "keep:1"]);
    let out = text(&build(&w, kept.path(), &["--network", "none", "-t", "keep:1"]));
    assert_eq!(cache_hits(&out), 0, "{out}");

    // builder.gc in daemon.json: after each build, what only the cache holds is collected.
    let cfg = w.data_root().parent().unwrap().join("none.json");
    fs::write(
        &cfg,
        r#"{"builder": {"gc": {"enabled": true, "defaultKeepStorage": "1B"}}}"#,
    )
    .unwrap();
    w.stop();
    w.spawn();
    let images = |w: &Wharfd| w.ok(&["images", "-aq", "--no-trunc"]).lines().count();
    let before = images(&w);
    assert!(build(&w, loose.path(), &["--network", "none"]).status.success());
    let recs = cache_records(&w);
    assert!(recs.iter().all(|r| r.1), "only what a name holds is left: {recs:?}");
    assert!(find(&recs, "echo one").is_some(), "{recs:?}");
    assert_eq!(images(&w), before, "the untagged build's images went with its entries");
    fs::remove_file(&cfg).unwrap();
}

#[cfg_attr(not(root_tier), ignore = "root tier: needs wharfd (namespaces, cgroups, mounts)")]
#[test]
fn build_cancel_stops_the_build_its_id_names() {
    let w = daemon();
    let mut b = tar::Builder::new(Vec::new());
    let df = b"FROM busybox\nRUN sleep 60\n";
    let mut h = tar::Header::new_gnu();
    h.set_size(df.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, "Dockerfile", &df[..]).unwrap();
    let body = b.into_inner().unwrap();
    let sock = w.data_root().parent().unwrap().join("wharf.sock");
    let t = std::thread::spawn(move || common::http_unix(&sock, "POST", "/build?buildid=b-1&networkmode=none", &body));
    // Once its step runs, cancel it by its ID.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while w.ok(&["ps", "-q"]).trim().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the step never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (status, _, _) = w.http("POST", "/build/cancel?id=b-1", b"");
    assert!(status.contains("200"), "{status}");
    let (_, _, out) = t.join().unwrap();
    let out = String::from_utf8_lossy(&out).into_owned();
    assert!(out.contains("the build was cancelled"), "{out}");
    assert!(w.ok(&["ps", "-aq"]).trim().is_empty(), "no container is left");
    let (status, _, _) = w.http("POST", "/build/cancel?id=b-1", b"");
    assert!(status.contains("404"), "{status}");
}

/// A git repository served over `git://` on loopback by `git daemon` (killed on drop), with
/// two commits: `v1` (x.txt "one") and the default branch's head (x.txt "two").
struct GitServer {
    child: std::process::Child,
    _dir: tempfile::TempDir,
    url: String,
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn git_server() -> GitServer {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    fs::create_dir_all(work.join("app")).unwrap();
    let git = |cwd: &Path, args: &[&str]| {
        let o = std::process::Command::new("git")
            .args([
                "-c",
                "user.email=t@t",
                "-c",
                "user.name=t",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .current_dir(cwd)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    fs::write(work.join("Dockerfile"), "FROM busybox\nCOPY . /src\n").unwrap();
    fs::write(work.join("app/x.txt"), "one\n").unwrap();
    git(&work, &["init", "-q"]);
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "one"]);
    git(&work, &["tag", "v1"]);
    fs::write(work.join("app/x.txt"), "two\n").unwrap();
    git(&work, &["commit", "-q", "-am", "two"]);
    git(dir.path(), &["clone", "-q", "--bare", "work", "repo.git"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // git-daemon itself (`git daemon` would run it as a child that outlives a kill).
    let exec_path = std::process::Command::new("git").arg("--exec-path").output().unwrap();
    let exec_path = String::from_utf8(exec_path.stdout).unwrap();
    let child = std::process::Command::new(Path::new(exec_path.trim()).join("git-daemon"))
        .args(["--export-all", "--reuseaddr", "--listen=127.0.0.1"])
        .arg(format!("--port={port}"))
        .arg(format!("--base-path={}", dir.path().display()))
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "git daemon did not listen");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    GitServer {
        child,
        _dir: dir,
        url: format!("git://127.0.0.1:{port}/repo.git"),
    }
}

/// `POST /build` with a remote context (no body); the stream's text.
fn remote_build(w: &Wharfd, remote: &str, tag: &str) -> String {
    let enc: String = remote
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (status, _, body) = w.http("POST", &format!("/build?remote={enc}&t={tag}&networkmode=none"), b"");
    format!("{status}\n{}", String::from_utf8_lossy(&body))
}

#[cfg_attr(not(root_tier), ignore = "root tier: needs wharfd (namespaces, cgroups, mounts)")]
#[test]
fn remote_contexts_and_add_of_git_repositories() {
    let w = daemon();
    let g = git_server();
    let show = |tag: &str, p: &str| w.ok(&["run", "--rm", "--network", "none", tag, "cat", p]);
    // A git context: its default branch, or a tag; and a tag's subdirectory.
    let out = remote_build(&w, &g.url, "g:head");
    assert!(out.contains("Successfully tagged g:head"), "{out}");
    assert_eq!(show("g:head", "/src/app/x.txt"), "two\n");
    let o = w.docker(&["run", "--rm", "--network", "none", "g:head", "ls", "/src/.git"]);
    assert!(!o.status.success(), "no .git in a git context");
    let out = remote_build(&w, &format!("{}#v1", g.url), "g:v1");
    assert!(out.contains("Successfully tagged g:v1"), "{out}");
    assert_eq!(show("g:v1", "/src/app/x.txt"), "one\n");
    let out = remote_build(&w, &format!("{}#nope", g.url), "g:nope");
    assert!(out.contains("error downloading remote context"), "{out}");

    // A tar at a URL, and a Dockerfile at a URL.
    let mut tb = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for (name, body) in [("Dockerfile", "FROM busybox\nCOPY f /f\n"), ("f", "from a tar\n")] {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        tb.append_data(&mut h, name, body.as_bytes()).unwrap();
    }
    let tgz: &'static [u8] = Box::leak(tb.into_inner().unwrap().finish().unwrap().into_boxed_slice());
    let out = remote_build(&w, &format!("{}/files/ctx.tar.gz", serve_files(tgz)), "r:tar");
    assert!(out.contains("Successfully tagged r:tar"), "{out}");
    assert_eq!(show("r:tar", "/f"), "from a tar\n");
    let df: &'static [u8] = b"FROM busybox\nRUN echo only a Dockerfile > /o\n";
    let out = remote_build(&w, &format!("{}/files/Dockerfile", serve_files(df)), "r:df");
    assert!(out.contains("Successfully tagged r:df"), "{out}");
    assert_eq!(show("r:df", "/o"), "only a Dockerfile\n");

    // ADD of a repository: its tree (a ref's subdirectory), with .git only when asked.
    let ctx = context(&[(
        "Dockerfile",
        &format!(
            "FROM busybox\nADD {0}#v1:app /fromgit/\nADD --keep-git-dir=true {0} /withgit\n",
            g.url
        ),
    )]);
    let o = build(&w, ctx.path(), &["--network", "none", "-t", "addgit:1"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(show("addgit:1", "/fromgit/x.txt"), "one\n");
    assert_eq!(show("addgit:1", "/withgit/app/x.txt"), "two\n");
    w.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "addgit:1",
        "test",
        "-d",
        "/withgit/.git",
    ]);
    let o = w.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "addgit:1",
        "test",
        "-e",
        "/fromgit/.git",
    ]);
    assert!(!o.status.success());
}

#[cfg_attr(not(root_tier), ignore = "root tier: needs wharfd (namespaces, cgroups, mounts)")]
#[test]
fn wharf_build_sends_only_what_the_daemon_lacks_and_takes_secrets_and_outputs() {
    use sha2::Digest as _;
    let w = daemon();
    let home = tempfile::tempdir().unwrap();
    let sock = w.data_root().parent().unwrap().join("wharf.sock");
    let wharf = |args: &[&str], stdin: Option<&[u8]>| {
        let mut cmd = std::process::Command::new(common::bin("wharf"));
        cmd.args(args)
            .env("DOCKER_HOST", format!("unix://{}", sock.display()))
            .env("XDG_CACHE_HOME", home.path())
            .env("WHARF_TEST_TOKEN", "s3cr3t-by-env")
            .env_remove("WHARF_HOST");
        common::output_with_stdin(cmd, stdin)
    };
    // The Dockerfile names the secrets by their digests only (it is in the image's history).
    let sum = |s: &str| hex::encode(sha2::Sha256::digest(s.as_bytes()));
    let df = format!(
        r#"FROM busybox
COPY . /ctx
RUN --mount=type=secret,id=tok test "$(sha256sum < /run/secrets/tok | cut -d' ' -f1)" = {} && stat -c %a /run/secrets/tok > /secret-mode
RUN --mount=type=secret,id=env,env=TOK sh -c 'test "$(printf %s "$TOK" | sha256sum | cut -d" " -f1)" = {}' && echo ok > /env-ok
RUN --mount=type=secret,id=absent sh -c 'test ! -e /run/secrets/absent' && echo skipped > /absent
"#,
        sum("s3cr3t-from-file"),
        sum("s3cr3t-by-env")
    );
    let df = df.as_str();
    let big: String = (0..100_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let ctx = context(&[
        ("Dockerfile", df),
        ("a.txt", "one\n"),
        ("big.txt", &big),
        ("node_modules/junk", "never sent"),
        (".dockerignore", "node_modules\n"),
    ]);
    let secret = ctx.path().join("..").join(format!("tok-{}", std::process::id()));
    fs::write(&secret, "s3cr3t-from-file").unwrap();
    let iid = home.path().join("iid");
    let args = [
        "build",
        "-t",
        "wb:1",
        "--network",
        "none",
        "--progress",
        "plain",
        "--secret",
        &format!("id=tok,src={}", secret.display()),
        "--secret",
        "id=env,env=WHARF_TEST_TOKEN",
        "--iidfile",
        iid.to_str().unwrap(),
        ctx.path().to_str().unwrap(),
    ];
    let o = wharf(&args, None);
    let out = text(&o);
    assert!(o.status.success(), "{out}\n{}", w.log());
    assert!(out.contains("Successfully tagged wb:1"), "{out}");
    assert_eq!(fs::read_to_string(&iid).unwrap(), w.image_id("wb:1"));
    let run = |cmd: &str| w.ok(&["run", "--rm", "--network", "none", "wb:1", "sh", "-c", cmd]);
    assert_eq!(
        run("cat /ctx/a.txt /secret-mode /env-ok /absent"),
        "one\n400\nok\nskipped\n"
    );
    assert_eq!(
        run("ls /ctx"),
        "Dockerfile\na.txt\nbig.txt\n",
        "what .dockerignore leaves out is not sent"
    );
    // The secrets are in no layer, history or config; not even the empty file a mount
    // point needs is left.
    let o = w.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "wb:1",
        "ls",
        "-a",
        "/run/secrets/tok",
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    let saved = w.docker(&["save", "wb:1"]).stdout;
    for s in ["s3cr3t-from-file", "s3cr3t-by-env"] {
        assert!(
            !saved.windows(s.len()).any(|x| x == s.as_bytes()),
            "{s} leaked into the image"
        );
    }
    fs::remove_file(&secret).unwrap();

    // The daemon holds every file now: asked again, it lacks nothing; one changed file, one.
    let digest = |b: &[u8]| format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)));
    let missing = |ds: &[String]| {
        let body = serde_json::json!({ "digests": ds }).to_string();
        let (status, _, b) = w.http("POST", "/build/context/missing", body.as_bytes());
        assert!(status.contains("200"), "{status}");
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        v["missing"].as_array().unwrap().len()
    };
    let held = [digest(b"one\n"), digest(big.as_bytes()), digest(df.as_bytes())];
    assert_eq!(missing(&held), 0);
    assert_eq!(missing(&[digest(b"never sent")]), 1);
    fs::write(ctx.path().join("a.txt"), "two\n").unwrap();
    assert_eq!(missing(&[digest(b"two\n"), digest(big.as_bytes())]), 1);

    // The result's file system out, as a directory or a tar; a Dockerfile from stdin; -q.
    let out_dir = home.path().join("out");
    let tar_file = home.path().join("out.tar");
    let o = wharf(
        &[
            "build",
            "-q",
            "--network",
            "none",
            "-f",
            "-",
            "-o",
            &format!("type=local,dest={}", out_dir.display()),
            ctx.path().to_str().unwrap(),
        ],
        Some(b"FROM busybox\nCOPY a.txt /a\n"),
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.trim().starts_with("sha256:") && out.trim().lines().count() == 1,
        "{out}"
    );
    assert_eq!(fs::read_to_string(out_dir.join("a")).unwrap(), "two\n");
    let o = wharf(
        &[
            "build",
            "-q",
            "--network",
            "none",
            "-f",
            "-",
            "-o",
            &format!("type=tar,dest={}", tar_file.display()),
            ctx.path().to_str().unwrap(),
        ],
        Some(b"FROM busybox\nCOPY a.txt /ctx/a.txt\n"),
    );
    assert!(o.status.success(), "{}", text(&o));
    // The live view: a line per step, with its time, a cached one marked.
    let o = wharf(
        &[
            "build",
            "--progress",
            "tty",
            "--network",
            "none",
            "-f",
            "-",
            ctx.path().to_str().unwrap(),
        ],
        Some(b"FROM busybox\nCOPY a.txt /ctx/a.txt\nRUN echo shown\n"),
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("[+] [1/3] FROM busybox"), "{out}");
    assert!(out.contains("[+] CACHED [2/3] COPY a.txt /ctx/a.txt"), "{out}");
    assert!(out.contains("    shown"), "a step's output, under it: {out}");
    let mut ar = tar::Archive::new(fs::File::open(&tar_file).unwrap());
    let names: Vec<String> = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(
        names.iter().any(|n| n.trim_start_matches("./") == "ctx/a.txt"),
        "{names:?}"
    );
}

#[cfg_attr(not(root_tier), ignore = "root tier: needs wharfd (namespaces, cgroups, mounts)")]
#[test]
fn a_tool_image_with_an_entrypoint_and_its_dockerfiles_own_dockerignore() {
    let w = daemon();
    let df = "FROM busybox\nCOPY . /c\nENTRYPOINT [\"/bin/busybox\", \"echo\", \"tool:\"]\nCMD [\"help\"]\n";
    let ctx = context(&[
        ("build/tool.Dockerfile", df),
        // BuildKit's rule: the Dockerfile's own ignore file wins over the context's.
        ("build/tool.Dockerfile.dockerignore", "secret.txt\n"),
        (".dockerignore", "app.txt\n"),
        ("secret.txt", "s"),
        ("app.txt", "a"),
    ]);
    let file = ctx.path().join("build/tool.Dockerfile");
    let o = build(
        &w,
        ctx.path(),
        &["--network", "none", "-f", file.to_str().unwrap(), "-t", "tool:1"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let run = |args: &[&str]| {
        let mut a = vec!["run", "--rm", "--network", "none", "tool:1"];
        a.extend_from_slice(args);
        w.ok(&a)
    };
    // The entrypoint takes the arguments; CMD is the default one.
    assert_eq!(run(&[]), "tool: help\n");
    assert_eq!(run(&["version", "--client"]), "tool: version --client\n");
    let ls = w.ok(&["run", "--rm", "--network", "none", "--entrypoint", "ls", "tool:1", "/c"]);
    // (The docker CLI applies the context's .dockerignore itself: app.txt never came; the
    // daemon applied the Dockerfile's own, which the CLI does not read.)
    assert_eq!(
        ls, "build\n",
        "secret.txt is left out by the Dockerfile's own ignore file"
    );
}
