//! The project's checked invariants (`cargo xtask tidy`, and `cargo test -p xtask`): which
//! crate may depend on which (the rules are a block of ARCHITECTURE.md, next to its code map),
//! a `//!` paragraph on every module, `#![forbid(unsafe_code)]` on every crate that has no
//! reason for unsafe, and the size limits of the code's shape (files of at most 1,000 lines,
//! functions of at most 150). Each check is a pure function over what it is given, so the
//! tests can feed it a forbidden edge and see it refused.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The longest a source file may be.
pub const MAX_FILE_LINES: usize = 1000;
/// The longest a function may be.
pub const MAX_FN_LINES: usize = 150;

/// Files and functions over the limits (none since issue 20's splits), each with the most lines it may have until it is
/// split: a listed one may only shrink, and must leave the list once it is within
/// the limit. Files by path, functions as `path::name`.
pub const OVERSIZE: &[(&str, usize)] = &[];

/// Checks one measured size: over `limit` is a problem unless `key` is in [`OVERSIZE`] and no
/// bigger than it says there; a listed key within the limit is a problem too (take it off).
pub fn check_size(key: &str, what: &str, n: usize, limit: usize) -> Option<String> {
    check_size_in(OVERSIZE, key, what, n, limit)
}

/// [`check_size`] against the given list.
pub fn check_size_in(oversize: &[(&str, usize)], key: &str, what: &str, n: usize, limit: usize) -> Option<String> {
    let listed = oversize.iter().find(|(k, _)| *k == key).map(|(_, m)| *m);
    match listed {
        Some(_) if n <= limit => Some(format!(
            "{what} is {n} lines, within the limit: take {key} off xtask's OVERSIZE"
        )),
        Some(max) if n > max => Some(format!(
            "{what} is {n} lines: it may only shrink (at most {max} until it is split)"
        )),
        Some(_) => None,
        None if n > limit => Some(format!("{what} is {n} lines (at most {limit})")),
        None => None,
    }
}

/// The dependency rules of one crate.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Workspace crates it may depend on.
    pub allowed: BTreeSet<String>,
    /// External crates it must never depend on.
    pub never: BTreeSet<String>,
    /// Edges that break the rules today and are being removed: tolerated while they exist,
    /// refused as stale once they are gone, so the list stays true.
    pub debt: BTreeSet<String>,
}

/// The rules block of ARCHITECTURE.md.
#[derive(Debug, Default, Clone)]
pub struct Rules {
    /// Per crate.
    pub crates: BTreeMap<String, Rule>,
    /// The crates that may contain unsafe code.
    pub unsafe_allowed: BTreeSet<String>,
}

/// Reads the fenced block that follows the `## Dependency rules` heading: one line per crate,
/// `name: allowed... [| never: ...] [| debt: ...]`, and one `unsafe: crates...` line.
pub fn parse_rules(markdown: &str) -> Result<Rules, String> {
    let section = markdown
        .split("\n## Dependency rules")
        .nth(1)
        .ok_or("ARCHITECTURE.md has no `## Dependency rules` section")?;
    let block = section
        .split("```")
        .nth(1)
        .ok_or("the dependency rules section has no fenced block")?;
    let mut rules = Rules::default();
    for (n, line) in block.lines().enumerate().skip(1) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, rest) = line
            .split_once(':')
            .ok_or_else(|| format!("dependency rules, line {}: no `:` in {line:?}", n + 1))?;
        let words = |s: &str| s.split_whitespace().map(str::to_string).collect::<BTreeSet<_>>();
        if name == "unsafe" {
            rules.unsafe_allowed = words(rest);
            continue;
        }
        let mut parts = rest.split('|');
        let mut rule = Rule {
            allowed: words(parts.next().unwrap_or("")),
            ..Rule::default()
        };
        for part in parts {
            match part.trim().split_once(':') {
                Some(("never", w)) => rule.never = words(w),
                Some(("debt", w)) => rule.debt = words(w),
                _ => return Err(format!("dependency rules, line {}: unknown part {part:?}", n + 1)),
            }
        }
        rules.crates.insert(name.trim().to_string(), rule);
    }
    Ok(rules)
}

/// One package of the workspace as `cargo metadata` describes it.
#[derive(Debug, Clone)]
pub struct Package {
    /// Its name.
    pub name: String,
    /// Every crate it depends on (normal, dev and build).
    pub deps: BTreeSet<String>,
    /// Its crate roots (`lib.rs`, `main.rs`, binaries), not its tests or benches.
    pub roots: Vec<PathBuf>,
}

/// Checks every package's dependencies against the rules.
pub fn check_deps(rules: &Rules, packages: &[Package]) -> Vec<String> {
    let members: BTreeSet<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    let mut problems = Vec::new();
    for p in packages {
        let Some(rule) = rules.crates.get(&p.name) else {
            problems.push(format!("{}: no dependency rule in ARCHITECTURE.md", p.name));
            continue;
        };
        for d in &p.deps {
            let internal = members.contains(d.as_str());
            if rule.debt.contains(d) {
                continue;
            }
            if internal && !rule.allowed.contains(d) {
                problems.push(format!("{} must not depend on {d} (not in its allow-list)", p.name));
            }
            if rule.never.contains(d) {
                problems.push(format!("{} must not depend on {d}", p.name));
            }
        }
        for d in rule.debt.difference(&p.deps) {
            problems.push(format!(
                "{}: the debt edge to {d} is gone; take it off the rules block",
                p.name
            ));
        }
    }
    for name in rules.crates.keys() {
        if !members.contains(name.as_str()) {
            problems.push(format!("the rules name {name}, which is not a workspace member"));
        }
    }
    problems
}

