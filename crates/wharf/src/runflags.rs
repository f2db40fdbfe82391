//! The `run`/`create` flags whose values have a syntax of their own, turned into the create
//! body's parts as the docker CLI turns them: `-p`/`--expose`, `-v`, `--mount`, `--network`
//! (docker's `name=...,alias=...` form too), and the unknown flag taken for the image.

use serde_json::{json, Map, Value};

use crate::error::{CliError, Result};

/// `-p [ip:][hostPort:]containerPort[/proto]` (ranges too) and `--expose`: the exposed port
/// keys and `PortBindings`, as the docker CLI builds them.
pub fn ports_flags(publish: &[String], expose: &[String]) -> Result<(Vec<String>, Map<String, Value>)> {
    let bad = |s: &str| {
        CliError::Usage(format!(
            "invalid argument \"{s}\" for \"-p, --publish\" flag: invalid port specification"
        ))
    };
    let range = |s: &str, spec: &str| -> Result<(u16, u16)> {
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let (a, b) = (
            a.parse::<u16>().map_err(|_| bad(spec))?,
            b.parse::<u16>().map_err(|_| bad(spec))?,
        );
        if b < a {
            return Err(bad(spec));
        }
        Ok((a, b))
    };
    let mut exposed = Vec::new();
    let mut bindings = Map::new();
    for e in expose {
        let (p, proto) = e.split_once('/').unwrap_or((e, "tcp"));
        let (a, b) = range(p, e)?;
        for port in a..=b {
            exposed.push(format!("{port}/{proto}"));
        }
    }
    for spec in publish {
        let (rest, proto) = spec.rsplit_once('/').unwrap_or((spec, "tcp"));
        let parts: Vec<&str> = rest.rsplitn(3, ':').collect();
        let (ip, host, ctr) = match parts.as_slice() {
            [c] => ("", "", *c),
            [c, h] => ("", *h, *c),
            [c, h, i] => (*i, *h, *c),
            _ => return Err(bad(spec)),
        };
        let (ca, cb) = range(ctr, spec)?;
        let hosts = if host.is_empty() {
            None
        } else {
            Some(range(host, spec)?)
        };
        if let Some((ha, hb)) = hosts {
            if hb - ha != cb - ca && hb != ha {
                return Err(bad(spec));
            }
        }
        for (i, port) in (ca..=cb).enumerate() {
            let key = format!("{port}/{proto}");
            let hp = match hosts {
                None => String::new(),
                Some((ha, hb)) if ha == hb && ca != cb => ha.to_string(),
                Some((ha, _)) => (ha + i as u16).to_string(),
            };
            exposed.push(key.clone());
            let e = bindings.entry(key).or_insert_with(|| json!([]));
            e.as_array_mut()
                .expect("array")
                .push(json!({"HostIp": ip.trim_start_matches('[').trim_end_matches(']'), "HostPort": hp}));
        }
    }
    exposed.sort();
    exposed.dedup();
    Ok((exposed, bindings))
}

/// `-v`: `src:dst[:mode]` goes to `Binds` (a relative host path made absolute, as the docker
/// CLI does); a lone `/dst` is an anonymous volume in `Config.Volumes`.
pub fn volume_flags(list: &[String]) -> Result<(Vec<String>, Vec<String>)> {
    let mut binds = Vec::new();
    let mut anon = Vec::new();
    for v in list {
        match v.split_once(':') {
            None => anon.push(v.clone()),
            Some((src, rest)) => {
                if src.starts_with('.') {
                    let abs = std::env::current_dir()?.join(src);
                    let clean: std::path::PathBuf = abs.components().collect();
                    binds.push(format!("{}:{rest}", clean.display()));
                } else {
                    binds.push(v.clone());
                }
            }
        }
    }
    Ok((binds, anon))
}

