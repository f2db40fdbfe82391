//! Output as the docker CLI writes it: Go templates (`--format`, with Docker's extra functions
//! `json`, `join`, `split`, `lower`, `upper`, `title`, `pad`, `truncate`), `table` formats with a
//! header row, and columns aligned as Go's `tabwriter` aligns them (minimum width 10, padding 3).

use std::collections::HashMap;

use gtmpl::{Context, Func, FuncError, Template, Value};
use serde_json::Value as Json;

use crate::error::{CliError, Result};

/// JSON to a template value.
pub fn to_value(j: &Json) -> Value {
    match j {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(0.0))
            }
        }
        Json::String(s) => Value::from(s.clone()),
        Json::Array(a) => Value::Array(a.iter().map(to_value).collect()),
        Json::Object(o) => Value::Map(
            o.iter()
                .map(|(k, v)| (k.clone(), to_value(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

/// A template value back to JSON (for the `json` function); maps come out with sorted keys,
/// as Go marshals maps.
fn to_json(v: &Value) -> Json {
    match v {
        Value::Nil | Value::NoValue => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::String(s) => Json::String(s.clone()),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Json::from(i)
            } else if let Some(u) = n.as_u64() {
                Json::from(u)
            } else {
                Json::from(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::Array(a) => Json::Array(a.iter().map(to_json).collect()),
        Value::Map(m) | Value::Object(m) => {
            let sorted: std::collections::BTreeMap<_, _> = m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect();
            Json::Object(sorted.into_iter().collect())
        }
        Value::Function(_) => Json::Null,
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Nil | Value::NoValue => String::new(),
        other => other.to_string(),
    }
}

fn arg<'a>(args: &'a [Value], i: usize, name: &str, n: usize) -> std::result::Result<&'a Value, FuncError> {
    args.get(i).ok_or_else(|| FuncError::ExactlyXArgs(name.into(), n))
}

fn f_json(args: &[Value]) -> std::result::Result<Value, FuncError> {
    let v = arg(args, 0, "json", 1)?;
    Ok(Value::from(serde_json::to_string(&to_json(v)).unwrap_or_default()))
}

fn f_join(args: &[Value]) -> std::result::Result<Value, FuncError> {
    let sep = text(arg(args, 1, "join", 2)?);
    let items = match arg(args, 0, "join", 2)? {
        Value::Array(a) => a.iter().map(text).collect::<Vec<_>>(),
        Value::Nil | Value::NoValue => Vec::new(),
        other => vec![text(other)],
    };
    Ok(Value::from(items.join(&sep)))
}

fn f_split(args: &[Value]) -> std::result::Result<Value, FuncError> {
    let s = text(arg(args, 0, "split", 2)?);
    let sep = text(arg(args, 1, "split", 2)?);
    Ok(Value::Array(
        s.split(sep.as_str()).map(|x| Value::from(x.to_string())).collect(),
    ))
}

fn f_lower(args: &[Value]) -> std::result::Result<Value, FuncError> {
    Ok(Value::from(text(arg(args, 0, "lower", 1)?).to_lowercase()))
}

fn f_upper(args: &[Value]) -> std::result::Result<Value, FuncError> {
    Ok(Value::from(text(arg(args, 0, "upper", 1)?).to_uppercase()))
}

fn f_title(args: &[Value]) -> std::result::Result<Value, FuncError> {
    let s = text(arg(args, 0, "title", 1)?);
    let mut out = String::new();
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric();
    }
    Ok(Value::from(out))
}

fn f_pad(args: &[Value]) -> std::result::Result<Value, FuncError> {
    let s = text(arg(args, 0, "pad", 3)?);
    let n = |v: &Value| text(v).parse::<usize>().unwrap_or(0);
    let (l, r) = (n(arg(args, 1, "pad", 3)?), n(arg(args, 2, "pad", 3)?));
    Ok(Value::from(format!("{}{s}{}", " ".repeat(l), " ".repeat(r))))
}

fn f_truncate(args: &[Value]) -> std::result::Result<Value, FuncError> {
    let s = text(arg(args, 0, "truncate", 2)?);
    let n = text(arg(args, 1, "truncate", 2)?)
        .parse::<usize>()
        .unwrap_or(usize::MAX);
    Ok(Value::from(s.chars().take(n).collect::<String>()))
}

/// Go's `%v` for what an action prints: `map[k:v]` with sorted keys, `[a b]` for slices;
/// everything else prints as it is.
fn go_value(v: &Value) -> String {
    match v {
        Value::Map(m) | Value::Object(m) => {
            let sorted: std::collections::BTreeMap<_, _> = m.iter().collect();
            let items: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}:{}", go_value(v))).collect();
            format!("map[{}]", items.join(" "))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(go_value).collect::<Vec<_>>().join(" ")),
        Value::String(s) => s.clone(),
        Value::Nil | Value::NoValue => "<nil>".into(),
        other => other.to_string(),
    }
}

fn f_gofmt(args: &[Value]) -> std::result::Result<Value, FuncError> {
    Ok(match arg(args, 0, "gofmt", 1)? {
        v @ (Value::Map(_) | Value::Object(_) | Value::Array(_)) => Value::from(go_value(v)),
        other => other.clone(),
    })
}

/// Wrap every printing action in `gofmt`, so maps and slices print as Go prints them
/// (gtmpl prints its own debug form). Control actions, comments and assignments stay as
/// they are.
fn go_print(tmpl: &str) -> String {
    let mut out = String::new();
    let mut rest = tmpl;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = &after[..end];
        let (lt, body) = match inner.strip_prefix('-') {
            Some(b) if b.starts_with(char::is_whitespace) => ("-", b),
            _ => ("", inner),
        };
        let (body, rt) = match body.strip_suffix('-') {
            Some(b) if b.ends_with(char::is_whitespace) => (b, "-"),
            _ => (body, ""),
        };
        let t = body.trim();
        let word = t.split(|c: char| c.is_whitespace() || c == '(').next().unwrap_or("");
        let control = matches!(
            word,
            "if" | "else" | "end" | "range" | "with" | "define" | "template" | "block" | "break" | "continue"
        );
        let assign = t.starts_with('$') && (t.contains(":=") || t.split_whitespace().nth(1) == Some("="));
        if t.is_empty() || control || assign || t.starts_with("/*") {
            out.push_str(&rest[start..start + 2 + end + 2]);
        } else {
            out.push_str(&format!("{{{{{lt} gofmt ({t}) {rt}}}}}"));
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// A row's label by name, empty when it has none (docker's `Label` method).
fn f_label(args: &[Value]) -> std::result::Result<Value, FuncError> {
    let name = text(arg(args, 1, "label", 2)?);
    Ok(match arg(args, 0, "label", 2)? {
        Value::Map(m) | Value::Object(m) => m.get(&name).map(text).map(Value::from).unwrap_or(Value::from("")),
        _ => Value::from(""),
    })
}

const FUNCS: &[(&str, Func)] = &[
    ("label", f_label as Func),
    ("gofmt", f_gofmt as Func),
    ("json", f_json as Func),
    ("join", f_join as Func),
    ("split", f_split as Func),
    ("lower", f_lower as Func),
    ("upper", f_upper as Func),
    ("title", f_title as Func),
    ("pad", f_pad as Func),
    ("truncate", f_truncate as Func),
];

/// A parsed `--format`.
pub struct Format {
    tmpl: Template,
    /// `table ...`: print a header row and align columns.
    pub table: bool,
    /// The template calls a row's `.Label "name"`.
    labels: bool,
}

/// docker's rows have a `Label` method (`{{.Label "com.example.team"}}`); gtmpl has no
/// methods, so the call becomes `label` of the row's labels as a map (`LabelMap`, added to
/// each row when the template uses it).
fn label_calls(tmpl: &str) -> (String, bool) {
    let mut out = String::new();
    let mut rest = tmpl;
    let mut found = false;
    while let Some(i) = rest.find(".Label ") {
        let after = rest[i + ".Label ".len()..].trim_start();
        let Some(arg) = after.strip_prefix('"').and_then(|a| a.find('"').map(|e| &a[..e])) else {
            out.push_str(&rest[..i + 1]);
            rest = &rest[i + 1..];
            continue;
        };
        out.push_str(&rest[..i]);
        out.push_str(&format!("(label .LabelMap \"{arg}\")"));
        rest = &after[arg.len() + 2..];
        found = true;
    }
    out.push_str(rest);
    (out, found)
}

impl Format {
    /// Parse a user's format: `table` prefix, `json` (each object as one line of JSON), `\t`
    /// and `\n` escapes, as the docker CLI reads them.
    pub fn parse(spec: &str) -> Result<Format> {
        let (table, body) = match spec.strip_prefix("table") {
            Some(rest) => (true, rest.trim_start().to_string()),
            None if spec.trim() == "json" => (false, "{{json .}}".to_string()),
            None => (false, spec.to_string()),
        };
        let (body, labels) = label_calls(&body);
        let body = go_print(&body.replace("\\t", "\t").replace("\\n", "\n"));
        let mut tmpl = Template::default();
        tmpl.add_funcs(FUNCS);
        tmpl.parse(body).map_err(|e| CliError::Template(e.to_string()))?;
        Ok(Format { tmpl, table, labels })
    }

    /// A row with its labels as a map too, when the template asks for `.Label`.
    fn row(&self, r: &Json) -> Json {
        let mut r = r.clone();
        if self.labels {
            let map: serde_json::Map<String, Json> = match &r["Labels"] {
                Json::Object(o) => o.clone(),
                Json::String(s) => s
                    .split(',')
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                        (k.to_string(), Json::from(v))
                    })
                    .collect(),
                _ => serde_json::Map::new(),
            };
            r["LabelMap"] = Json::Object(map);
        }
        r
    }

    /// Render one object.
    pub fn render(&self, v: &Json) -> Result<String> {
        self.render_value(to_value(v))
    }

    fn render_value(&self, v: Value) -> Result<String> {
        self.tmpl
            .render(&Context::from(v))
            .map_err(|e| CliError::Template(format!("executing \"\" at <{}>", e).replace("<>", "")))
    }

    /// Render a list: rows of `table` output aligned under the header (each field's header is
    /// given in `headers`), or one line per object.
    pub fn list(&self, rows: &[Json], headers: &[(&str, &str)]) -> Result<String> {
        let mut lines = Vec::new();
        if self.table {
            let h: Json = headers.iter().map(|(k, v)| (k.to_string(), Json::from(*v))).collect();
            lines.push(self.render(&h)?);
        }
        for r in rows {
            lines.push(self.render(&self.row(r))?);
        }
        if self.table {
            Ok(tabwrite(&lines.join("\n")))
        } else {
            let mut out = String::new();
            for l in lines {
                out.push_str(&l);
                out.push('\n');
            }
            Ok(out)
        }
    }
}

/// Go's `tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)`: tab-separated cells padded to the widest
/// in their column plus 3, at least 10; the last cell of a line is not padded.
pub fn tabwrite(text: &str) -> String {
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for r in &rows {
        for (i, c) in r.iter().enumerate().take(r.len().saturating_sub(1)) {
            widths[i] = widths[i].max((c.chars().count() + 3).max(10));
        }
    }
    let mut out = String::new();
    for r in rows {
        let last = r.len().saturating_sub(1);
        for (i, c) in r.iter().enumerate() {
            out.push_str(c);
            if i < last {
                out.push_str(&" ".repeat(widths[i] - c.chars().count()));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_functions_and_json() {
        let v = json!({"Name": "/web", "State": {"Pid": 42, "Running": true}, "Config": {"Env": ["A=1", "B=2"], "Labels": {"z": "1", "a": "2"}}});
        let r = |f: &str| Format::parse(f).unwrap().render(&v).unwrap();
        assert_eq!(r("{{.State.Pid}} {{.State.Running}}"), "42 true");
        assert_eq!(r("{{join .Config.Env \",\"}}"), "A=1,B=2");
        assert_eq!(r("{{json .Config.Labels}}"), r#"{"a":"2","z":"1"}"#);
        assert_eq!(r("{{upper .Name}} {{title \"hello world\"}}"), "/WEB Hello World");
        assert_eq!(r("{{range .Config.Env}}[{{.}}]{{end}}"), "[A=1][B=2]");
        assert_eq!(r("{{index .Config.Labels \"a\"}}"), "2");
        assert_eq!(r("{{truncate .Name 3}}|{{pad .Name 1 1}}|"), "/we| /web |");
        // Maps and slices print as Go's %v does.
        assert_eq!(r("{{.Config.Labels}} {{.Config.Env}}"), "map[a:2 z:1] [A=1 B=2]");
        assert_eq!(
            r("{{- .Config.Env -}} {{$x := .Name}}{{$x}}{{/* c */}}"),
            "[A=1 B=2]/web"
        );
        assert_eq!(r("{{if .State.Running}}up{{else}}down{{end}}"), "up");
    }

    #[test]
    fn json_format_and_label_calls() {
        let row = json!({"ID": "abc", "Labels": "team=a,tier=web"});
        let f = Format::parse("json").unwrap();
        assert_eq!(
            f.list(std::slice::from_ref(&row), &[]).unwrap(),
            "{\"ID\":\"abc\",\"Labels\":\"team=a,tier=web\"}\n"
        );
        let f = Format::parse("{{.ID}} {{.Label \"tier\"}}|{{ .Label \"none\" }}|").unwrap();
        assert_eq!(f.list(&[row], &[]).unwrap(), "abc web||\n");
        assert_eq!(label_calls("{{.Labels}}").0, "{{.Labels}}");
    }

    #[test]
    fn tables_align_like_tabwriter() {
        let f = Format::parse("table {{.ID}}\\t{{.Name}}").unwrap();
        let out = f
            .list(
                &[
                    json!({"ID": "abc", "Name": "x"}),
                    json!({"ID": "0123456789ab", "Name": "y"}),
                ],
                &[("ID", "CONTAINER ID"), ("Name", "NAMES")],
            )
            .unwrap();
        assert_eq!(out, "CONTAINER ID   NAMES\nabc            x\n0123456789ab   y\n");
    }
}
