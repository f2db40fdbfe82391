//! A whole Dockerfile as BuildKit's `dockerfile:1` frontend reads it, before any variable is
//! expanded: the parser directives at the top (`syntax`, `escape`, `check`), logical lines
//! (continuations joined, comments inside them dropped), heredocs (`<<EOF`, `<<-EOF`, quoted
//! delimiters, several on one line), flags (`--from=x`), the `ARG`s before the first `FROM`,
//! and the stages. Errors name the line, in Docker's words.

use crate::DockerfileError;

/// The instructions Docker knows.
const INSTRUCTIONS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// The instructions whose arguments may open heredocs.
const HEREDOC_INSTRUCTIONS: &[&str] = &["RUN", "COPY", "ADD"];

/// A parse error on `line` (1-based).
fn error(line: usize, msg: impl std::fmt::Display) -> DockerfileError {
    DockerfileError::Parse {
        line,
        message: msg.to_string(),
    }
}

/// The parser directives of a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    /// `# syntax=`: the frontend asked for (only `docker/dockerfile:1.x`, built in, is taken).
    pub syntax: Option<String>,
    /// `# escape=`: the escape character, `\` or `` ` ``.
    pub escape: char,
    /// `# check=`: the build checks' settings, kept as given.
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            syntax: None,
            escape: '\\',
            check: None,
        }
    }
}

/// A heredoc's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word (`EOF`).
    pub name: String,
    /// The lines between the instruction and the delimiter, each ending in `\n`.
    pub content: String,
    /// Variables in it are expanded (an unquoted delimiter).
    pub expand: bool,
}

/// One instruction as written, its variables not yet expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The line it starts on (1-based).
    pub line: usize,
    /// The instruction, upper case (`RUN`).
    pub instruction: String,
    /// Its leading `--name[=value]` flags, in order (`value` empty when absent).
    pub flags: Vec<(String, String)>,
    /// The rest of the line after the flags (continuations joined).
    pub args: String,
    /// Its heredocs, in the order they were opened.
    pub heredocs: Vec<Heredoc>,
}

impl Line {
    /// The value of flag `name`, the last one given.
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of flag `name` (`--mount` and `--exclude` repeat).
    pub fn flag_all(&self, name: &str) -> Vec<&str> {
        self.flags
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The instruction as the build shows it (`RUN echo hi`).
    pub fn display(&self) -> String {
        let mut s = self.instruction.clone();
        for (k, v) in &self.flags {
            s.push_str(&format!(" --{k}"));
            if !v.is_empty() {
                s.push_str(&format!("={v}"));
            }
        }
        if !self.args.is_empty() {
            s.push(' ');
            s.push_str(&self.args);
        }
        s
    }
}

/// A stage: its `FROM` line and the instructions after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// `FROM`'s line.
    pub from: Line,
    /// `AS name`, lower case.
    pub name: Option<String>,
    /// The base as written (`busybox:1.36`, `$BASE`, `scratch`, an earlier stage's name).
    pub base: String,
    /// The instructions, in order.
    pub lines: Vec<Line>,
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The parser directives.
    pub directives: Directives,
    /// The `ARG`s before the first `FROM` (they may name the bases).
    pub meta_args: Vec<Line>,
    /// The stages, in order.
    pub stages: Vec<Stage>,
}

/// Parse a Dockerfile.
pub fn parse(text: &str) -> Result<Dockerfile, DockerfileError> {
    let physical: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    let (directives, first) = directives(&physical)?;
    let lines = logical_lines(&physical, first, directives.escape)?;
    let mut meta_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for l in lines {
        if l.instruction == "FROM" {
            stages.push(stage(l)?);
        } else if let Some(s) = stages.last_mut() {
            s.lines.push(l);
        } else if l.instruction == "ARG" {
            meta_args.push(l);
        } else {
            return Err(error(l.line, "no build stage in current context"));
        }
    }
    if stages.is_empty() {
        return Err(DockerfileError::Syntax(
            "the Dockerfile (Dockerfile) cannot be empty".into(),
        ));
    }
    Ok(Dockerfile {
        directives,
        meta_args,
        stages,
    })
}

/// The directives at the top, and the index of the first line after them.
fn directives(lines: &[&str]) -> Result<(Directives, usize), DockerfileError> {
    let mut d = Directives::default();
    let mut seen = Vec::new();
    for (i, raw) in lines.iter().enumerate() {
        let Some(body) = raw.trim_start().strip_prefix('#') else {
            return Ok((d, i));
        };
        let Some((k, v)) = body.split_once('=') else {
            return Ok((d, i));
        };
        let key = k.trim().to_ascii_lowercase();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Ok((d, i));
        }
        let value = v.trim().to_string();
        if !matches!(key.as_str(), "syntax" | "escape" | "check") {
            // An unknown directive is a comment, and ends the directives.
            return Ok((d, i));
        }
        if seen.contains(&key) {
            return Err(error(i + 1, format!("only one {key} parser directive can be used")));
        }
        seen.push(key.clone());
        match key.as_str() {
            "syntax" => {
                if !builtin_frontend(&value) {
                    return Err(error(
                        i + 1,
                        format!("unsupported frontend {value:?}: this builder has docker/dockerfile:1 built in and fetches no other"),
                    ));
                }
                d.syntax = Some(value);
            }
            "escape" => {
                d.escape = match value.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err(error(
                            i + 1,
                            format!("invalid escape token '{value}' does not match ` or \\"),
                        ))
                    }
                }
            }
            _ => d.check = Some(value),
        }
    }
    Ok((d, lines.len()))
}

