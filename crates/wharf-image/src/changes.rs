//! `--change` instructions for `import` and `commit`, applied to a `config` object: the
//! Dockerfile instructions that only touch the config, parsed by `wharf-dockerfile` (variables
//! expand from the config's environment as it stands, `ENV PATH=/usr/bin:$PATH`).

use serde_json::{json, Map, Value};
use wharf_dockerfile::{parse_change, Instruction};

/// The object at `key` in `cfg`, made one when it is missing or null.
fn object<'a>(cfg: &'a mut Map<String, Value>, key: &str) -> &'a mut Value {
    let v = cfg.entry(key).or_insert_with(|| json!({}));
    if !v.is_object() {
        *v = json!({});
    }
    v
}

/// Apply one change line to `cfg` (the config's `config` object).
pub fn apply_change(cfg: &mut Map<String, Value>, line: &str) -> Result<(), String> {
    let env: Vec<String> = cfg
        .get("Env")
        .and_then(|e| serde_json::from_value(e.clone()).ok())
        .unwrap_or_default();
    match parse_change(line, &env).map_err(|e| e.to_string())? {
        Instruction::Cmd(c) => {
            cfg.insert("Cmd".into(), json!(c.argv()));
        }
        Instruction::Entrypoint(c) => {
            cfg.insert("Entrypoint".into(), json!(c.argv()));
        }
        Instruction::Env(pairs) => {
            let mut env = env;
            for (k, v) in pairs {
                env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k.as_str()));
                env.push(format!("{k}={v}"));
            }
            cfg.insert("Env".into(), json!(env));
        }
        Instruction::Label(pairs) => {
            let labels = object(cfg, "Labels");
            for (k, v) in pairs {
                labels[k] = json!(v);
            }
        }
        Instruction::Expose(ports) => {
            let exposed = object(cfg, "ExposedPorts");
            for p in ports {
                exposed[p] = json!({});
            }
        }
        Instruction::Volume(list) => {
            let vols = object(cfg, "Volumes");
            for v in list {
                vols[v] = json!({});
            }
        }
        Instruction::User(u) => {
            cfg.insert("User".into(), json!(u));
        }
        Instruction::Workdir(w) => {
            cfg.insert("WorkingDir".into(), json!(w));
        }
        Instruction::StopSignal(s) => {
            cfg.insert("StopSignal".into(), json!(s));
        }
        Instruction::OnBuild(i) => {
            let ob = cfg.entry("OnBuild").or_insert_with(|| json!([]));
            if !ob.is_array() {
                *ob = json!([]);
            }
            ob.as_array_mut().expect("array").push(json!(i));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(lines: &[&str], expect: Value) {
        let mut m = Map::new();
        for l in lines {
            apply_change(&mut m, l).unwrap();
        }
        assert_eq!(Value::Object(m), expect, "{lines:?}");
    }

    #[test]
    fn cases() {
        check(&["CMD [\"/bin/sh\"]"], json!({"Cmd": ["/bin/sh"]}));
        check(&["CMD echo hi"], json!({"Cmd": ["/bin/sh", "-c", "echo hi"]}));
        check(&["ENV A=1 B=\"x y\"", "ENV A 2"], json!({"Env": ["B=x y", "A=2"]}));
        check(
            &["EXPOSE 80 53/udp"],
            json!({"ExposedPorts": {"80/tcp": {}, "53/udp": {}}}),
        );
        check(
            &["LABEL a=b", "USER 1000:1000", "WORKDIR /srv"],
            json!({"Labels": {"a": "b"}, "User": "1000:1000", "WorkingDir": "/srv"}),
        );
        check(&["VOLUME [\"/data\"]"], json!({"Volumes": {"/data": {}}}));
        let mut m = Map::new();
        assert!(apply_change(&mut m, "RUN rm -rf /").is_err());
        assert!(apply_change(&mut m, "EXPOSE 99999").is_err());
        assert!(apply_change(&mut m, "ENV A=\"unterminated").is_err());
    }

    #[test]
    fn variables_expand_from_the_env_as_it_stands() {
        check(
            &[
                "ENV PATH=/bin",
                "ENV PATH=/usr/bin:$PATH HOME=/root",
                "ENV A=${HOME}/x B='$HOME' C=\\$HOME D=\"$HOME y\"",
                "ENV E=${NOPE:-dflt} F=${HOME:+set} G=${NOPE:+set}",
                "WORKDIR $HOME/w",
                "LABEL p=$PATH",
            ],
            json!({
                "Env": ["PATH=/usr/bin:/bin", "HOME=/root", "A=/root/x", "B=$HOME", "C=$HOME",
                        "D=/root y", "E=dflt", "F=set", "G="],
                "WorkingDir": "/root/w",
                "Labels": {"p": "/usr/bin:/bin"},
            }),
        );
    }
}
