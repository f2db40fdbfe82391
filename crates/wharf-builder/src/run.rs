//! The steps that need a root: RUN (a container of the engine runs the command; its diff is
//! the step's layer), COPY and ADD (a tar of the sources extracted into a container's root,
//! or the layer itself on `scratch`), and the directory WORKDIR makes. Step containers are
//! removed after a success (`--rm`), and after a failure too with `--force-rm`.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;
use wharf_container::{CommitOptions, ContainerSpec, WaitCondition};
use wharf_dockerfile::lex::{exec_form, shell_words};
use wharf_dockerfile::Line;
use wharf_image::CommitSpec;
use wharf_reference::Digest;

use crate::cache::Key;
use crate::copy::{self, Target};
use crate::mounts::MountOptions;
use crate::stage::{cached_or_new, Build, State};
use crate::{BuildError, Progress, Result};

/// A step container's purpose: what decides its options.
struct StepContainer {
    cmd: Vec<String>,
    env: Vec<String>,
    network: Option<String>,
    /// `RUN --mount`s.
    mounts: Vec<wharf_container::config::Mount>,
}

impl Build<'_> {
    /// `RUN`: the command in a container of the image so far; its changes are the new layer.
    pub(crate) async fn run_step(
        &self,
        st: &mut State,
        l: &Line,
        out: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<()> {
        let argv = run_argv(st, l);
        let shown = argv.join(" ");
        let network = l
            .flag("network")
            .map(String::from)
            .or_else(|| self.req.network_mode.clone());
        let args = st.arg_env();
        let heredocs: Vec<&str> = l.heredocs.iter().map(|h| h.content.as_str()).collect();
        // A mount is part of what the step sees: a bind's content, by digest, decides its key.
        let mut seen = vec![network.clone().unwrap_or_else(|| "default".into())];
        for m in l.flag_all("mount") {
            seen.push(self.mount_identity(m).await?);
        }
        let seen: Vec<&str> = seen.iter().map(String::as_str).collect();
        let key = Key::new(
            st.image.as_ref(),
            &format!("RUN {}\n{}", l.args, heredocs.join("\n")),
            &args,
            &seen,
        );
        if let Some(id) = self.cached(&key) {
            st.image = Some(id);
            cached_or_new(out, id, true);
            return Ok(());
        }
        let parent = st.image.ok_or_else(|| {
            BuildError::Step(format!(
                "The command '{shown}' cannot run: the image is empty (FROM scratch)"
            ))
        })?;
        let mut env = st.env();
        // The proxy arguments reach the command undeclared, and nothing else.
        for (k, v) in &self.req.build_args {
            if crate::stage::PROXY_ARGS.contains(&k.as_str()) && !args.iter().any(|a| a.split('=').next() == Some(k)) {
                if let Some(v) = v {
                    env.push(format!("{k}={v}"));
                }
            }
        }
        // Build arguments reach the command, not the image; ENV wins over an ARG of its name.
        for a in args.iter().rev() {
            let k = a.split('=').next().unwrap_or("");
            if !env.iter().any(|e| e.split('=').next() == Some(k)) {
                env.insert(0, a.clone());
            }
        }
        // The copies `from=` mounts are made of live as long as the step.
        let mut held = Vec::new();
        let mut mounts = Vec::new();
        for m in l.flag_all("mount") {
            if let Some(m) = self.run_mount(st, m, &mut held, &mut env).await? {
                mounts.push(m);
            }
        }
        // A failed step's container is kept for the user (as Docker keeps it), unless a secret
        // is in its environment: then it goes, so the secret is nowhere at rest.
        let secret_env = l
            .flag_all("mount")
            .iter()
            .map(|m| MountOptions::parse(m))
            .any(|m| m.get("type").as_deref() == Some("secret") && m.get("env").is_some());
        let targets: Vec<String> = mounts.iter().filter_map(|m| m.target.clone()).collect();
        let step = StepContainer {
            cmd: argv,
            env,
            network,
            mounts,
        };
        let cid = self.step_container(st, &parent, step).await?;
        // What the runtime will make only to mount over: left out of the step's layer.
        let stubs = self.mount_stubs(&cid, &targets).await;
        out(Progress::Stream(format!(" ---> Running in {}\n", &cid[..12])));
        let r = self.run_in(&cid, out).await;
        let code = match r {
            Ok(code) => code,
            Err(e) => {
                self.discard(&cid, self.req.force_rm || secret_env).await;
                return Err(e);
            }
        };
        if code != 0 {
            self.discard(&cid, self.req.force_rm || secret_env).await;
            return Err(BuildError::Command { command: shown, code });
        }
        // As the classic builder records a RUN: `|N NAME=value ... cmd` when arguments reach it.
        let mut recorded = Vec::new();
        if !args.is_empty() {
            recorded.push(format!("|{}", args.len()));
            recorded.extend(args.iter().cloned());
        }
        recorded.extend(run_argv(st, l));
        let id = self.commit_omitting(st, &cid, &recorded, stubs).await;
        self.discard(&cid, self.req.rm || self.req.force_rm).await;
        if self.req.rm || self.req.force_rm {
            out(Progress::Stream(format!(
                "Removing intermediate container {}\n",
                &cid[..12]
            )));
        }
        let id = id?;
        self.remember(&key, &id, &shown);
        st.image = Some(id);
        cached_or_new(out, id, false);
        Ok(())
    }

    /// Attaches, starts, streams the output, and returns the exit code.
    async fn run_in(&self, cid: &str, out: &mut (dyn FnMut(Progress) + Send)) -> Result<i64> {
        let c = &self.b.containers;
        let attach = c.attach(cid, false, true, true)?;
        let wait = c.wait(cid, WaitCondition::NextExit)?;
        c.start(cid).await?;
        let mut task = attach.await?;
        while let Some(o) = task.output.recv().await {
            // The classic builder shows stderr in red.
            let text = match o {
                wharf_container::task::Output::Stdout(b) => String::from_utf8_lossy(&b).into_owned(),
                wharf_container::task::Output::Stderr(b) => format!("\x1b[91m{}\x1b[0m", String::from_utf8_lossy(&b)),
            };
            out(Progress::Stream(text));
        }
        let (code, err) = wait.await;
        if let Some(e) = err.filter(|e| !e.is_empty()) {
            return Err(BuildError::Step(e));
        }
        Ok(code)
    }

    /// A container of `parent` for a step, created (not started).
    async fn step_container(&self, st: &State, parent: &Digest, step: StepContainer) -> Result<String> {
        let mut spec = ContainerSpec {
            host: self.req.run_host.clone(),
            ..Default::default()
        };
        let cfg = &mut spec.config;
        cfg.image = Some(parent.to_string());
        cfg.cmd = Some(step.cmd);
        cfg.entrypoint = Some(vec![String::new()]);
        cfg.env = Some(step.env);
        cfg.user = st.config.get("User").and_then(Value::as_str).map(String::from);
        cfg.working_dir = st.config.get("WorkingDir").and_then(Value::as_str).map(String::from);
        cfg.attach_stdout = Some(true);
        cfg.attach_stderr = Some(true);
        // A step runs no health checks.
        cfg.healthcheck = Some(wharf_container::config::HealthConfig {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        });
        spec.host.network.network_mode = step.network.filter(|n| n != "default");
        if !step.mounts.is_empty() {
            spec.host.storage.mounts = Some(step.mounts);
        }
        let c = self.b.containers.clone();
        let (id, _) = tokio::task::spawn_blocking(move || c.create(None, spec))
            .await
            .map_err(|e| BuildError::Engine(e.to_string()))??;
        self.live.lock().expect("live").push(id.clone());
        Ok(id)
    }

    /// A container for a step that writes into the root without running anything (COPY,
    /// WORKDIR): no network, the step recorded as its command.
    async fn nop_container(&self, st: &State, parent: &Digest, shown: &str) -> Result<String> {
        let step = StepContainer {
            cmd: nop_string(shown),
            env: st.env(),
            network: Some("none".into()),
            mounts: Vec::new(),
        };
        self.step_container(st, parent, step).await
    }

    /// The container's changes as an image with the stage's config; `cmd` is the step as the
    /// image records it.
    async fn commit_container(&self, st: &State, cid: &str, cmd: &[String]) -> Result<Digest> {
        self.commit_omitting(st, cid, cmd, Vec::new()).await
    }

    /// [`Self::commit_container`] without the paths in `omit` (a step's mount points).
    async fn commit_omitting(&self, st: &State, cid: &str, cmd: &[String], omit: Vec<PathBuf>) -> Result<Digest> {
        let opts = CommitOptions {
            container_config: Some(crate::stage::step_config(&st.config, cmd)),
            reference: None,
            comment: String::new(),
            author: st.author.clone(),
            changes: Vec::new(),
            pause: false,
            config: Some(crate::stage::full_config(&st.config)),
            replace_config: true,
            created_by: Some(cmd.join(" ")),
            epoch: self.epoch,
            omit,
        };
        Ok(self.b.containers.commit(cid, opts).await?)
    }

    /// Removes a step container (with its anonymous volumes) when `remove`.
    async fn discard(&self, cid: &str, remove: bool) {
        // A container the build keeps (a failed step without --force-rm) is the user's now.
        self.live.lock().expect("live").retain(|c| c != cid);
        if remove {
            if let Err(e) = self.b.containers.remove(cid, true, true).await {
                tracing::warn!(container = cid, "removing a build step's container: {e}");
            }
        }
    }

    /// `COPY` and `ADD`: sources from the context, a heredoc, an earlier stage or an image.
    pub(crate) async fn copy(&self, st: &mut State, l: &Line, out: &mut (dyn FnMut(Progress) + Send)) -> Result<()> {
        let what = l.instruction.as_str();
        let env = st.expansion();
        let words = match exec_form(&l.args) {
            Some(v) => v,
            None => shell_words(&l.args, &env)?,
        };
        if words.len() < 2 {
            return Err(BuildError::Step(format!(
                "{what} requires at least two arguments, but only one was provided. Destination could not be determined."
            )));
        }
        let (srcs, dest) = words.split_at(words.len() - 1);
        let workdir = st
            .config
            .get("WorkingDir")
            .and_then(Value::as_str)
            .unwrap_or("/")
            .to_string();
        let dest_raw = &dest[0];
        let dest_abs = if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else {
            format!("{}/{dest_raw}", workdir.trim_end_matches('/'))
        };
        let dest_clean = format!("/{}", crate::context::clean(&dest_abs));
        // Scratch space only when the sources need it, or the cache misses: a cached COPY of
        // the context makes no directory.
        let early = !l.heredocs.is_empty() || l.flag("from").is_some() || what == "ADD";
        let mut scratch = match early {
            true => Some(self.b.context_dir().map_err(|e| BuildError::Context(e.to_string()))?),
            false => None,
        };
        let scratch_path = scratch.as_ref().map(|s| s.path().to_path_buf()).unwrap_or_default();
        let (root, sources) = self.copy_sources(st, l, srcs, what, &scratch_path).await?;
        let many = sources.len() > 1 || srcs.iter().any(|s| s.contains(['*', '?', '[']));
        if many && !dest_raw.ends_with('/') && !flag_on(l, "parents") {
            return Err(BuildError::Step(format!(
                "When using {what} with more than one source file, the destination must be a directory and end with a /"
            )));
        }
        let owner = match l.flag("chown") {
            Some(c) => self.owner(st, &shell_words(c, &env)?.join(" ")).await?,
            None => (0, 0),
        };
        let chmod = l
            .flag("chmod")
            .map(|m| u32::from_str_radix(m, 8).map_err(|_| BuildError::Step(format!("invalid chmod parameter: {m}"))))
            .transpose()?;
        let excludes = l.flag_all("exclude");
        let exclude = (!excludes.is_empty()).then(|| crate::context::Ignore::parse(&excludes.join("\n")));
        let mut target = Target {
            dest: dest_clean.clone(),
            into_dir: dest_raw.ends_with('/') || many,
            owner,
            chmod,
            extract: what == "ADD" && l.flag("from").is_none() && l.heredocs.is_empty(),
            parents: flag_on(l, "parents"),
            exclude,
            epoch: self.epoch.map(|e| e as u64),
            known: (root == self.ctx).then(|| self.req.context_digests.clone()),
            digest_only: false,
        };
        target.into_dir |= target.parents;
        // The key needs only the digest: the tar is written when the cache misses.
        let digest = {
            let (root, sources) = (root.clone(), sources.clone());
            let target = Target {
                digest_only: true,
                ..target.clone()
            };
            tokio::task::spawn_blocking(move || copy::write_tar(&root, &sources, &target, std::io::sink()))
                .await
                .map_err(|e| BuildError::Engine(e.to_string()))??
        };
        let kind = if sources.len() == 1 && root.join(&sources[0]).is_dir() {
            "dir"
        } else {
            "file"
        };
        let shown = format!(
            "{what} {kind}:{} in {dest_clean} ",
            digest.trim_start_matches("sha256:")
        );
        let flags = format!("{:?}", l.flags);
        let key = Key::new(st.image.as_ref(), &shown, &[], &[&flags, dest_raw]);
        if let Some(id) = self.cached(&key) {
            st.image = Some(id);
            cached_or_new(out, id, true);
            return Ok(());
        }
        let scratch = match scratch.take() {
            Some(s) => s,
            None => self.b.context_dir().map_err(|e| BuildError::Context(e.to_string()))?,
        };
        let tar_path = scratch.path().join(".layer.tar");
        write_tar_file(&root, &sources, &target, &tar_path)?;
        let id = match st.image {
            None => self.commit_layer(st, &tar_path, &shown)?,
            Some(parent) => {
                let cid = self.nop_container(st, &parent, &shown).await?;
                let r = async {
                    if !target.into_dir && self.is_dir_in(&cid, &dest_clean).await {
                        target.into_dir = true;
                        write_tar_file(&root, &sources, &target, &tar_path)?;
                    }
                    self.put_tar(&cid, &tar_path).await?;
                    self.commit_container(st, &cid, &nop_string(&shown)).await
                }
                .await;
                self.discard(&cid, true).await;
                r?
            }
        };
        self.remember(&key, &id, &shown);
        st.image = Some(id);
        cached_or_new(out, id, false);
        Ok(())
    }

    /// The root the sources are read from and their paths in it: the context, a directory of
    /// heredoc files, or what `--from` names copied out of its image.
    async fn copy_sources(
        &self,
        st: &State,
        l: &Line,
        srcs: &[String],
        what: &str,
        scratch: &Path,
    ) -> Result<(PathBuf, Vec<String>)> {
        if !l.heredocs.is_empty() {
            let env = st.expansion();
            let mut out = Vec::new();
            for h in &l.heredocs {
                let content = if h.expand {
                    expand_text(&h.content, &env)
                } else {
                    h.content.clone()
                };
                std::fs::write(scratch.join(&h.name), content).map_err(|e| BuildError::Context(e.to_string()))?;
                out.push(h.name.clone());
            }
            return Ok((scratch.to_path_buf(), out));
        }
        if let Some(from) = l.flag("from") {
            if flag_on(l, "parents") {
                return Err(BuildError::Step(format!(
                    "{what} --parents with --from is not supported by this builder yet"
                )));
            }
            let image = self.image_named(from, what).await?;
            let dir = scratch.join("from");
            std::fs::create_dir_all(&dir).map_err(|e| BuildError::Context(e.to_string()))?;
            let mut names = Vec::new();
            for s in srcs {
                names.push(self.extract_from(st, &image, s, &dir).await?);
            }
            return Ok((dir, names));
        }
        let git = self
            .b
            .fetcher
            .as_ref()
            .filter(|f| what == "ADD" && srcs.iter().any(|s| f.is_git(s)));
        if let Some(f) = git {
            if srcs.len() > 1 {
                return Err(BuildError::Step("ADD of a git repository takes one source".into()));
            }
            let dir = scratch.join("git");
            f.git(&srcs[0], &dir, flag_on(l, "keep-git-dir"))
                .await
                .map_err(BuildError::Step)?;
            return Ok((dir, vec![String::new()]));
        }
        if l.flag("keep-git-dir").is_some() {
            return Err(BuildError::Step("--keep-git-dir is only for git sources".into()));
        }
        let urls = srcs.iter().filter(|s| is_url(s)).count();
        if what == "ADD" && urls > 0 {
            if urls < srcs.len() {
                return Err(BuildError::Step(
                    "ADD with URLs and local sources at once is not supported by this builder yet".into(),
                ));
            }
            return self.download_sources(l, srcs, scratch).await;
        }
        if l.flag("checksum").is_some() {
            return Err(BuildError::Step(
                "checksum can't be specified for non-HTTP(S) sources".into(),
            ));
        }
        let parents = flag_on(l, "parents");
        let mut out = Vec::new();
        for s in srcs {
            match s.split_once("/./").filter(|_| parents) {
                // `--parents a/./b`: what follows the `/./` is the path kept.
                Some((pivot, rest)) => {
                    let pivot = crate::context::clean(pivot);
                    for found in copy::resolve_sources(self.ctx, &format!("{pivot}/{rest}"), what)? {
                        match found.strip_prefix(&format!("{pivot}/")) {
                            Some(kept) => out.push(format!("{pivot}/./{kept}")),
                            None => out.push(found),
                        }
                    }
                }
                None => out.extend(copy::resolve_sources(self.ctx, s, what)?),
            }
        }
        Ok((self.ctx.to_path_buf(), out))
    }

    /// `ADD <url>...`: each fetched into `scratch/url` under the name its URL gives (or any
    /// name when the destination is a file's).
    async fn download_sources(&self, l: &Line, urls: &[String], scratch: &Path) -> Result<(PathBuf, Vec<String>)> {
        let dir = scratch.join("url");
        std::fs::create_dir_all(&dir).map_err(|e| BuildError::Context(e.to_string()))?;
        let mut names = Vec::new();
        for (n, u) in urls.iter().enumerate() {
            let name = match crate::remote::url_file_name(u) {
                Some(n) => n,
                None if urls.len() == 1 => "download".into(),
                None => return Err(BuildError::Step(format!("cannot determine filename from url: {u}"))),
            };
            if names.contains(&name) {
                return Err(BuildError::Step(format!(
                    "ADD: two URLs name the same file {name} ({n})"
                )));
            }
            self.b.download(u, &dir, &name, l.flag("checksum")).await?;
            names.push(name);
        }
        Ok((dir, names))
    }

    /// The image `from` names: an earlier stage's (once it is built), or one the engine holds.
    pub(crate) async fn image_named(&self, from: &str, what: &str) -> Result<Digest> {
        let image = match self.stage_state(from).await {
            Some(s) => s.image,
            None => Some(
                self.b
                    .images
                    .inspect(from)
                    .map_err(|_| {
                        BuildError::Step(format!(
                            "{what} --from: no stage or image named {from} (a build does not pull)"
                        ))
                    })?
                    .id,
            ),
        };
        image.ok_or_else(|| BuildError::Step(format!("{what} --from={from}: the stage is empty")))
    }

    /// Copies `src` out of `image` into `dir`; returns its name there.
    pub(crate) async fn extract_from(&self, st: &State, image: &Digest, src: &str, dir: &Path) -> Result<String> {
        let step = StepContainer {
            cmd: vec!["/bin/sh".into()],
            env: Vec::new(),
            network: Some("none".into()),
            mounts: Vec::new(),
        };
        let cid = self.step_container(st, image, step).await?;
        let c = self.b.containers.clone();
        let (cid2, src2, dir2) = (cid.clone(), src.to_string(), dir.to_path_buf());
        let r = tokio::task::spawn_blocking(move || -> Result<String> {
            let tar = dir2.with_extension("tar");
            let f = std::fs::File::create(&tar).map_err(|e| BuildError::Context(e.to_string()))?;
            let mut name = String::new();
            c.archive_get(&cid2, &src2, |stat| {
                name = stat.name.clone();
                Some(Box::new(FileSink(f)) as Box<dyn wharf_container::archive::ArchiveSink>)
            })?;
            let r = std::fs::File::open(&tar).map_err(|e| BuildError::Context(e.to_string()));
            let r = r.and_then(|f| crate::context::unpack(std::io::BufReader::new(f), &dir2));
            let _ = std::fs::remove_file(&tar);
            r.map(|_| name)
        })
        .await
        .map_err(|e| BuildError::Engine(e.to_string()))?;
        self.discard(&cid, true).await;
        r.map_err(|e| match e {
            BuildError::Engine(m) if m.contains("No such") || m.contains("not found") => {
                BuildError::Step(format!("COPY failed: stat {src}: file does not exist"))
            }
            other => other,
        })
    }

    /// Of each mount target, the top-most path the image lacks (relative, no leading `/`):
    /// what the runtime creates to mount over.
    async fn mount_stubs(&self, cid: &str, targets: &[String]) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for t in targets {
            let mut p = PathBuf::new();
            for c in t.split('/').filter(|c| !c.is_empty()) {
                p.push(c);
                let (c2, id, path) = (self.b.containers.clone(), cid.to_string(), format!("/{}", p.display()));
                let exists = tokio::task::spawn_blocking(move || c2.archive_stat(&id, &path).is_ok())
                    .await
                    .unwrap_or(true);
                if !exists {
                    out.push(p.clone());
                    break;
                }
            }
        }
        out
    }

    /// Whether `path` is a directory in the container's root.
    async fn is_dir_in(&self, cid: &str, path: &str) -> bool {
        let c = self.b.containers.clone();
        let (cid, path) = (cid.to_string(), path.to_string());
        tokio::task::spawn_blocking(move || c.archive_stat(&cid, &path).map(|s| s.mode & (1 << 31) != 0))
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or(false)
    }

    /// Extracts the tar at `tar` into the container's root.
    async fn put_tar(&self, cid: &str, tar: &Path) -> Result<()> {
        let c = self.b.containers.clone();
        let (cid, tar) = (cid.to_string(), tar.to_path_buf());
        tokio::task::spawn_blocking(move || -> Result<()> {
            let f = std::fs::File::open(&tar).map_err(|e| BuildError::Context(e.to_string()))?;
            c.archive_put(&cid, "/", std::io::BufReader::new(f), false, true)?;
            Ok(())
        })
        .await
        .map_err(|e| BuildError::Engine(e.to_string()))?
    }

    /// On `scratch`: the tar is the layer.
    fn commit_layer(&self, st: &State, tar: &Path, shown: &str) -> Result<Digest> {
        let mut f = std::fs::File::open(tar).map_err(|e| BuildError::Context(e.to_string()))?;
        let spec = CommitSpec {
            config: crate::stage::full_config(&st.config),
            changes: Vec::new(),
            container: String::new(),
            container_config: crate::stage::step_config(&st.config, &nop_string(shown)),
            author: st.author.clone(),
            comment: String::new(),
            created_by: nop_string(shown).join(" "),
            tag: None,
            created: self.epoch.map(wharf_image::config::rfc3339_at),
        };
        Ok(self.b.images.commit_image(None, Some(&mut f as &mut dyn Read), spec)?)
    }

    /// `--chown=user[:group]`: numbers as given, names from the image's own passwd and group.
    async fn owner(&self, st: &State, spec: &str) -> Result<(u64, u64)> {
        let (u, g) = spec.split_once(':').unwrap_or((spec, ""));
        let num = |s: &str| s.parse::<u64>().ok();
        if num(u).is_some() && (g.is_empty() || num(g).is_some()) {
            let uid = num(u).unwrap_or(0);
            return Ok((uid, if g.is_empty() { uid } else { num(g).unwrap_or(0) }));
        }
        let image = st.image.ok_or_else(|| {
            BuildError::Step(format!(
                "unable to convert uid/gid chown string to host mapping: no users in an empty image: {spec}"
            ))
        })?;
        let dir = self.b.context_dir().map_err(|e| BuildError::Context(e.to_string()))?;
        let passwd = self.extract_from(st, &image, "/etc/passwd", dir.path()).await.ok();
        let group = self.extract_from(st, &image, "/etc/group", dir.path()).await.ok();
        let read = |n: Option<String>| {
            n.and_then(|n| std::fs::read_to_string(dir.path().join(n)).ok())
                .unwrap_or_default()
        };
        let (passwd, group) = (read(passwd), read(group));
        let find = |db: &str, name: &str, field: usize| -> Option<u64> {
            db.lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.first() == Some(&name))
                .and_then(|f| f.get(field).and_then(|v| v.parse().ok()))
        };
        let bad = || {
            BuildError::Step(format!("unable to convert uid/gid chown string to host mapping: can't find uid for user {u}: no such user: {u}"))
        };
        let uid = num(u).or_else(|| find(&passwd, u, 2)).ok_or_else(bad)?;
        let gid = if g.is_empty() {
            num(u).map_or_else(|| find(&passwd, u, 3), Some).unwrap_or(uid)
        } else {
            num(g)
                .or_else(|| find(&group, g, 2))
                .ok_or_else(|| BuildError::Step(format!("unable to convert uid/gid chown string to host mapping: can't find gid for group {g}: no such group: {g}")))?
        };
        Ok((uid, gid))
    }

    /// `WORKDIR`: the directory made when the image lacks it.
    pub(crate) async fn workdir(
        &self,
        st: &mut State,
        dir: &str,
        out: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<()> {
        let shown = format!("WORKDIR {dir}");
        let key = Key::new(st.image.as_ref(), &shown, &[], &[]);
        if let Some(id) = self.cached(&key) {
            st.image = Some(id);
            cached_or_new(out, id, true);
            return Ok(());
        }
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        // Made now, as Docker makes it (or at a reproducible build's epoch).
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        h.set_mtime(self.epoch.map_or(now, |e| (e as u64).min(now)));
        tar.append_data(&mut h, dir.trim_start_matches('/'), std::io::empty())
            .map_err(|e| BuildError::Context(e.to_string()))?;
        let bytes = tar.into_inner().map_err(|e| BuildError::Context(e.to_string()))?;
        let id = match st.image {
            None => {
                let scratch = self.b.context_dir().map_err(|e| BuildError::Context(e.to_string()))?;
                let p = scratch.path().join(".layer.tar");
                std::fs::write(&p, &bytes).map_err(|e| BuildError::Context(e.to_string()))?;
                self.commit_layer(st, &p, &shown)?
            }
            Some(parent) => {
                let cid = self.nop_container(st, &parent, &shown).await?;
                let r = async {
                    if self.is_dir_in(&cid, dir).await {
                        return Ok(None);
                    }
                    let scratch = self.b.context_dir().map_err(|e| BuildError::Context(e.to_string()))?;
                    let p = scratch.path().join(".layer.tar");
                    std::fs::write(&p, &bytes).map_err(|e| BuildError::Context(e.to_string()))?;
                    self.put_tar(&cid, &p).await?;
                    self.commit_container(st, &cid, &nop_string(&shown)).await.map(Some)
                }
                .await;
                self.discard(&cid, true).await;
                match r? {
                    Some(id) => id,
                    // It is there already: the step only sets the config.
                    None => {
                        let (id, _) = self.commit_meta(st, &shown, &["exists"])?;
                        id
                    }
                }
            }
        };
        self.remember(&key, &id, &shown);
        st.image = Some(id);
        cached_or_new(out, id, false);
        Ok(())
    }
}

