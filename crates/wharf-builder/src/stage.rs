//! One build: the stages the target needs, in order, each step of each printed and run as
//! Docker's classic builder runs it, with the cache asked first. Metadata steps are here;
//! RUN, COPY and the directory of WORKDIR, which need a root, are in `run`.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{json, Map, Value};
use wharf_dockerfile::lex::{exec_form, key_values, shell_words};
use wharf_dockerfile::{Dockerfile, Line};
use wharf_image::CommitSpec;
use wharf_reference::Digest;

use crate::cache::Key;
use crate::{BuildError, BuildRequest, Builder, Progress, Result};

/// Where a stage stands after its last step.
#[derive(Debug, Clone, Default)]
pub(crate) struct State {
    /// The image so far (`None`: `scratch` and nothing yet).
    pub image: Option<Digest>,
    /// The image's `config`.
    pub config: Map<String, Value>,
    /// The image's author (`MAINTAINER`).
    pub author: String,
    /// The `ARG`s declared in the stage, with their values.
    pub args: Vec<(String, Option<String>)>,
    /// `CMD` was set in this stage (an `ENTRYPOINT` then keeps it).
    pub cmd_set: bool,
}

impl State {
    /// `NAME=value` of the build arguments in scope (for RUN's environment and cache keys).
    pub fn arg_env(&self) -> Vec<String> {
        self.args
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
            .collect()
    }

    /// The image's `Env`.
    pub fn env(&self) -> Vec<String> {
        strings(self.config.get("Env"))
    }

    /// What variables expand from: the arguments, then the image's environment (which wins).
    pub fn expansion(&self) -> Vec<String> {
        let mut e = self.arg_env();
        e.extend(self.env());
        e
    }

    /// The shell of shell forms.
    pub fn shell(&self) -> Vec<String> {
        let s = strings(self.config.get("Shell"));
        if s.is_empty() {
            vec!["/bin/sh".into(), "-c".into()]
        } else {
            s
        }
    }
}

