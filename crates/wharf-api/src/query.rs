//! Query-string and filter parsing with Docker's rules: booleans are false only for `""`, `0`,
//! `no`, `false` and `none`; `filters` arrive as `{"k":{"v":true}}` (the CLI) or `{"k":["v"]}`
//! (docker-py), and both mean the same.

use std::collections::BTreeMap;

use crate::error::ApiError;

/// Decoded query parameters, in order, repeated keys kept.
#[derive(Debug, Default, Clone)]
pub struct Query(pub Vec<(String, String)>);

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-decode a path segment.
pub fn decode_path(s: &str) -> String {
    pct_decode(&s.replace('+', "%2B"))
}

impl Query {
    /// Parse a raw query string.
    pub fn parse(q: Option<&str>) -> Self {
        Query(
            q.unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (pct_decode(k), pct_decode(v))
                })
                .collect(),
        )
    }
    /// First value of `k`.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.as_str())
    }
    /// All values of `k`.
    pub fn all(&self, k: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(kk, _)| kk == k)
            .map(|(_, v)| v.clone())
            .collect()
    }
    /// Docker's boolean rule.
    pub fn bool(&self, k: &str) -> bool {
        match self.get(k) {
            None => false,
            Some(v) => !matches!(v.to_ascii_lowercase().as_str(), "" | "0" | "no" | "false" | "none"),
        }
    }
    /// A boolean parameter that defaults to `default` when absent or empty (moby's
    /// `BoolValueOrDefault`): `stream=False` from docker-py is false, as `stream=0` is.
    pub fn bool_or(&self, k: &str, default: bool) -> bool {
        match self.get(k) {
            None | Some("") => default,
            Some(_) => self.bool(k),
        }
    }
    /// The `filters` parameter.
    pub fn filters(&self) -> Result<BTreeMap<String, Vec<String>>, ApiError> {
        parse_filters(self.get("filters").unwrap_or(""))
    }
}

/// Parse Docker's filter JSON in either form.
pub fn parse_filters(s: &str) -> Result<BTreeMap<String, Vec<String>>, ApiError> {
    let mut out = BTreeMap::new();
    if s.trim().is_empty() {
        return Ok(out);
    }
    let v: serde_json::Value =
        serde_json::from_str(s).map_err(|e| ApiError::invalid(format!("invalid filter: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::invalid("invalid filter: not an object"))?;
    for (k, vals) in obj {
        let list: Vec<String> = match vals {
            serde_json::Value::Object(m) => m
                .iter()
                .filter(|(_, b)| b.as_bool() != Some(false))
                .map(|(x, _)| x.clone())
                .collect(),
            serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
            serde_json::Value::String(s) => vec![s.clone()],
            _ => return Err(ApiError::invalid(format!("invalid filter {k:?}"))),
        };
        out.insert(k.clone(), list);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_both_forms() {
        let a = parse_filters(r#"{"dangling":{"true":true}}"#).unwrap();
        let b = parse_filters(r#"{"dangling":["true"]}"#).unwrap();
        assert_eq!(a, b);
        assert!(parse_filters("{").is_err());
    }

    #[test]
    fn booleans() {
        let q = Query::parse(Some("a=1&b=false&c=&d=True&e=none&f=%2Fx+y"));
        assert!(q.bool("a"));
        assert!(!q.bool("b"));
        assert!(!q.bool("c"));
        assert!(q.bool("d"));
        assert!(!q.bool("e"));
        assert!(!q.bool("missing"));
        assert_eq!(q.get("f"), Some("/x y"));
        let q = Query::parse(Some("stream=False&pause=&x=0"));
        assert!(!q.bool_or("stream", true));
        assert!(q.bool_or("pause", true));
        assert!(q.bool_or("missing", true));
        assert!(!q.bool_or("x", true));
    }
}
