//! Request bodies read as dockerd reads them: one JSON value through Go's decoder. A syntax
//! error reads as Go's scanner words it (`invalid JSON: invalid character '}' looking for
//! beginning of object key string`), content after the value is `unexpected content after
//! JSON`, a body cut short is `unexpected EOF`, one with no value at all `got EOF while reading
//! request body`; clients and their tests match those words.
//! The scan only finds the first syntax error and where the first value ends; serde decodes.
//! Field names match whatever their case, as Go's decoder matches them (`go_keys`).

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;

/// Decode one JSON value from a request body, with dockerd's errors.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let end = scan(bytes).map_err(|e| ApiError::invalid(format!("invalid JSON: {e}")))?;
    // Go's `Decoder.More`: anything but whitespace, `]` or `}` after the value.
    if bytes[end..]
        .iter()
        .find(|c| !c.is_ascii_whitespace())
        .is_some_and(|c| *c != b']' && *c != b'}')
    {
        return Err(ApiError::invalid("unexpected content after JSON"));
    }
    serde_json::from_slice(&bytes[..end]).map_err(|e| ApiError::invalid(format!("invalid JSON: {e}")))
}

/// ExecConfig's fields, for matching keys as Go's JSON decoding does (case-insensitively:
/// docker-py sends `detachKeys`).
pub const EXEC_CONFIG_FIELDS: &[&str] = &[
    "AttachStdin",
    "AttachStdout",
    "AttachStderr",
    "ConsoleSize",
    "DetachKeys",
    "Tty",
    "Env",
    "Cmd",
    "Privileged",
    "User",
    "WorkingDir",
];

/// Rename the top-level keys of `v` that match one of `fields` but for case (Go's decoder
/// matches field names case-insensitively).
pub fn go_keys(mut v: Value, fields: &[&str]) -> Value {
    if let Some(o) = v.as_object_mut() {
        let wrong: Vec<(String, &str)> = o
            .keys()
            .filter(|k| !fields.contains(&k.as_str()))
            .filter_map(|k| {
                fields
                    .iter()
                    .find(|f| f.eq_ignore_ascii_case(k))
                    .map(|f| (k.clone(), *f))
            })
            .collect();
        for (k, f) in wrong {
            if let Some(x) = o.remove(&k) {
                o.entry(f.to_string()).or_insert(x);
            }
        }
    }
    v
}

/// `ContainerConfig`'s fields and the create body's own, as the create body's top level.
pub const CREATE_FIELDS: &[&str] = &[
    "Hostname",
    "Domainname",
    "User",
    "AttachStdin",
    "AttachStdout",
    "AttachStderr",
    "ExposedPorts",
    "Tty",
    "OpenStdin",
    "StdinOnce",
    "Env",
    "Cmd",
    "Healthcheck",
    "ArgsEscaped",
    "Image",
    "Volumes",
    "WorkingDir",
    "Entrypoint",
    "NetworkDisabled",
    "MacAddress",
    "OnBuild",
    "Labels",
    "StopSignal",
    "StopTimeout",
    "Shell",
    "HostConfig",
    "NetworkingConfig",
];

/// `Resources`' fields (the update body's, and part of `HostConfig`).
const RESOURCES_FIELDS: &[&str] = &[
    "CpuShares",
    "Memory",
    "CgroupParent",
    "BlkioWeight",
    "BlkioWeightDevice",
    "BlkioDeviceReadBps",
    "BlkioDeviceWriteBps",
    "BlkioDeviceReadIOps",
    "BlkioDeviceWriteIOps",
    "CpuPeriod",
    "CpuQuota",
    "CpuRealtimePeriod",
    "CpuRealtimeRuntime",
    "CpusetCpus",
    "CpusetMems",
    "Devices",
    "DeviceCgroupRules",
    "DeviceRequests",
    "KernelMemoryTCP",
    "MemoryReservation",
    "MemorySwap",
    "MemorySwappiness",
    "NanoCpus",
    "OomKillDisable",
    "Init",
    "PidsLimit",
    "Ulimits",
    "CpuCount",
    "CpuPercent",
    "IOMaximumIOps",
    "IOMaximumBandwidth",
];

