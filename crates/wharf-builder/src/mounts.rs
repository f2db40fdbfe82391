//! `RUN --mount`: each mount of a step as a mount of its container (`cache`, `tmpfs`, `bind`
//! from the context, a stage or an image, `secret`), and what of a mount decides the step's
//! cache key (a bind's content, never a cache mount's or a secret's).

use std::path::Path;

use sha2::Digest as _;

use crate::copy::{self, Target};
use crate::stage::{Build, State};
use crate::{BuildError, Result};

impl Build<'_> {
    /// One `RUN --mount=type=...,target=...` as a mount of the step's container: `cache` (a
    /// volume of the builder's, kept between builds, by `id` or target), `tmpfs`, and `bind`
    /// (a path of the context, or with `from=` of an earlier stage or an image, read-only
    /// unless `rw`; what is written there is dropped after the step). `secret` and `ssh` need
    /// BuildKit's session, which the classic API has not.
    pub(crate) async fn run_mount(
        &self,
        st: &State,
        spec: &str,
        held: &mut Vec<crate::ContextDir>,
        env: &mut Vec<String>,
    ) -> Result<Option<wharf_container::config::Mount>> {
        use wharf_container::config::{Mount, MountType, TmpfsOptions};
        let opts = MountOptions::parse(spec);
        let get = |k: &str| opts.get(k);
        match get("type").as_deref() {
            Some("secret") => return self.secret_mount(spec, held, env),
            Some("ssh") => {
                return Err(BuildError::Step(
                    "RUN --mount=type=ssh needs an SSH agent forwarded by BuildKit's session, which wharf has not"
                        .into(),
                ))
            }
            _ => {}
        }
        let target = get("target")
            .or_else(|| get("dst"))
            .or_else(|| get("destination"))
            .ok_or_else(|| BuildError::Step(format!("RUN --mount={spec}: target is required")))?;
        let target = format!("/{}", crate::context::clean(&target));
        let yes = |k: &str| opts.yes(k);
        let mut m = Mount {
            target: Some(target.clone()),
            ..Mount::default()
        };
        match get("type").as_deref().unwrap_or("bind") {
            "cache" => {
                let id = get("id").unwrap_or_else(|| target.clone());
                let digest = sha2::Sha256::digest(id.as_bytes());
                m.typ = Some(MountType::Volume);
                m.source = Some(format!("wharf-build-cache-{}", &hex::encode(digest)[..24]));
                m.read_only = Some(yes("readonly") || yes("ro"));
            }
            "tmpfs" => {
                m.typ = Some(MountType::Tmpfs);
                let size = get("size").map(|s| {
                    wharf_units::ram_in_bytes(&s)
                        .ok_or_else(|| BuildError::Step(format!("RUN --mount: invalid size {s}")))
                });
                m.tmpfs_options = Some(TmpfsOptions {
                    size_bytes: size.transpose()?,
                    ..TmpfsOptions::default()
                });
            }
            "bind" => {
                let source = get("source").or_else(|| get("src")).unwrap_or_else(|| "/".into());
                let path = match get("from") {
                    Some(from) => {
                        let image = self.image_named(&from, "RUN --mount").await?;
                        let dir = self.b.context_dir().map_err(|e| BuildError::Context(e.to_string()))?;
                        let name = self.extract_from(st, &image, &source, dir.path()).await?;
                        // Never a path out of the copy (a root's name is `/`).
                        let path = dir.path().join(crate::context::clean(&name));
                        held.push(dir);
                        path
                    }
                    None => {
                        let found = copy::resolve_sources(self.ctx, &source, "RUN --mount")?;
                        let rel = found.first().cloned().unwrap_or_default();
                        if yes("rw") || yes("readwrite") {
                            // Writes are the step's own: a copy, so later steps see the context.
                            let dir = self.b.context_dir().map_err(|e| BuildError::Context(e.to_string()))?;
                            let (ctx, into) = (self.ctx.to_path_buf(), dir.path().to_path_buf());
                            tokio::task::spawn_blocking(move || copy_tree(&ctx, &rel, &into))
                                .await
                                .map_err(|e| BuildError::Engine(e.to_string()))??;
                            let path = dir.path().join("rw");
                            held.push(dir);
                            path
                        } else {
                            self.ctx.join(rel)
                        }
                    }
                };
                m.typ = Some(MountType::Bind);
                m.source = Some(path.to_string_lossy().into_owned());
                m.read_only = Some(!yes("rw") && !yes("readwrite"));
            }
            t => return Err(BuildError::Step(format!("RUN --mount: unknown mount type {t:?}"))),
        }
        Ok(Some(m))
    }

    /// `RUN --mount=type=secret,id=x[,target=/run/secrets/x][,env=NAME][,required][,mode,uid,gid]`:
    /// the request's secret as a read-only file of its own (mode 0400 unless asked), or as a
    /// variable of the command's environment; a secret the build was not given is left out
    /// unless `required`. Neither the content nor the file reaches the image or the cache key.
    fn secret_mount(
        &self,
        spec: &str,
        held: &mut Vec<crate::ContextDir>,
        env: &mut Vec<String>,
    ) -> Result<Option<wharf_container::config::Mount>> {
        use wharf_container::config::{Mount, MountType};
        let opts = MountOptions::parse(spec);
        let get = |k: &str| opts.get(k);
        let yes = |k: &str| opts.yes(k);
        let target = get("target").or_else(|| get("dst")).or_else(|| get("destination"));
        let id = get("id")
            .or_else(|| target.as_deref().and_then(|t| t.rsplit('/').next()).map(String::from))
            .filter(|i| !i.is_empty())
            .ok_or_else(|| BuildError::Step(format!("RUN --mount={spec}: a secret needs an id or a target")))?;
        let Some(value) = self.req.secrets.get(&id) else {
            if yes("required") {
                return Err(BuildError::Step(format!("secret {id}: not found")));
            }
            return Ok(None);
        };
        if let Some(name) = get("env") {
            env.push(format!("{name}={}", String::from_utf8_lossy(value)));
            if target.is_none() {
                return Ok(None);
            }
        }
        let num = |k: &str, d: u32, radix: u32| -> Result<u32> {
            get(k).map_or(Ok(d), |v| {
                u32::from_str_radix(&v, radix).map_err(|_| BuildError::Step(format!("RUN --mount: invalid {k} {v:?}")))
            })
        };
        let (mode, uid, gid) = (num("mode", 0o400, 8)?, num("uid", 0, 10)?, num("gid", 0, 10)?);
        let dir = self.b.context_dir().map_err(|e| BuildError::Context(e.to_string()))?;
        let file = dir.path().join("secret");
        let io = |e: std::io::Error| BuildError::Context(format!("secret {id}: {e}"));
        std::fs::write(&file, value).map_err(io)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).map_err(io)?;
        std::os::unix::fs::chown(&file, Some(uid), Some(gid)).map_err(io)?;
        held.push(dir);
        let target = format!(
            "/{}",
            crate::context::clean(&target.unwrap_or_else(|| format!("/run/secrets/{id}")))
        );
        Ok(Some(Mount {
            target: Some(target),
            source: Some(file.to_string_lossy().into_owned()),
            typ: Some(MountType::Bind),
            read_only: Some(true),
            ..Mount::default()
        }))
    }

    /// What of a `RUN --mount` decides the step's result: the mount as written, and for a
    /// bind what it shows: the digest of the context's files (contents and metadata, as COPY
    /// keys them), or the image of the stage or image it comes from. A cache mount's content
    /// is not part of it (BuildKit's rule: that is what a cache mount is for).
    pub(crate) async fn mount_identity(&self, spec: &str) -> Result<String> {
        let opts = MountOptions::parse(spec);
        let get = |k: &str| opts.get(k);
        if get("type").as_deref().unwrap_or("bind") != "bind" {
            return Ok(spec.to_string());
        }
        if let Some(from) = get("from") {
            return Ok(format!("{spec}\n{}", self.image_named(&from, "RUN --mount").await?));
        }
        let source = get("source").or_else(|| get("src")).unwrap_or_else(|| "/".into());
        let found = copy::resolve_sources(self.ctx, &source, "RUN --mount")?;
        let target = Target {
            known: Some(self.req.context_digests.clone()),
            digest_only: true,
            dest: "/m".into(),
            into_dir: false,
            owner: (0, 0),
            chmod: None,
            extract: false,
            ..Target::default()
        };
        let ctx = self.ctx.to_path_buf();
        let digest = tokio::task::spawn_blocking(move || copy::write_tar(&ctx, &found, &target, std::io::sink()))
            .await
            .map_err(|e| BuildError::Engine(e.to_string()))??;
        Ok(format!("{spec}\n{digest}"))
    }
}

