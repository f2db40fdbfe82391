//! `--change` instructions for `import` and `commit`: the Dockerfile instructions that only
//! touch the config (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, WORKDIR, VOLUME, STOPSIGNAL,
//! ONBUILD), applied to a `config` object. As in a Dockerfile, `$NAME`, `${NAME}`,
//! `${NAME:-default}` and `${NAME:+alternative}` in ENV, LABEL, USER and WORKDIR expand from
//! the config's environment as it stands (`ENV PATH=/usr/bin:$PATH`); single quotes and `\$`
//! keep them literal.

use serde_json::{json, Map, Value};

/// Parse a JSON array of strings (exec form), or `None` when `s` is not one.
fn exec_form(s: &str) -> Option<Vec<String>> {
    let t = s.trim();
    if !t.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(t).ok()
}

/// The value of `name` in an environment list (`NAME=value` entries).
fn lookup<'a>(env: &'a [String], name: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find_map(|e| e.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v))
}

/// Expand one variable reference whose `$` was just read from `chars` into `out`.
fn expand_var(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    env: &[String],
    out: &mut String,
) -> Result<(), String> {
    if chars.peek() == Some(&'{') {
        chars.next();
        let mut inner = String::new();
        loop {
            match chars.next() {
                None => return Err("missing '}' in a variable".into()),
                Some('}') => break,
                Some(c) => inner.push(c),
            }
        }
        let (name, op, word) = match inner.find(":-").or_else(|| inner.find(":+")) {
            Some(i) => (&inner[..i], &inner[i..i + 2], &inner[i + 2..]),
            None => (inner.as_str(), "", ""),
        };
        let val = lookup(env, name).filter(|v| !v.is_empty());
        out.push_str(match op {
            ":-" => val.unwrap_or(word),
            ":+" => val.map_or("", |_| word),
            _ => val.unwrap_or(""),
        });
        return Ok(());
    }
    let mut name = String::new();
    while let Some(&c) = chars.peek() {
        if c.is_ascii_alphanumeric() || c == '_' {
            name.push(c);
            chars.next();
        } else {
            break;
        }
    }
    if name.is_empty() {
        out.push('$');
    } else {
        out.push_str(lookup(env, &name).unwrap_or(""));
    }
    Ok(())
}

/// Split `k=v k2="v 2"` or the legacy `k v` form into pairs.
fn key_values(args: &str, legacy_space: bool, env: &[String]) -> Result<Vec<(String, String)>, String> {
    let args = args.trim();
    if legacy_space && !args.split_whitespace().next().unwrap_or("").contains('=') {
        let (k, v) = args.split_once(char::is_whitespace).ok_or("missing value")?;
        let v = shell_words(v.trim(), env)?.join(" ");
        return Ok(vec![(k.to_string(), v)]);
    }
    let mut out = Vec::new();
    for word in shell_words(args, env)? {
        let (k, v) = word
            .split_once('=')
            .ok_or_else(|| format!("invalid key=value pair {word:?}"))?;
        if k.is_empty() {
            return Err("key may not be empty".into());
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// Whitespace-separated words with double and single quotes, backslash escapes, and
/// variables expanded from `env` outside single quotes.
fn shell_words(s: &str, env: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => return Err("unterminated quote".into()),
                        Some(q) if q == c => break,
                        Some('\\') if c == '"' => cur.extend(chars.next()),
                        Some('$') if c == '"' => expand_var(&mut chars, env, &mut cur)?,
                        Some(x) => cur.push(x),
                    }
                }
            }
            '$' => {
                in_word = true;
                expand_var(&mut chars, env, &mut cur)?;
            }
            '\\' => {
                in_word = true;
                cur.extend(chars.next());
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// Apply one change line to `cfg` (the config's `config` object).
pub fn apply_change(cfg: &mut Map<String, Value>, line: &str) -> Result<(), String> {
    let line = line.trim();
    let (instr, args) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let args = args.trim();
    let cmd_like = |args: &str| -> Value {
        match exec_form(args) {
            Some(v) => json!(v),
            None => json!(["/bin/sh", "-c", args]),
        }
    };
    let env: Vec<String> = cfg
        .get("Env")
        .and_then(|e| serde_json::from_value(e.clone()).ok())
        .unwrap_or_default();
    let expand = |a: &str| -> Result<String, String> { Ok(shell_words(a, &env)?.join(" ")) };
    match instr.to_ascii_uppercase().as_str() {
        "CMD" => {
            cfg.insert("Cmd".into(), cmd_like(args));
        }
        "ENTRYPOINT" => {
            cfg.insert("Entrypoint".into(), cmd_like(args));
        }
        "ENV" => {
            let mut env = env.clone();
            for (k, v) in key_values(args, true, &env.clone())? {
                env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k.as_str()));
                env.push(format!("{k}={v}"));
            }
            cfg.insert("Env".into(), json!(env));
        }
        "LABEL" => {
            let labels = cfg.entry("Labels").or_insert_with(|| json!({}));
            if labels.is_null() {
                *labels = json!({});
            }
            for (k, v) in key_values(args, true, &env)? {
                labels[k] = json!(v);
            }
        }
        "EXPOSE" => {
            let ports = cfg.entry("ExposedPorts").or_insert_with(|| json!({}));
            if ports.is_null() {
                *ports = json!({});
            }
            for p in args.split_whitespace() {
                let p = if p.contains('/') {
                    p.to_string()
                } else {
                    format!("{p}/tcp")
                };
                let (num, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
                if num.parse::<u16>().is_err() || !matches!(proto, "tcp" | "udp" | "sctp") {
                    return Err(format!("invalid port {p:?}"));
                }
                ports[p.as_str()] = json!({});
            }
        }
        "VOLUME" => {
            let vols = cfg.entry("Volumes").or_insert_with(|| json!({}));
            if vols.is_null() {
                *vols = json!({});
            }
            let list = exec_form(args).unwrap_or_else(|| args.split_whitespace().map(str::to_string).collect());
            for v in list {
                vols[v.as_str()] = json!({});
            }
        }
        "USER" => {
            cfg.insert("User".into(), json!(expand(args)?));
        }
        "WORKDIR" => {
            cfg.insert("WorkingDir".into(), json!(expand(args)?));
        }
        "STOPSIGNAL" => {
            cfg.insert("StopSignal".into(), json!(args));
        }
        "ONBUILD" => {
            let ob = cfg.entry("OnBuild").or_insert_with(|| json!([]));
            if !ob.is_array() {
                *ob = json!([]);
            }
            ob.as_array_mut().expect("array").push(json!(args));
        }
        "" => return Err("empty change".into()),
        other => return Err(format!("{other} is not a valid change command")),
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
