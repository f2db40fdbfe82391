//! Words and variables as BuildKit's shell lexer reads them: whitespace-separated words with
//! double and single quotes and backslash escapes; `$NAME`, `${NAME}` and every operator of
//! the `dockerfile:1` syntax (`:-`, `-`, `:+`, `+`, `:?`, `?`, and the string operations `#`,
//! `##`, `%`, `%%`, `/`, `//` with shell patterns) expanded from an environment list
//! (`NAME=value` entries) outside single quotes; `k=v` pairs (and ENV's and LABEL's legacy `k v` form); JSON exec forms.

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

/// Whether `text` matches the shell pattern `pat` (`*`, `?`, and `\` quoting the next
/// character).
fn glob(pat: &[char], text: &[char]) -> bool {
    match pat.split_first() {
        None => text.is_empty(),
        Some(('*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        Some(('?', rest)) => !text.is_empty() && glob(rest, &text[1..]),
        Some(('\\', rest)) if !rest.is_empty() => text.first() == Some(&rest[0]) && glob(&rest[1..], &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob(rest, &text[1..]),
    }
}

/// `${name#pat}` and friends: the value with the shortest or longest matching prefix or suffix
/// taken off, or the first (or every) match replaced.
fn pattern_op(val: &str, op: &str, word: &str) -> String {
    let v: Vec<char> = val.chars().collect();
    let (pat, repl) = match op {
        "/" | "//" => word.split_once('/').unwrap_or((word, "")),
        _ => (word, ""),
    };
    let p: Vec<char> = pat.chars().collect();
    let s = |a: usize, b: usize| v[a..b].iter().collect::<String>();
    match op {
        "#" => (0..=v.len())
            .find(|&i| glob(&p, &v[..i]))
            .map_or(val.into(), |i| s(i, v.len())),
        "##" => (0..=v.len())
            .rev()
            .find(|&i| glob(&p, &v[..i]))
            .map_or(val.into(), |i| s(i, v.len())),
        "%" => (0..=v.len())
            .rev()
            .find(|&i| glob(&p, &v[i..]))
            .map_or(val.into(), |i| s(0, i)),
        "%%" => (0..=v.len())
            .find(|&i| glob(&p, &v[i..]))
            .map_or(val.into(), |i| s(0, i)),
        _ => {
            // `/` replaces the first longest match, `//` every one.
            let mut out = String::new();
            let mut i = 0;
            let mut replaced = false;
            while i < v.len() {
                let m = if replaced && op == "/" || p.is_empty() {
                    None
                } else {
                    (i + 1..=v.len()).rev().find(|&j| glob(&p, &v[i..j]))
                };
                match m {
                    Some(j) => {
                        out.push_str(repl);
                        i = j;
                        replaced = true;
                    }
                    None => {
                        out.push(v[i]);
                        i += 1;
                    }
                }
            }
            out
        }
    }
}

/// Expand one `${...}` body: a name, then an operator and its word: `:-`, `-`, `:+`, `+`,
/// `:?`, `?`, `#`, `##`, `%`, `%%`, `/`, `//`.
fn expand_braced(inner: &str, env: &[String]) -> Result<String> {
    let name_len = inner
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
        .map_or(inner.len(), |(i, _)| i);
    let (name, rest) = inner.split_at(name_len);
    if name.is_empty() {
        return Err(syntax(format!("bad substitution: ${{{inner}}}")));
    }
    let val = lookup(env, name);
    const OPS: &[&str] = &[":-", ":+", ":?", "##", "%%", "//", "-", "+", "?", "#", "%", "/"];
    let Some(op) = OPS.iter().find(|o| rest.starts_with(**o)) else {
        if rest.is_empty() {
            return Ok(val.unwrap_or("").to_string());
        }
        return Err(syntax(format!("bad substitution: ${{{inner}}}")));
    };
    let word_raw = &rest[op.len()..];
    let word = || -> Result<String> { Ok(shell_words(word_raw, env)?.join(" ")) };
    let set_nonempty = val.filter(|v| !v.is_empty());
    Ok(match *op {
        ":-" => set_nonempty.map_or_else(word, |v| Ok(v.into()))?,
        "-" => val.map_or_else(word, |v| Ok(v.into()))?,
        ":+" => set_nonempty.map_or(Ok(String::new()), |_| word())?,
        "+" => val.map_or(Ok(String::new()), |_| word())?,
        ":?" | "?" => {
            let ok = if *op == ":?" { set_nonempty } else { val };
            match ok {
                Some(v) => v.into(),
                None => return Err(syntax(format!("{name}: {}", word().unwrap_or_default()))),
            }
        }
        _ => pattern_op(val.unwrap_or(""), op, word_raw),
    })
}

/// Expand one variable reference whose `$` was just read from `chars` into `out`.
fn expand_var(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, env: &[String], out: &mut String) -> Result<()> {
    if chars.peek() == Some(&'{') {
        chars.next();
        let mut inner = String::new();
        let mut depth = 0;
        loop {
            match chars.next() {
                None => return Err(syntax("missing '}' in a variable")),
                Some('}') if depth == 0 => break,
                Some(c) => {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    inner.push(c)
                }
            }
        }
        out.push_str(&expand_braced(&inner, env)?);
        return Ok(());
    }
    // `$1`: a positional parameter, which a Dockerfile never has.
    if chars.peek().is_some_and(|c| c.is_ascii_digit()) {
        chars.next();
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
                // An unquoted expansion to nothing makes no word, as in a shell.
                let before = cur.len();
                expand_var(&mut chars, env, &mut cur)?;
                in_word |= cur.len() > before;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_substitution_form() {
        let env: Vec<String> = ["A=abc", "E=", "P=/usr/local/bin/tool.tar.gz", "N=1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for (input, want) in [
            ("$A ${A}", "abc abc"),
            ("${U:-d} ${E:-d} ${A:-d}", "d d abc"),
            ("${U-d} ${E-d}x ${A-d}", "d x abc"),
            ("${U:+s} ${E:+s}x ${A:+s}", "x s"),
            ("${U+s}x ${E+s} ${A+s}", "x s s"),
            ("${U:-$A}", "abc"),
            ("${P#*/} ${P##*/}", "usr/local/bin/tool.tar.gz tool.tar.gz"),
            ("${P%.*} ${P%%.*}", "/usr/local/bin/tool.tar /usr/local/bin/tool"),
            ("${A/b/X} ${P//o/0}", "aXc /usr/l0cal/bin/t00l.tar.gz"),
            ("${A#z} ${A%z}", "abc abc"),
            ("${A/?/_}", "_bc"),
            ("'$A' \"$A\" \\$A", "$A abc $A"),
            ("$ $1x", "$ x"),
            ("${N:?} ${A?}", "1 abc"),
        ] {
            assert_eq!(shell_words(input, &env).unwrap().join(" "), want, "{input}");
        }
        for (input, err) in [
            ("${U:?must be set}", "U: must be set"),
            ("${E:?}", "E: "),
            ("${}", "bad substitution: ${}"),
            ("${A!}", "bad substitution: ${A!}"),
            ("${A", "missing '}' in a variable"),
        ] {
            assert_eq!(shell_words(input, &env).unwrap_err().to_string(), err, "{input}");
        }
    }
}