pub(crate) fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// A build in progress.
pub(crate) struct Build<'a> {
    pub b: &'a Builder,
    pub req: &'a BuildRequest,
    pub ctx: &'a Path,
    df: &'a Dockerfile,
    /// The meta `ARG`s' values, as `NAME=value`.
    meta: Vec<String>,
    /// The stages to build, in order.
    pub order: Vec<usize>,
    /// The number of each stage's `FROM` step (by its place in `order`).
    first_step: Vec<usize>,
    /// Results of the stages built so far, and a tick for each (what a stage that needs
    /// another waits on).
    done: std::sync::Mutex<HashMap<usize, State>>,
    finished: tokio::sync::watch::Sender<usize>,
    total: usize,
    /// The build arguments some `ARG` took.
    used_args: std::sync::Mutex<Vec<String>>,
    /// `SOURCE_DATE_EPOCH`: every image's time, and the latest time of any file in a layer.
    pub epoch: Option<i64>,
    /// With `--cache-from`: the images (and their parents) the cache may answer with.
    cache_from: Option<Vec<Digest>>,
    /// The step containers that exist now (removed if the build is cancelled).
    pub live: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl<'a> Build<'a> {
    pub fn new(
        b: &'a Builder,
        req: &'a BuildRequest,
        ctx: &'a Path,
        df: &'a Dockerfile,
        live: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    ) -> Result<Build<'a>> {
        // BuildKit's automatic platform arguments, in the global scope (a stage declares them
        // to see them, as any meta ARG).
        let mut meta = platform_args(req.platform.as_deref())?;
        let mut used_args: Vec<String> = req
            .build_args
            .keys()
            .filter(|k| PROXY_ARGS.contains(&k.as_str()) || *k == "SOURCE_DATE_EPOCH")
            .cloned()
            .collect();
        let epoch = match req.build_args.get("SOURCE_DATE_EPOCH").cloned().flatten() {
            Some(v) => Some(v.trim().parse::<i64>().ok().filter(|e| *e >= 0).ok_or_else(|| {
                BuildError::Step(format!("invalid SOURCE_DATE_EPOCH: {v:?}: seconds since 1970 expected"))
            })?),
            None => None,
        };
        for l in &df.meta_args {
            for (k, v) in arg_decls(&l.args, &meta)? {
                let val = req.build_args.get(&k).cloned().flatten().or(v);
                if req.build_args.contains_key(&k) {
                    used_args.push(k.clone());
                }
                if let Some(v) = val {
                    meta.push(format!("{k}={v}"));
                }
            }
        }
        let target = match &req.target {
            Some(t) => df
                .stages
                .iter()
                .position(|s| s.name.as_deref() == Some(t.to_ascii_lowercase().as_str()))
                .ok_or_else(|| BuildError::Step(format!("failed to reach build target {t} in Dockerfile")))?,
            None => df.stages.len() - 1,
        };
        let mut need = vec![false; df.stages.len()];
        mark(df, target, &meta, &mut need)?;
        let order: Vec<usize> = (0..df.stages.len()).filter(|i| need[*i]).collect();
        let mut first_step = Vec::new();
        let mut total = 0;
        for i in &order {
            first_step.push(total + 1);
            total += 1 + df.stages[*i].lines.len();
        }
        let cache_from = (!req.cache_from.is_empty()).then(|| {
            let mut ids = Vec::new();
            for name in &req.cache_from {
                let mut next = b.images.inspect(name).ok();
                while let Some(v) = next {
                    ids.push(v.id);
                    next = v.record.parent.and_then(|p| b.images.inspect(&p.to_string()).ok());
                }
            }
            ids
        });
        Ok(Build {
            b,
            req,
            ctx,
            df,
            meta,
            order,
            first_step,
            done: std::sync::Mutex::new(HashMap::new()),
            finished: tokio::sync::watch::channel(0).0,
            total,
            used_args: std::sync::Mutex::new(used_args),
            epoch,
            cache_from,
            live,
        })
    }

    /// Runs every stage the target needs (those that need no other at once); tags the last
    /// one's image.
    pub async fn run(self, out: &mut (dyn FnMut(Progress) + Send)) -> Result<Digest> {
        let mut last = crate::graph::run_stages(&self, out).await?;
        let used = self.used_args.lock().expect("used args").clone();
        let unused: Vec<&String> = self.req.build_args.keys().filter(|k| !used.contains(k)).collect();
        if !unused.is_empty() {
            let names: Vec<&str> = unused.iter().map(|s| s.as_str()).collect();
            out(Progress::Stream(format!(
                "[Warning] One or more build-args [{}] were not consumed\n",
                names.join(" ")
            )));
        }
        let id = match last.image {
            Some(id) => id,
            // `FROM scratch` and nothing else: an image with no layer, as Docker makes it.
            None => self.commit_meta(&mut last, "FROM scratch", &[])?.0,
        };
        out(Progress::Aux(id));
        out(Progress::Stream(format!("Successfully built {}\n", id.short())));
        for t in &self.req.tags {
            let r = self.b.images.tag(&id.to_string(), t)?;
            out(Progress::Stream(format!("Successfully tagged {}\n", r.familiar())));
        }
        Ok(id)
    }

    /// Stage `i`, `pos`-th of the build: its `FROM`, then each step in turn (and the
    /// request's `--label`s on the last stage). Its result is what stages after it see.
    pub(crate) async fn stage(&self, pos: usize, i: usize, out: &mut (dyn FnMut(Progress) + Send)) -> Result<State> {
        let mut step = self.first_step[pos];
        let mut st = self.from(i, step, out).await?;
        for l in &self.df.stages[i].lines {
            step += 1;
            out(Progress::Stream(format!(
                "Step {step}/{} : {}\n",
                self.total,
                l.display()
            )));
            self.step_line(&mut st, l, out).await?;
        }
        if pos + 1 == self.order.len() && !self.req.labels.is_empty() {
            let labels = self.req.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            self.label(&mut st, labels, out).await?;
        }
        self.done.lock().expect("stages").insert(i, st.clone());
        self.finished.send_modify(|n| *n += 1);
        Ok(st)
    }

    /// The result of stage `j`, once it is built (`None`: the build does not build it).
    pub(crate) async fn stage_result(&self, j: usize) -> Option<State> {
        if !self.order.contains(&j) {
            return None;
        }
        let mut tick = self.finished.subscribe();
        loop {
            if let Some(s) = self.done.lock().expect("stages").get(&j) {
                return Some(s.clone());
            }
            // The sender lives as long as the build; a stage that fails ends the build.
            tick.changed().await.ok()?;
        }
    }

    /// A stage's `FROM`: its base image (an earlier stage's, `scratch`, or one the engine
    /// holds: a build never pulls), then the base's `ONBUILD` triggers.
    async fn from(&self, i: usize, step: usize, out: &mut (dyn FnMut(Progress) + Send)) -> Result<State> {
        let s = &self.df.stages[i];
        out(Progress::Stream(format!(
            "Step {step}/{} : {}\n",
            self.total,
            s.from.display()
        )));
        let base = shell_words(&s.base, &self.meta)?.join(" ");
        let mut st = State::default();
        if let Some(j) = self.stage_index(&base, i) {
            st = self.stage_result(j).await.unwrap_or_default();
            st.args.clear();
            st.cmd_set = false;
        } else if base != "scratch" {
            let view = self.base_image(&base, out).await?;
            let flag = s
                .from
                .flag("platform")
                .map(|p| shell_words(p, &self.meta).map(|w| w.join(" ")));
            let want = flag.transpose()?.or_else(|| self.req.platform.clone());
            if let Some(want) = want.filter(|w| !w.is_empty()) {
                let have = Platform::of(
                    &view.config.os,
                    &view.config.architecture,
                    view.config.variant.as_deref(),
                );
                let want = Platform::parse(&want)?;
                if !have.serves(&want) {
                    return Err(BuildError::Step(format!(
                        "image with reference {base} was found but its platform ({have}) does not match the specified platform ({want})"
                    )));
                }
            }
            st.image = Some(view.id);
            if let Some(Value::Object(c)) = view.config.config.clone() {
                st.config = c;
            }
            st.author = view.config.author.clone().unwrap_or_default();
        }
        match &st.image {
            Some(id) => out(Progress::Stream(format!(" ---> {}\n", id.short()))),
            None => out(Progress::Stream(" ---> \n".into())),
        }
        let triggers = strings(st.config.get("OnBuild"));
        if !triggers.is_empty() {
            st.config.remove("OnBuild");
            out(Progress::Stream(format!(
                "# Executing {} build trigger{}\n",
                triggers.len(),
                if triggers.len() == 1 { "" } else { "s" }
            )));
            for t in &triggers {
                let df = wharf_dockerfile::parse(&format!("FROM scratch\n{t}"))?;
                for l in &df.stages[0].lines {
                    out(Progress::Stream(format!(" ---> Running in trigger: {}\n", l.display())));
                    self.step_line(&mut st, l, out).await?;
                }
            }
        }
        Ok(st)
    }

    /// A base image: the engine's, or fetched through the daemon's registry client when it
    /// lacks it (or `--pull` asks).
    async fn base_image(&self, base: &str, out: &mut (dyn FnMut(Progress) + Send)) -> Result<wharf_image::ImageView> {
        let have = match self.b.images.inspect(base) {
            Ok(v) if !self.req.pull => return Ok(v),
            r => r.ok(),
        };
        let Some(f) = &self.b.fetcher else {
            return have.ok_or_else(|| BuildError::Step(format!("pull access denied for {base}: no such image here")));
        };
        out(Progress::Stream(format!("Pulling {base}\n")));
        if let Err(e) = f.fetch(base).await {
            if have.is_none() {
                return Err(BuildError::Step(e));
            }
        }
        Ok(self.b.images.inspect(base)?)
    }

    /// The stage `name` names (by name or index), if it is one before `before`.
    fn stage_index(&self, name: &str, before: usize) -> Option<usize> {
        stage_ref(self.df, name).filter(|j| *j < before)
    }

    /// One instruction.
    async fn step_line(&self, st: &mut State, l: &Line, out: &mut (dyn FnMut(Progress) + Send)) -> Result<()> {
        check_flags(l)?;
        let env = st.expansion();
        let expand = |s: &str| -> Result<String> { Ok(shell_words(s, &env)?.join(" ")) };
        match l.instruction.as_str() {
            "RUN" => return self.run_step(st, l, out).await,
            "COPY" | "ADD" => return self.copy(st, l, out).await,
            "WORKDIR" => {
                let w = expand(&l.args)?;
                let cur = st
                    .config
                    .get("WorkingDir")
                    .and_then(Value::as_str)
                    .unwrap_or("/")
                    .to_string();
                let dir = if w.starts_with('/') {
                    w
                } else {
                    format!("{}/{w}", cur.trim_end_matches('/'))
                };
                let dir = format!("/{}", crate::context::clean(&dir));
                st.config.insert("WorkingDir".into(), json!(dir));
                return self.workdir(st, &dir, out).await;
            }
            "ARG" => {
                let mut names = Vec::new();
                for (k, v) in arg_decls(&l.args, &env)? {
                    let meta = wharf_dockerfile::lex::lookup(&self.meta, &k).map(String::from);
                    let given = self.req.build_args.get(&k).cloned().flatten();
                    let mut used = self.used_args.lock().expect("used args");
                    if self.req.build_args.contains_key(&k) && !used.contains(&k) {
                        used.push(k.clone());
                    }
                    drop(used);
                    st.args.retain(|(n, _)| *n != k);
                    st.args.push((k.clone(), given.or(v).or(meta)));
                    names.push(k);
                }
            }
            "ENV" => {
                let mut e = st.env();
                for (k, v) in key_values(&l.args, true, &env)? {
                    e.retain(|x| x.split('=').next() != Some(k.as_str()));
                    e.push(format!("{k}={v}"));
                }
                st.config.insert("Env".into(), json!(e));
            }
            "LABEL" => {
                let pairs = key_values(&l.args, true, &env)?;
                return self.label(st, pairs, out).await;
            }
            "MAINTAINER" => st.author = expand(&l.args)?,
            "CMD" | "ENTRYPOINT" => {
                let argv = match exec_form(&l.args) {
                    Some(v) => v,
                    None => st.shell().into_iter().chain([l.args.clone()]).collect(),
                };
                if l.instruction == "CMD" {
                    st.config.insert("Cmd".into(), json!(argv));
                    st.cmd_set = true;
                } else {
                    st.config.insert("Entrypoint".into(), json!(argv));
                    if !st.cmd_set {
                        st.config.insert("Cmd".into(), Value::Null);
                    }
                }
            }
            "SHELL" => {
                let v = exec_form(&l.args)
                    .ok_or_else(|| BuildError::Step("SHELL requires the arguments to be in JSON form".into()))?;
                st.config.insert("Shell".into(), json!(v));
            }
            "EXPOSE" => {
                let ports = st.config.entry("ExposedPorts").or_insert_with(|| json!({}));
                for p in shell_words(&l.args, &env)? {
                    let p = if p.contains('/') {
                        p.to_ascii_lowercase()
                    } else {
                        format!("{p}/tcp")
                    };
                    if let Some(m) = ports.as_object_mut() {
                        m.insert(p, json!({}));
                    }
                }
            }
            "VOLUME" => {
                let vols = match exec_form(&l.args) {
                    Some(v) => v,
                    None => shell_words(&l.args, &env)?,
                };
                if vols.iter().any(|v| v.trim().is_empty()) {
                    return Err(BuildError::Step("VOLUME specified can not be an empty string".into()));
                }
                let m = st.config.entry("Volumes").or_insert_with(|| json!({}));
                for v in vols {
                    if let Some(m) = m.as_object_mut() {
                        m.insert(v, json!({}));
                    }
                }
            }
            "USER" => {
                st.config.insert("User".into(), json!(expand(&l.args)?));
            }
            "STOPSIGNAL" => {
                st.config.insert("StopSignal".into(), json!(expand(&l.args)?));
            }
            "HEALTHCHECK" => {
                st.config.insert("Healthcheck".into(), healthcheck(l)?);
            }
            "ONBUILD" => {
                let inner = l.args.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
                if matches!(inner.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                    return Err(BuildError::Step(format!("{inner} isn't allowed as an ONBUILD trigger")));
                }
                let mut t = strings(st.config.get("OnBuild"));
                t.push(l.args.clone());
                st.config.insert("OnBuild".into(), json!(t));
            }
            other => return Err(BuildError::Step(format!("unknown instruction: {other}"))),
        }
        let shown = expanded_display(l, &env)?;
        let (id, hit) = self.commit_meta(st, &shown, &[])?;
        cached_or_new(out, id, hit);
        Ok(())
    }

    /// `LABEL`s (and the request's `--label`s) into the config.
    async fn label(
        &self,
        st: &mut State,
        pairs: Vec<(String, String)>,
        out: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<()> {
        let shown = format!(
            "LABEL {}",
            pairs
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let labels = st.config.entry("Labels").or_insert_with(|| json!({}));
        if !labels.is_object() {
            *labels = json!({});
        }
        for (k, v) in pairs {
            labels[&k] = json!(v);
        }
        let (id, hit) = self.commit_meta(st, &shown, &[])?;
        cached_or_new(out, id, hit);
        Ok(())
    }

    /// A step that changes only the config: a new image with no layer, or the cached one
    /// (`true`). Its key holds the instruction expanded, so a build argument misses the cache
    /// where it is used, not where it is declared (Docker's rule); RUN, which sees every
    /// argument in scope, keys on them all.
    pub(crate) fn commit_meta(&self, st: &mut State, shown: &str, extra: &[&str]) -> Result<(Digest, bool)> {
        let key = Key::new(st.image.as_ref(), shown, &[], extra);
        if let Some(id) = self.cached(&key) {
            st.image = Some(id);
            return Ok((id, true));
        }
        let spec = CommitSpec {
            config: full_config(&st.config),
            changes: Vec::new(),
            container: String::new(),
            container_config: step_config(&st.config, &nop(shown)),
            author: st.author.clone(),
            comment: String::new(),
            created_by: nop(shown).join(" "),
            tag: None,
            created: self.epoch.map(wharf_image::config::rfc3339_at),
        };
        let id = self.b.images.commit_image(st.image.as_ref(), None, spec)?;
        self.remember(&key, &id, shown);
        st.image = Some(id);
        Ok((id, false))
    }

    /// The cache's image for `key`, if the build may use it and the image is still there.
    pub(crate) fn cached(&self, key: &Key) -> Option<Digest> {
        if self.req.no_cache {
            return None;
        }
        let id = self.b.cache.get(&self.key_of(key))?;
        // Still there (a removed image is no hit).
        let id = self.b.images.resolve(&id.to_string()).ok()?;
        match &self.cache_from {
            Some(allowed) if !allowed.contains(&id) => None,
            _ => Some(id),
        }
    }

    /// The key as this build files it: a reproducible build's are its epoch's own.
    fn key_of(&self, key: &Key) -> Key {
        match self.epoch {
            Some(e) => key.salted(&format!("SOURCE_DATE_EPOCH={e}")),
            None => key.clone(),
        }
    }

    pub(crate) fn remember(&self, key: &Key, id: &Digest, description: &str) {
        if let Err(e) = self.b.cache.put(&self.key_of(key), id, description) {
            tracing::warn!("recording a build cache entry: {e}");
        }
    }

    /// The state a stage reference (`COPY --from`, `RUN --mount=from=`) names, once built.
    pub(crate) async fn stage_state(&self, name: &str) -> Option<State> {
        self.stage_result(stage_ref(self.df, name)?).await
    }
}

/// An image config with every field Docker's has (Go's zero values where unset), as the
/// classic builder writes it: clients read `Config.OnBuild` and friends without checking.
pub(crate) fn full_config(c: &Map<String, Value>) -> Value {
    let mut out = Map::new();
    for (k, zero) in [
        ("Hostname", json!("")),
        ("Domainname", json!("")),
        ("User", json!("")),
        ("AttachStdin", json!(false)),
        ("AttachStdout", json!(false)),
        ("AttachStderr", json!(false)),
        ("Tty", json!(false)),
        ("OpenStdin", json!(false)),
        ("StdinOnce", json!(false)),
        ("Env", Value::Null),
        ("Cmd", Value::Null),
        ("Image", json!("")),
        ("Volumes", Value::Null),
        ("WorkingDir", json!("")),
        ("Entrypoint", Value::Null),
        ("OnBuild", Value::Null),
        ("Labels", Value::Null),
    ] {
        out.insert(k.into(), c.get(k).cloned().unwrap_or(zero));
    }
    for (k, v) in c {
        if !out.contains_key(k) {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

/// A metadata step as the classic builder records its command: `/bin/sh -c #(nop)  ENV A=b`.
pub(crate) fn nop(shown: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), "#(nop) ".into(), shown.into()]
}

/// The `container_config` an image records for the step that made it: the config as it was,
/// with the step's command (clients read `ContainerConfig.Volumes` and `.Cmd` of built images).
pub(crate) fn step_config(c: &Map<String, Value>, cmd: &[String]) -> Value {
    let mut v = full_config(c);
    v["Cmd"] = json!(cmd);
    v
}

/// The flags an instruction takes: those this builder does (`--link` changes only how the
/// layer is made, not what is in it), those it does not yet (an error, never a silently
/// different result), and any other (Docker's "unknown flag").
fn check_flags(l: &Line) -> Result<()> {
    let (known, later): (&[&str], &[&str]) = match l.instruction.as_str() {
        "RUN" => (&["mount", "network"], &["security"]),
        "COPY" => (&["from", "chown", "chmod", "link", "parents", "exclude"], &[]),
        "ADD" => (&["chown", "chmod", "link", "checksum", "exclude", "keep-git-dir"], &[]),
        "HEALTHCHECK" => (
            &["interval", "timeout", "start-period", "start-interval", "retries"],
            &[],
        ),
        _ => (&[], &[]),
    };
    for (k, _) in &l.flags {
        if later.contains(&k.as_str()) {
            return Err(BuildError::Step(format!(
                "dockerfile parse error line {}: {} --{k} is not supported by this builder yet",
                l.line, l.instruction
            )));
        }
        if !known.contains(&k.as_str()) {
            return Err(BuildError::Step(format!(
                "dockerfile parse error line {}: unknown flag: {k}",
                l.line
            )));
        }
    }
    Ok(())
}

/// A step's result line, after `Using cache` when the cache gave it.
pub(crate) fn cached_or_new(out: &mut (dyn FnMut(Progress) + Send), id: Digest, hit: bool) {
    if hit {
        out(Progress::Stream(" ---> Using cache\n".into()));
    }
    out(Progress::Stream(format!(" ---> {}\n", id.short())));
}

/// The stage `name` names: its `AS` name, or its index.
fn stage_ref(df: &Dockerfile, name: &str) -> Option<usize> {
    let lower = name.to_ascii_lowercase();
    df.stages
        .iter()
        .position(|s| s.name.as_deref() == Some(lower.as_str()))
        .or_else(|| name.parse::<usize>().ok().filter(|i| *i < df.stages.len()))
}

/// Marks stage `i` and every stage it needs (its base, its `COPY --from`s).
fn mark(df: &Dockerfile, i: usize, meta: &[String], need: &mut [bool]) -> Result<()> {
    if need[i] {
        return Ok(());
    }
    need[i] = true;
    let s = &df.stages[i];
    let base = shell_words(&s.base, meta)?.join(" ");
    let mut refs: Vec<String> = vec![base];
    refs.extend(s.lines.iter().filter_map(|l| l.flag("from").map(String::from)));
    // `RUN --mount=...,from=stage`.
    refs.extend(
        s.lines
            .iter()
            .flat_map(|l| l.flag_all("mount"))
            .flat_map(|m| m.split(','))
            .filter_map(|kv| kv.strip_prefix("from=").map(String::from)),
    );
    for r in refs {
        if let Some(j) = stage_ref(df, &r) {
            if j >= i {
                return Err(BuildError::Step(format!(
                    "dockerfile parse error line {}: stage {r} refers to itself or a later stage",
                    s.from.line
                )));
            }
            mark(df, j, meta, need)?;
        }
    }
    Ok(())
}

/// `ARG a=1 b`: names with their defaults.
fn arg_decls(args: &str, env: &[String]) -> Result<Vec<(String, Option<String>)>> {
    let mut out = Vec::new();
    for w in shell_words(args, env)? {
        match w.split_once('=') {
            Some((k, v)) => out.push((k.to_string(), Some(v.to_string()))),
            None => out.push((w, None)),
        }
    }
    if out.is_empty() {
        return Err(BuildError::Step("ARG requires exactly one argument".into()));
    }
    Ok(out)
}

/// The instruction with its variables expanded, for the cache key and history.
fn expanded_display(l: &Line, env: &[String]) -> Result<String> {
    let args = match l.instruction.as_str() {
        // Kept as written: the shell expands these, or they are JSON.
        "CMD" | "ENTRYPOINT" | "SHELL" | "HEALTHCHECK" | "ONBUILD" => l.args.clone(),
        _ => shell_words(&l.args, env)?.join(" "),
    };
    Ok(format!("{} {args}", l.instruction))
}

/// `HEALTHCHECK [options] CMD ...` or `HEALTHCHECK NONE`.
fn healthcheck(l: &Line) -> Result<Value> {
    let (kind, rest) = l.args.split_once(char::is_whitespace).unwrap_or((l.args.as_str(), ""));
    match kind.to_ascii_uppercase().as_str() {
        "NONE" => return Ok(json!({"Test": ["NONE"]})),
        "CMD" => {}
        _ => return Err(BuildError::Step("Unknown type in HEALTHCHECK (try CMD)".into())),
    }
    let test: Vec<String> = match exec_form(rest) {
        Some(v) => std::iter::once("CMD".to_string()).chain(v).collect(),
        None => vec!["CMD-SHELL".into(), rest.trim().to_string()],
    };
    let mut h = Map::new();
    h.insert("Test".into(), json!(test));
    for (flag, key) in [
        ("interval", "Interval"),
        ("timeout", "Timeout"),
        ("start-period", "StartPeriod"),
        ("start-interval", "StartInterval"),
    ] {
        if let Some(v) = l.flag(flag) {
            let d = wharf_units::parse_go_duration(v)
                .ok_or_else(|| BuildError::Step(format!("time: invalid duration \"{v}\"")))?;
            h.insert(key.into(), json!(d.as_nanos() as u64));
        }
    }
    if let Some(r) = l.flag("retries") {
        let n: i64 = r
            .parse()
            .map_err(|_| BuildError::Step(format!("strconv.ParseInt: parsing \"{r}\": invalid syntax")))?;
        h.insert("Retries".into(), json!(n));
    }
    Ok(Value::Object(h))
}

/// The proxy arguments a build takes without an `ARG` (they reach RUN, never the cache key,
/// the history or the image).
pub(crate) const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// An `os/arch[/variant]`, its architecture named as images name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Platform {
    os: String,
    arch: String,
    variant: String,
}

impl Platform {
    fn of(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        let mut p = Platform {
            os: if os.is_empty() {
                "linux".into()
            } else {
                os.to_ascii_lowercase()
            },
            arch: arch.to_ascii_lowercase(),
            variant: variant.unwrap_or("").to_ascii_lowercase(),
        };
        match p.arch.as_str() {
            "x86_64" | "x86-64" => p.arch = "amd64".into(),
            "aarch64" => p.arch = "arm64".into(),
            "i386" | "i686" => p.arch = "386".into(),
            _ => {}
        }
        if p.arch == "arm64" && p.variant == "v8" {
            p.variant.clear();
        }
        p
    }

    fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] => Ok(Platform::of(os, arch, None)),
            [os, arch, v] => Ok(Platform::of(os, arch, Some(v))),
            _ => Err(BuildError::Step(format!(
                "invalid platform {s:?}: use os/arch[/variant]"
            ))),
        }
    }

    /// The machine's own.
    fn host() -> Platform {
        Platform::of("linux", std::env::consts::ARCH, None)
    }

    /// An image of this platform runs what `want` asks for (a variant only when both name one).
    fn serves(&self, want: &Platform) -> bool {
        self.os == want.os
            && self.arch == want.arch
            && (self.variant.is_empty() || want.variant.is_empty() || self.variant == want.variant)
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

/// `BUILDPLATFORM`, `TARGETPLATFORM` and their parts, as `NAME=value`.
fn platform_args(target: Option<&str>) -> Result<Vec<String>> {
    let build = Platform::host();
    let target = match target.filter(|t| !t.is_empty()) {
        Some(t) => Platform::parse(t)?,
        None => build.clone(),
    };
    let mut out = Vec::new();
    for (prefix, p) in [("BUILD", &build), ("TARGET", &target)] {
        out.push(format!("{prefix}PLATFORM={p}"));
        out.push(format!("{prefix}OS={}", p.os));
        out.push(format!("{prefix}ARCH={}", p.arch));
        out.push(format!("{prefix}VARIANT={}", p.variant));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_as_images_name_them() {
        let p = |s: &str| Platform::parse(s).unwrap();
        assert!(p("linux/x86_64").serves(&p("linux/amd64")));
        assert!(p("linux/arm64/v8").serves(&p("linux/arm64")));
        assert!(!p("linux/amd64").serves(&p("linux/arm64")));
        assert!(!p("linux/arm/v6").serves(&p("linux/arm/v7")));
        assert_eq!(p("Linux/AARCH64").to_string(), "linux/arm64");
        assert!(Platform::parse("linux").is_err());
        let args = platform_args(Some("linux/arm64")).unwrap();
        assert!(
            args.contains(&"TARGETARCH=arm64".to_string()) && args.contains(&"TARGETPLATFORM=linux/arm64".to_string())
        );
        assert!(args.iter().any(|a| a.starts_with("BUILDPLATFORM=linux/")));
    }
}