/// A boolean flag (`--parents`, `--parents=true`) is on.
fn flag_on(l: &Line, name: &str) -> bool {
    l.flag(name).is_some_and(|v| v != "false")
}

/// A source ADD fetches instead of reading from the context.
fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// COPY's and WORKDIR's record, as the classic builder writes it: `/bin/sh -c #(nop) COPY ...`.
fn nop_string(shown: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), format!("#(nop) {shown}")]
}

/// RUN's argv: the exec form as written; the shell form (and a heredoc script) to the shell.
fn run_argv(st: &State, l: &Line) -> Vec<String> {
    if let Some(v) = exec_form(&l.args) {
        return v;
    }
    let script = match l.heredocs.first() {
        // `RUN <<EOF` alone: the heredoc is the script.
        Some(h)
            if l.args
                .trim_start_matches("<<")
                .trim_start_matches('-')
                .trim_matches(['"', '\''])
                == h.name =>
        {
            h.content.clone()
        }
        // Otherwise the shell reads the heredocs itself.
        Some(_) => {
            let mut s = l.args.clone();
            for h in &l.heredocs {
                s.push('\n');
                s.push_str(&h.content);
                s.push_str(&h.name);
            }
            s
        }
        None => l.args.clone(),
    };
    st.shell().into_iter().chain([script]).collect()
}