/// Copies `rel` of `ctx` (a file or a tree, modes kept) to `dir/rw`.
fn copy_tree(ctx: &Path, rel: &str, dir: &Path) -> Result<()> {
    let target = Target {
        dest: "/rw".into(),
        into_dir: false,
        owner: (0, 0),
        chmod: None,
        extract: false,
        ..Target::default()
    };
    let mut buf = Vec::new();
    copy::write_tar(ctx, &[rel.to_string()], &target, &mut buf)?;
    crate::context::unpack(&buf[..], dir)
}

/// `type=bind,source=a,target=/b`: the options, names in lower case, a bare name as `true`.
pub(crate) struct MountOptions(Vec<(String, String)>);

impl MountOptions {
    pub(crate) fn parse(spec: &str) -> MountOptions {
        MountOptions(
            spec.split(',')
                .filter(|p| !p.is_empty())
                .map(|part| {
                    let (k, v) = part.split_once('=').unwrap_or((part, "true"));
                    (k.to_ascii_lowercase(), v.to_string())
                })
                .collect(),
        )
    }

    /// The option's value (the last one given).
    pub(crate) fn get(&self, k: &str) -> Option<String> {
        self.0.iter().rev().find(|(x, _)| x == k).map(|(_, v)| v.clone())
    }

    /// A boolean option is on (`rw`, `rw=true`).
    pub(crate) fn yes(&self, k: &str) -> bool {
        self.get(k).is_some_and(|v| v != "false")
    }
}