/// `HostConfig`'s own fields (besides `Resources`').
const HOST_CONFIG_FIELDS: &[&str] = &[
    "Binds",
    "ContainerIDFile",
    "LogConfig",
    "NetworkMode",
    "PortBindings",
    "RestartPolicy",
    "AutoRemove",
    "VolumeDriver",
    "VolumesFrom",
    "Mounts",
    "ConsoleSize",
    "Annotations",
    "CapAdd",
    "CapDrop",
    "CgroupnsMode",
    "Dns",
    "DnsOptions",
    "DnsSearch",
    "ExtraHosts",
    "GroupAdd",
    "IpcMode",
    "Cgroup",
    "Links",
    "OomScoreAdj",
    "PidMode",
    "Privileged",
    "PublishAllPorts",
    "ReadonlyRootfs",
    "SecurityOpt",
    "StorageOpt",
    "Tmpfs",
    "UTSMode",
    "UsernsMode",
    "ShmSize",
    "Sysctls",
    "Runtime",
    "Isolation",
    "MaskedPaths",
    "ReadonlyPaths",
];

/// An update body with its keys matched as Go matches them (`Resources`' and
/// `RestartPolicy`).
pub fn update_body(v: Value) -> Value {
    go_keys(go_keys(v, RESOURCES_FIELDS), &["RestartPolicy"])
}

/// A create body with its keys matched as Go matches them (docker-py sends
/// `CPURealtimeRuntime` for `CpuRealtimeRuntime`): the top level and `HostConfig`.
pub fn create_body(v: Value) -> Value {
    let mut v = go_keys(v, CREATE_FIELDS);
    if let Some(hc) = v.get_mut("HostConfig").map(std::mem::take) {
        let hc = go_keys(go_keys(hc, HOST_CONFIG_FIELDS), RESOURCES_FIELDS);
        v["HostConfig"] = hc;
    }
    v
}

/// Go's `quoteChar`.
fn quote(c: u8) -> String {
    match c {
        b'\'' => r"'\''".into(),
        b'"' => "'\"'".into(),
        b'\n' => r"'\n'".into(),
        b'\r' => r"'\r'".into(),
        b'\t' => r"'\t'".into(),
        0x20..=0x7e => format!("'{}'", c as char),
        0x00..=0x1f | 0x7f => format!("'\\x{c:02x}'"),
        _ if (0x80..0xa0).contains(&c) || c == 0xad => format!("'\\u{c:04x}'"),
        _ => format!("'{}'", c as char),
    }
}

fn bad(c: u8, context: &str) -> String {
    format!("invalid character {} {context}", quote(c))
}

#[derive(Clone, Copy, PartialEq)]
enum Frame {
    Object,
    Array,
}

/// The end of the first JSON value of `b`, or Go's message for what is wrong with it.
fn scan(b: &[u8]) -> Result<usize, String> {
    let mut i = 0;
    let mut stack: Vec<Frame> = Vec::new();
    let skip = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    let at = |i: usize| b.get(i).copied();
    skip(&mut i);
    if i == b.len() {
        return Err("got EOF while reading request body".into());
    }
    // Expecting a value (`key` when an object key string is due instead).
    let mut key = false;
    loop {
        skip(&mut i);
        let c = at(i).ok_or("unexpected EOF")?;
        if key {
            if c != b'"' {
                return Err(bad(c, "looking for beginning of object key string"));
            }
            i = string(b, i)?;
            skip(&mut i);
            match at(i).ok_or("unexpected EOF")? {
                b':' => i += 1,
                c => return Err(bad(c, "after object key")),
            }
            key = false;
            continue;
        }
        match c {
            b'{' | b'[' => {
                i += 1;
                skip(&mut i);
                let close = if c == b'{' { b'}' } else { b']' };
                if at(i) == Some(close) {
                    i += 1;
                } else {
                    stack.push(if c == b'{' { Frame::Object } else { Frame::Array });
                    key = c == b'{';
                    continue;
                }
            }
            b'"' => i = string(b, i)?,
            b'-' | b'0'..=b'9' => i = number(b, i)?,
            b't' => i = literal(b, i, "true")?,
            b'f' => i = literal(b, i, "false")?,
            b'n' => i = literal(b, i, "null")?,
            c => return Err(bad(c, "looking for beginning of value")),
        }
        // After a value: close what it ends, or go on to the next element.
        loop {
            let Some(top) = stack.last().copied() else {
                return Ok(i);
            };
            skip(&mut i);
            let c = at(i).ok_or("unexpected EOF")?;
            i += 1;
            match (top, c) {
                (Frame::Object, b',') => {
                    key = true;
                    break;
                }
                (Frame::Array, b',') => break,
                (Frame::Object, b'}') | (Frame::Array, b']') => {
                    stack.pop();
                }
                (Frame::Object, c) => return Err(bad(c, "after object key:value pair")),
                (Frame::Array, c) => return Err(bad(c, "after array element")),
            }
        }
    }
}

