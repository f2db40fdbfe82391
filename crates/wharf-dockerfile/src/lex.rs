//! Words and variables as BuildKit's shell lexer reads them: whitespace-separated words with
//! double and single quotes and backslash escapes; `$NAME`, `${NAME}`, `${NAME:-default}` and
//! `${NAME:+alternative}` expanded from an environment list (`NAME=value` entries) outside
//! single quotes; `k=v` pairs (and ENV's and LABEL's legacy `k v` form); JSON exec forms.

use crate::{DockerfileError, Result};

fn syntax(msg: impl Into<String>) -> DockerfileError {
    DockerfileError::Syntax(msg.into())
}

/// Parse a JSON array of strings (exec form), or `None` when `s` is not one.
pub fn exec_form(s: &str) -> Option<Vec<String>> {
    let t = s.trim();
    if !t.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(t).ok()
}

/// The value of `name` in an environment list (`NAME=value` entries).
pub fn lookup<'a>(env: &'a [String], name: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find_map(|e| e.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v))
}

/// Expand one variable reference whose `$` was just read from `chars` into `out`.
fn expand_var(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, env: &[String], out: &mut String) -> Result<()> {
    if chars.peek() == Some(&'{') {
        chars.next();
        let mut inner = String::new();
        loop {
            match chars.next() {
                None => return Err(syntax("missing '}' in a variable")),
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
pub fn key_values(args: &str, legacy_space: bool, env: &[String]) -> Result<Vec<(String, String)>> {
    let args = args.trim();
    if legacy_space && !args.split_whitespace().next().unwrap_or("").contains('=') {
        let (k, v) = args
            .split_once(char::is_whitespace)
            .ok_or_else(|| syntax("missing value"))?;
        let v = shell_words(v.trim(), env)?.join(" ");
        return Ok(vec![(k.to_string(), v)]);
    }
    let mut out = Vec::new();
    for word in shell_words(args, env)? {
        let (k, v) = word
            .split_once('=')
            .ok_or_else(|| syntax(format!("invalid key=value pair {word:?}")))?;
        if k.is_empty() {
            return Err(syntax("key may not be empty"));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// Whitespace-separated words with double and single quotes, backslash escapes, and
/// variables expanded from `env` outside single quotes.
pub fn shell_words(s: &str, env: &[String]) -> Result<Vec<String>> {
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
                        None => return Err(syntax("unterminated quote")),
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