/// A module that does not begin with its `//!` paragraph.
pub fn check_module_doc(path: &str, text: &str) -> Option<String> {
    let first = text.lines().find(|l| !l.trim().is_empty())?;
    (!first.starts_with("//!")).then(|| format!("{path}: no `//!` paragraph at the top"))
}

/// A crate root of a crate that may not use unsafe but does not forbid it.
pub fn check_forbid_unsafe(path: &str, text: &str) -> Option<String> {
    (!text.contains("#![forbid(unsafe_code)]")).then(|| format!("{path}: crate root without #![forbid(unsafe_code)]"))
}

/// Functions longer than `min` lines, as `(name, first line, lines)`. rustfmt's layout is
/// relied on: a body ends at the first `}` line with the indentation of its `fn`.
pub fn long_functions(text: &str, min: usize) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some((indent, name)) = fn_start(line) else {
            continue;
        };
        let close = format!("{indent}}}");
        let mut end = None;
        for (j, l) in lines.iter().enumerate().skip(i) {
            let t = l.trim_end();
            if t.ends_with(';') && !lines[i..j].iter().any(|x| x.trim_end().ends_with('{')) {
                break; // a declaration without a body
            }
            if (j > i && t == close) || (j == i && t.ends_with('}')) {
                end = Some(j);
                break;
            }
        }
        if let Some(end) = end {
            let n = end - i + 1;
            if n > min {
                out.push((name.to_string(), i + 1, n));
            }
        }
    }
    out
}

/// `(indentation, name)` when the line opens a function.
fn fn_start(line: &str) -> Option<(&str, &str)> {
    let body = line.trim_start();
    let indent = &line[..line.len() - body.len()];
    let mut rest = body;
    for prefix in [
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "const ",
        "async ",
        "unsafe ",
        "extern \"C\" ",
    ] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    for prefix in ["const ", "async ", "unsafe "] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    let rest = rest.strip_prefix("fn ")?;
    let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
    Some((indent, &rest[..end]))
}

/// Every `.rs` file under `dir`, sorted.
pub fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The workspace's packages, from `cargo metadata`.
pub fn packages(root: &Path) -> Result<Vec<Package>, String> {
    let out = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
        .args(["metadata", "--no-deps", "--format-version", "1", "--offline"])
        .current_dir(root)
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo metadata: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata: {e}"))?;
    let mut packages = Vec::new();
    for p in v["packages"].as_array().into_iter().flatten() {
        let deps = p["dependencies"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["name"].as_str().map(str::to_string))
            .collect();
        let roots = p["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| {
                t["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "lib" || k == "bin"))
            })
            .filter_map(|t| t["src_path"].as_str().map(PathBuf::from))
            .collect();
        packages.push(Package {
            name: p["name"].as_str().unwrap_or_default().to_string(),
            deps,
            roots,
        });
    }
    Ok(packages)
}

/// Every check over the workspace at `root`: the problems found, empty when all hold.
pub fn tidy(root: &Path) -> Result<Vec<String>, String> {
    let root = &root.canonicalize().map_err(|e| format!("{}: {e}", root.display()))?;
    let arch = fs::read_to_string(root.join("ARCHITECTURE.md")).map_err(|e| format!("ARCHITECTURE.md: {e}"))?;
    let rules = parse_rules(&arch)?;
    let packages = packages(root)?;
    let mut problems = check_deps(&rules, &packages);
    for p in &packages {
        if rules.unsafe_allowed.contains(&p.name) {
            continue;
        }
        for r in &p.roots {
            let text = fs::read_to_string(r).map_err(|e| format!("{}: {e}", r.display()))?;
            problems.extend(check_forbid_unsafe(&rel(root, r), &text));
        }
    }
    let mut sources = rust_files(&root.join("crates"));
    sources.extend(rust_files(&root.join("xtask/src")));
    let mut seen = BTreeSet::new();
    for f in sources
        .iter()
        .filter(|f| f.components().any(|c| c.as_os_str() == "src"))
    {
        let text = fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let path = rel(root, f);
        problems.extend(check_module_doc(&path, &text));
        let n = text.lines().count();
        problems.extend(check_size(&path, &path, n, MAX_FILE_LINES));
        let mut longest: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for (name, line, n) in long_functions(&text, 0) {
            let e = longest.entry(name).or_insert((line, n));
            if n > e.1 {
                *e = (line, n);
            }
        }
        for (key, _) in OVERSIZE {
            if let Some(name) = key.strip_prefix(&format!("{path}::")) {
                longest.entry(name.to_string()).or_insert((0, 0));
            }
        }
        for (name, (line, n)) in longest {
            let key = format!("{path}::{name}");
            let what = format!("{path}:{line}: fn {name}");
            problems.extend(check_size(&key, &what, n, MAX_FN_LINES));
        }
        seen.insert(path);
    }
    for (key, _) in OVERSIZE {
        let file = key.split("::").next().unwrap_or(key);
        if !seen.contains(file) {
            problems.push(format!("xtask's OVERSIZE names {key}, which is gone: take it off"));
        }
    }
    Ok(problems)
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}