/// `--mount type=...,source=...,target=...`: the API's `Mount` object.
pub fn mount_flag(spec: &str) -> Result<Value> {
    let bad = |m: String| CliError::Usage(format!("invalid argument \"{spec}\" for \"--mount\" flag: {m}"));
    let mut m = json!({"Type": "volume"});
    let truthy = |v: Option<&str>| -> Result<bool> {
        match v {
            None | Some("1") | Some("true") => Ok(true),
            Some("0") | Some("false") => Ok(false),
            Some(x) => Err(bad(format!("invalid value {x}"))),
        }
    };
    for field in spec.split(',').filter(|f| !f.is_empty()) {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (field.to_ascii_lowercase(), None),
        };
        let val = || {
            v.map(String::from)
                .ok_or_else(|| bad(format!("invalid field '{field}' must be a key=value pair")))
        };
        match k.as_str() {
            "type" => m["Type"] = json!(val()?),
            "source" | "src" => m["Source"] = json!(val()?),
            "target" | "dst" | "destination" => m["Target"] = json!(val()?),
            "readonly" | "ro" => m["ReadOnly"] = json!(truthy(v)?),
            "consistency" => m["Consistency"] = json!(val()?),
            "bind-propagation" => m["BindOptions"]["Propagation"] = json!(val()?),
            "bind-nonrecursive" => m["BindOptions"]["NonRecursive"] = json!(truthy(v)?),
            "bind-create-mountpoint" => m["BindOptions"]["CreateMountpoint"] = json!(truthy(v)?),
            "volume-nocopy" => m["VolumeOptions"]["NoCopy"] = json!(truthy(v)?),
            "volume-subpath" => m["VolumeOptions"]["Subpath"] = json!(val()?),
            "image-subpath" => m["ImageOptions"]["Subpath"] = json!(val()?),
            "volume-driver" => m["VolumeOptions"]["DriverConfig"]["Name"] = json!(val()?),
            "volume-label" => {
                let s = val()?;
                let (a, b) = s.split_once('=').unwrap_or((&s, ""));
                m["VolumeOptions"]["Labels"][a] = json!(b);
            }
            "volume-opt" => {
                let s = val()?;
                let (a, b) = s
                    .split_once('=')
                    .ok_or_else(|| bad(format!("invalid volume-opt '{s}'")))?;
                m["VolumeOptions"]["DriverConfig"]["Options"][a] = json!(b);
            }
            "tmpfs-size" => {
                let s = val()?;
                let n = wharf_units::ram_in_bytes(&s).ok_or_else(|| bad(format!("invalid tmpfs-size {s}")))?;
                m["TmpfsOptions"]["SizeBytes"] = json!(n);
            }
            "tmpfs-mode" => {
                let s = val()?;
                let n = i64::from_str_radix(&s, 8).map_err(|_| bad(format!("invalid tmpfs-mode {s}")))?;
                m["TmpfsOptions"]["Mode"] = json!(n);
            }
            _ => return Err(bad(format!("unexpected key '{k}' in '{field}'"))),
        }
    }
    Ok(m)
}

/// One `--network`: a name, or docker's `name=n,alias=a,ip=...,ip6=...,mac-address=...,
/// link-local-ip=...,driver-opt=k=v,gw-priority=N`: the network's name and its endpoint.
pub fn network_flag(v: &str) -> Result<(String, Value)> {
    if !v.contains('=') {
        return Ok((v.to_string(), json!({})));
    }
    let mut name = None;
    let mut ep = json!({});
    for part in v.split(',') {
        let (k, val) = part
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("invalid network option: {part}")))?;
        match k {
            "name" => name = Some(val.to_string()),
            "alias" => match ep["Aliases"].as_array_mut() {
                Some(a) => a.push(json!(val)),
                None => ep["Aliases"] = json!([val]),
            },
            "ip" => ep["IPAMConfig"]["IPv4Address"] = json!(val),
            "ip6" => ep["IPAMConfig"]["IPv6Address"] = json!(val),
            "link-local-ip" => ep["IPAMConfig"]["LinkLocalIPs"] = json!([val]),
            "mac-address" => ep["MacAddress"] = json!(val),
            "driver-opt" => {
                let (dk, dv) = val.split_once('=').unwrap_or((val, ""));
                ep["DriverOpts"][dk] = json!(dv);
            }
            "gw-priority" => {
                let p: i64 = val
                    .parse()
                    .map_err(|_| CliError::Usage(format!("invalid gw-priority: {val}")))?;
                ep["GwPriority"] = json!(p);
            }
            other => return Err(CliError::Usage(format!("invalid field key {other}"))),
        }
    }
    let name = name.ok_or_else(|| CliError::Usage(format!("network name is missing in {v:?}")))?;
    Ok((name, ep))
}

/// A flag clap did not know, taken for the image or container because the arguments after
/// it are the command's: refused as a flag, as docker refuses it.
pub fn unknown_flag(first: &str) -> Result<()> {
    if first.starts_with('-') && first.len() > 1 {
        return Err(CliError::Usage(format!(
            "unknown flag: {}",
            first.split('=').next().unwrap_or(first)
        )));
    }
    Ok(())
}
