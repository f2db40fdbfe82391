//! `.dockerignore`: the patterns Docker reads (one per line, `#` comments, `!` exceptions,
//! `**` across directories, shell patterns within one) and the path cleaning they rely on.
//! Pure, so the daemon (which removes what is left out of a context) and a client (which
//! never sends it) read the same file the same way.

use std::path::{Component, Path};

/// `.dockerignore` patterns, in order; a later `!pattern` takes a path back.
#[derive(Debug, Default, Clone)]
pub struct Ignore {
    rules: Vec<(bool, Vec<String>)>,
}

impl Ignore {
    /// Parse the file's text: one pattern per line, `#` comments, `!` exceptions, paths cleaned
    /// and taken relative to the context root.
    pub fn parse(text: &str) -> Ignore {
        let mut rules = Vec::new();
        for line in text.lines() {
            let mut p = line.trim();
            if p.is_empty() || p.starts_with('#') {
                continue;
            }
            let negate = p.starts_with('!');
            if negate {
                p = p[1..].trim();
            }
            let clean = clean(p);
            if clean.is_empty() {
                continue;
            }
            rules.push((negate, clean.split('/').map(str::to_string).collect()));
        }
        Ignore { rules }
    }

    /// Whether `rel` (a path relative to the context root, `/`-separated) is left out; a path
    /// under a left-out directory is left out too, unless an exception names it.
    pub fn excludes(&self, rel: &str) -> bool {
        let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
        let mut out = false;
        for (negate, pat) in &self.rules {
            // A pattern matches the path itself or any of its parents.
            let hit = (1..=parts.len()).any(|n| matches(pat, &parts[..n]));
            if hit {
                out = !negate;
            }
        }
        out
    }
}

/// A path cleaned as Go's `filepath.Clean`, without a leading `/` or `./`.
pub fn clean(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(s) => out.push(s.to_str().unwrap_or("")),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out.join("/")
}

/// Pattern segments against path segments: `**` matches any number of segments, the others
/// match one segment each as shell patterns.
fn matches(pat: &[String], parts: &[&str]) -> bool {
    match pat.split_first() {
        None => parts.is_empty(),
        Some((p, rest)) if p == "**" => (0..=parts.len()).any(|i| matches(rest, &parts[i..])),
        Some((p, rest)) => match parts.split_first() {
            Some((first, tail)) => glob(p.as_bytes(), first.as_bytes()) && matches(rest, tail),
            None => false,
        },
    }
}

/// One segment against a shell pattern: `*`, `?`, `[...]` classes, `\` escapes.
pub fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
        Some((b'?', rest)) => !s.is_empty() && glob(rest, &s[1..]),
        Some((b'[', rest)) => {
            let Some(end) = rest.iter().position(|c| *c == b']') else {
                return s.first() == Some(&b'[') && glob(rest, &s[1..]);
            };
            let (class, after) = (&rest[..end], &rest[end + 1..]);
            let Some(&c) = s.first() else { return false };
            let (neg, class) = match class.split_first() {
                Some((b'^' | b'!', c)) => (true, c),
                _ => (false, class),
            };
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == b'-' {
                    hit |= (class[i]..=class[i + 2]).contains(&c);
                    i += 3;
                } else {
                    hit |= class[i] == c;
                    i += 1;
                }
            }
            hit != neg && glob(after, &s[1..])
        }
        Some((b'\\', rest)) if !rest.is_empty() => s.first() == Some(&rest[0]) && glob(&rest[1..], &s[1..]),
        Some((c, rest)) => s.first() == Some(c) && glob(rest, &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_as_docker_reads_it() {
        let ig = Ignore::parse(
            "# comment\n*.log\n!keep.log\nbuild/\n**/*.tmp\n/secret\n./a/../b\ndocs/*.md\n!docs/README.md\n",
        );
        for (path, out) in [
            ("x.log", true),
            ("keep.log", false),
            ("sub/x.log", false),
            ("build", true),
            ("build/out/bin", true),
            ("deep/er/f.tmp", true),
            ("f.tmp", true),
            ("secret", true),
            ("secret/inner", true),
            ("b", true),
            ("a", false),
            ("docs/x.md", true),
            ("docs/README.md", false),
            ("docs/sub/x.md", false),
            ("src/main.rs", false),
        ] {
            assert_eq!(ig.excludes(path), out, "{path}");
        }
        assert!(glob(b"[a-c]x", b"bx") && !glob(b"[!a-c]x", b"bx") && glob(b"\\*", b"*"));
    }
}