/// A heredoc's text with its variables expanded (quotes kept as text).
fn expand_text(text: &str, env: &[String]) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let end = if tail[1..].starts_with('{') {
            tail.find('}').map_or(tail.len(), |e| e + 1)
        } else {
            1 + tail[1..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len() - 1)
        };
        match shell_words(&format!("\"{}\"", &tail[..end]), env) {
            Ok(w) => out.push_str(&w.concat()),
            Err(_) => out.push_str(&tail[..end]),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Writes the sources' tar to `path`; returns its digest.
fn write_tar_file(root: &Path, sources: &[String], target: &Target, path: &Path) -> Result<String> {
    let f = std::fs::File::create(path).map_err(|e| BuildError::Context(e.to_string()))?;
    let mut w = std::io::BufWriter::new(f);
    let d = copy::write_tar(root, sources, target, &mut w)?;
    let mut f = w.into_inner().map_err(|e| BuildError::Context(e.to_string()))?;
    f.flush().map_err(|e| BuildError::Context(e.to_string()))?;
    f.rewind().map_err(|e| BuildError::Context(e.to_string()))?;
    Ok(d)
}

/// A file as the archive's sink.
struct FileSink(std::fs::File);

impl Write for FileSink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl wharf_container::archive::ArchiveSink for FileSink {
    fn abort(&mut self, _e: std::io::Error) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> Line {
        wharf_dockerfile::parse(&format!("FROM a\n{text}")).unwrap().stages[0].lines[0].clone()
    }

    #[test]
    fn run_commands_as_the_shell_gets_them() {
        let st = State::default();
        assert_eq!(run_argv(&st, &line("RUN echo hi")), ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(run_argv(&st, &line("RUN [\"ls\", \"-l\"]")), ["ls", "-l"]);
        assert_eq!(
            run_argv(&st, &line("RUN <<EOF\necho a\necho b\nEOF")),
            ["/bin/sh", "-c", "echo a\necho b\n"]
        );
        assert_eq!(
            run_argv(&st, &line("RUN cat <<EOF > /f\nx\nEOF")),
            ["/bin/sh", "-c", "cat <<EOF > /f\nx\nEOF"]
        );
        let mut bash = State::default();
        bash.config
            .insert("Shell".into(), serde_json::json!(["/bin/bash", "-xc"]));
        assert_eq!(run_argv(&bash, &line("RUN true")), ["/bin/bash", "-xc", "true"]);
    }

    #[test]
    fn heredoc_text_expands_variables_only() {
        let env = vec!["A=1".to_string(), "B=two words".to_string()];
        assert_eq!(
            expand_text("a=$A b=${B} 'q' \"$C\" $", &env),
            "a=1 b=two words 'q' \"\" $"
        );
    }
}