/// `docker/dockerfile:1`, `:1.7`, `:1.7.1`, with or without `docker.io/`, labs and digests aside.
fn builtin_frontend(v: &str) -> bool {
    let v = v.strip_prefix("docker.io/").unwrap_or(v);
    let Some(tag) = v.strip_prefix("docker/dockerfile:") else {
        return false;
    };
    let tag = tag.split('@').next().unwrap_or("");
    tag == "1"
        || tag.strip_prefix("1.").is_some_and(|r| {
            r.split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        })
}

/// Whether a physical line continues on the next one (ends in the escape character).
fn continues(line: &str, escape: char) -> bool {
    line.trim_end().ends_with(escape)
}

/// Logical lines from `first` on: comments dropped (inside continuations too), continuations
/// joined, heredoc bodies taken.
fn logical_lines(lines: &[&str], first: usize, escape: char) -> Result<Vec<Line>, DockerfileError> {
    let mut out = Vec::new();
    let mut i = first;
    while i < lines.len() {
        let raw = lines[i];
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') {
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut text = String::new();
        let mut cur = raw;
        loop {
            if continues(cur, escape) {
                let c = cur.trim_end();
                text.push_str(&c[..c.len() - escape.len_utf8()]);
                i += 1;
                // Comments and empty lines inside a continuation are dropped.
                while i < lines.len() && {
                    let n = lines[i].trim();
                    n.starts_with('#') || n.is_empty()
                } {
                    i += 1;
                }
                if i >= lines.len() {
                    break;
                }
                cur = lines[i];
            } else {
                text.push_str(cur);
                i += 1;
                break;
            }
        }
        let mut l = split_line(start, text.trim())?;
        if HEREDOC_INSTRUCTIONS.contains(&l.instruction.as_str()) {
            for (name, strip, expand) in heredoc_markers(&l.args) {
                let mut content = String::new();
                loop {
                    let Some(body) = lines.get(i) else {
                        return Err(error(start, format!("unterminated heredoc {name}")));
                    };
                    i += 1;
                    let body = if strip { body.trim_start_matches('\t') } else { body };
                    if body == name {
                        break;
                    }
                    content.push_str(body);
                    content.push('\n');
                }
                l.heredocs.push(Heredoc { name, content, expand });
            }
        }
        out.push(l);
    }
    Ok(out)
}

/// The heredocs a line opens: `(delimiter, strip leading tabs, expand variables)`.
fn heredoc_markers(args: &str) -> Vec<(String, bool, bool)> {
    let mut out = Vec::new();
    let b = args.as_bytes();
    let mut i = 0;
    while let Some(p) = args[i..].find("<<") {
        let mut j = i + p + 2;
        let strip = b.get(j) == Some(&b'-');
        if strip {
            j += 1;
        }
        let quote = b.get(j).copied().filter(|c| *c == b'"' || *c == b'\'');
        if quote.is_some() {
            j += 1;
        }
        let name_start = j;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
            j += 1;
        }
        let name = &args[name_start..j];
        if let Some(q) = quote {
            if b.get(j) != Some(&q) {
                i = j.max(i + p + 2);
                continue;
            }
            j += 1;
        }
        if !name.is_empty() && !name.chars().all(|c| c.is_ascii_digit()) {
            out.push((name.to_string(), strip, quote.is_none()));
        }
        i = j.max(i + p + 2);
    }
    out
}

/// `INSTRUCTION --flag=v args` into its parts; an unknown instruction is an error.
fn split_line(line: usize, text: &str) -> Result<Line, DockerfileError> {
    let (word, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let instruction = word.to_ascii_uppercase();
    if !INSTRUCTIONS.contains(&instruction.as_str()) {
        return Err(error(line, format!("unknown instruction: {word}")));
    }
    let mut rest = rest.trim_start();
    let mut flags = Vec::new();
    // ONBUILD's flags belong to the instruction it holds.
    while instruction != "ONBUILD" && rest.starts_with("--") {
        let (f, r) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let f = &f[2..];
        if f.is_empty() {
            break;
        }
        let (k, v) = f.split_once('=').unwrap_or((f, ""));
        flags.push((k.to_ascii_lowercase(), v.to_string()));
        rest = r.trim_start();
    }
    Ok(Line {
        line,
        instruction,
        flags,
        args: rest.trim_end().to_string(),
        heredocs: Vec::new(),
    })
}

/// A `FROM [--platform=p] base [AS name]` line as a stage.
fn stage(from: Line) -> Result<Stage, DockerfileError> {
    let words: Vec<&str> = from.args.split_whitespace().collect();
    let (base, name) = match words.as_slice() {
        [base] => (*base, None),
        [base, as_, name] if as_.eq_ignore_ascii_case("as") => (*base, Some(name.to_ascii_lowercase())),
        [] => return Err(error(from.line, "FROM requires either one or three arguments")),
        _ => return Err(error(from.line, "FROM requires either one or three arguments")),
    };
    if let Some(n) = &name {
        let ok = n.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && n.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !ok {
            return Err(error(
                from.line,
                format!("invalid name for build stage: {n:?}, name can't start with a number or contain symbols"),
            ));
        }
    }
    for (k, _) in &from.flags {
        if k != "platform" {
            return Err(error(from.line, format!("unknown flag: {k}")));
        }
    }
    Ok(Stage {
        base: base.to_string(),
        name,
        lines: Vec::new(),
        from,
    })
}

#[cfg(test)]
mod tests;