fn string(b: &[u8], start: usize) -> Result<usize, String> {
    let mut i = start + 1;
    loop {
        let c = *b.get(i).ok_or("unexpected EOF")?;
        i += 1;
        match c {
            b'"' => return Ok(i),
            b'\\' => {
                let e = *b.get(i).ok_or("unexpected EOF")?;
                i += 1;
                match e {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    b'u' => {
                        for _ in 0..4 {
                            let h = *b.get(i).ok_or("unexpected EOF")?;
                            if !h.is_ascii_hexdigit() {
                                return Err(bad(h, "in \\u hexadecimal character escape"));
                            }
                            i += 1;
                        }
                    }
                    e => return Err(bad(e, "in string escape code")),
                }
            }
            c if c < 0x20 => return Err(bad(c, "in string literal")),
            _ => {}
        }
    }
}

fn number(b: &[u8], start: usize) -> Result<usize, String> {
    let mut i = start;
    let digits = |i: &mut usize| {
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
    };
    if b[i] == b'-' {
        i += 1;
        match b.get(i) {
            Some(c) if c.is_ascii_digit() => {}
            Some(&c) => return Err(bad(c, "in numeric literal")),
            None => return Err("unexpected EOF".into()),
        }
    }
    if b[i] == b'0' {
        i += 1;
    } else {
        digits(&mut i);
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        match b.get(i) {
            Some(c) if c.is_ascii_digit() => digits(&mut i),
            Some(&c) => return Err(bad(c, "after decimal point in numeric literal")),
            None => return Err("unexpected EOF".into()),
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        match b.get(i) {
            Some(c) if c.is_ascii_digit() => digits(&mut i),
            Some(&c) => return Err(bad(c, "in exponent of numeric literal")),
            None => return Err("unexpected EOF".into()),
        }
    }
    Ok(i)
}

fn literal(b: &[u8], start: usize, word: &str) -> Result<usize, String> {
    for (k, want) in word.bytes().enumerate().skip(1) {
        match b.get(start + k) {
            Some(&c) if c == want => {}
            Some(&c) => {
                return Err(bad(c, &format!("in literal {word} (expecting {})", quote(want))));
            }
            None => return Err("unexpected EOF".into()),
        }
    }
    Ok(start + word.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each input with what Go's decoder (and so dockerd) says about it.
    #[test]
    fn errors_read_as_gos() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"Image":"x",}"#,
                "invalid JSON: invalid character '}' looking for beginning of object key string",
            ),
            (
                r#"{Image:1}"#,
                "invalid JSON: invalid character 'I' looking for beginning of object key string",
            ),
            (r#"{"Image" 1}"#, "invalid JSON: invalid character '1' after object key"),
            (
                r#"{"a":1 "b":2}"#,
                "invalid JSON: invalid character '\"' after object key:value pair",
            ),
            (
                r#"{"a":[1 2]}"#,
                "invalid JSON: invalid character '2' after array element",
            ),
            (
                r#"{"a":tru}"#,
                "invalid JSON: invalid character '}' in literal true (expecting 'e')",
            ),
            (r#"{"a":-x}"#, "invalid JSON: invalid character 'x' in numeric literal"),
            (
                r#"{"a":1.}"#,
                "invalid JSON: invalid character '}' after decimal point in numeric literal",
            ),
            (
                r#"{"a":"\q"}"#,
                "invalid JSON: invalid character 'q' in string escape code",
            ),
            (
                "{\"a\":\"\u{1}\"}",
                "invalid JSON: invalid character '\\x01' in string literal",
            ),
            (
                r#"{"a":'x'}"#,
                "invalid JSON: invalid character '\\'' looking for beginning of value",
            ),
            (r#"{"a":1"#, "invalid JSON: unexpected EOF"),
            ("  ", "invalid JSON: got EOF while reading request body"),
            (r#"{"a":1} {"b":2}"#, "unexpected content after JSON"),
            (r#"{"a":1}x"#, "unexpected content after JSON"),
        ];
        for (input, want) in cases {
            let got = parse::<serde_json::Value>(input.as_bytes()).unwrap_err().message;
            assert_eq!(&got, want, "{input}");
        }
        // Go's `More` lets a closing bracket after the value through.
        assert_eq!(
            parse::<serde_json::Value>(br#"{"a":[1,{"b":null}]} }"#).unwrap()["a"][1]["b"],
            serde_json::Value::Null
        );
        assert_eq!(parse::<serde_json::Value>(br#" [ ] "#).unwrap(), serde_json::json!([]));
        assert_eq!(
            parse::<serde_json::Value>(br#"-0.5e+3"#).unwrap(),
            serde_json::json!(-500.0)
        );
    }
}
