//! Docker's units, as its `go-units` package spells them: durations for people ("About a
//! minute"), sizes for people ("4.26MB" in decimal, "1.5MiB" in binary) and the byte sizes
//! users type ("64m", "1.5g"); and Go's own durations (`1m30s`, `500ms`) as flags take them
//! and messages print them. The daemon and the CLI share them so that both print the same;
//! and Docker's multiplexed stream frames and detach keys (`stdcopy`), which the shim, the
//! daemon and the CLI all read.

#![forbid(unsafe_code)]

pub mod stdcopy;

/// Go's `units.HumanDuration`, which `docker ps` shows.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    if s < 1 {
        return "Less than a second".into();
    }
    if s == 1 {
        return "1 second".into();
    }
    if s < 60 {
        return format!("{s} seconds");
    }
    let minutes = s / 60;
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours = (s as f64 / 3600.0 + 0.5) as i64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", hours / 24 / 365)
}

const DECIMAL: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
const BINARY: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];

fn scaled(size: f64, base: f64, units: &'static [&'static str; 9]) -> (f64, &'static str) {
    let mut s = size;
    let mut i = 0;
    while s >= base && i < units.len() - 1 {
        s /= base;
        i += 1;
    }
    (s, units[i])
}

/// Go's `%.*g` with `prec` significant digits, without an exponent for the sizes used here.
fn sig_digits(v: f64, prec: usize) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let int_digits = (v.abs().log10().floor() as i64 + 1).max(1) as usize;
    let decimals = prec.saturating_sub(int_digits);
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// `units.HumanSizeWithPrecision(size, 3)`: decimal units, three significant digits ("4.26MB").
pub fn human_size(size: f64) -> String {
    let (v, u) = scaled(size, 1000.0, &DECIMAL);
    format!("{}{u}", sig_digits(v, 3))
}

/// `units.HumanSize`: decimal units, four significant digits ("2.048kB"), as Docker's
/// progress bars print sizes.
pub fn human_size_4(size: f64) -> String {
    let (v, u) = scaled(size, 1000.0, &DECIMAL);
    format!("{}{u}", sig_digits(v, 4))
}

/// `units.BytesSize`: binary units, as `docker stats` and `ps -s` print them ("1.5MiB").
pub fn bytes_size(size: f64) -> String {
    let (v, u) = scaled(size, 1024.0, &BINARY);
    format!("{}{u}", sig_digits(v, 4))
}

/// `units.RAMInBytes`: "64m", "1.5g", "100", "10MiB" (binary multiples, case-insensitive).
pub fn ram_in_bytes(s: &str) -> Option<i64> {
    let s = s.trim().to_ascii_lowercase();
    let digits = s.chars().take_while(|c| c.is_ascii_digit() || *c == '.').count();
    let n: f64 = s[..digits].parse().ok()?;
    let unit = s[digits..].trim();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(unit);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return None,
    };
    Some((n * (1u64 << shift) as f64) as i64)
}

/// Go's `time.ParseDuration`: a sequence of decimal numbers with units (`ns`, `us`/`µs`, `ms`,
/// `s`, `m`, `h`), as in `1h30m`, `1.5s`, `300ms`; `0` alone is zero. Signs are refused.
pub fn parse_go_duration(s: &str) -> Option<std::time::Duration> {
    if s == "0" {
        return Some(std::time::Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit_len..];
    }
    Some(std::time::Duration::from_secs_f64(total))
}

/// A duration as Go prints it (`1s`, `1.5s`, `500ms`, `1m30s`, `1h0m0s`), for Docker's messages.
pub fn go_duration(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (m, s) = (d.as_secs() / 60, d.as_secs_f64() % 60.0);
    let secs = format!("{s}").trim_end_matches(".0").to_string();
    match m {
        0 => format!("{secs}s"),
        m if m < 60 => format!("{m}m{secs}s"),
        m => format!("{}h{}m{secs}s", m / 60, m % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        use std::time::Duration;
        assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration("5x"), None);
        assert_eq!(parse_go_duration(""), None);
        assert_eq!(go_duration(Duration::from_secs(1)), "1s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(59), "59 seconds");
        assert_eq!(human_duration(60), "About a minute");
        assert_eq!(human_duration(150), "2 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(5 * 3600), "5 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(0.0), "0B");
        assert_eq!(human_size(999.0), "999B");
        assert_eq!(human_size(4_260_000.0), "4.26MB");
        assert_eq!(human_size(1_000_000.0), "1MB");
        assert_eq!(human_size(123_456.0), "123kB");
        assert_eq!(human_size(12_345_678.0), "12.3MB");
        assert_eq!(bytes_size(1536.0), "1.5KiB");
        assert_eq!(bytes_size(64.0 * 1024.0 * 1024.0), "64MiB");
    }

    #[test]
    fn ram() {
        assert_eq!(ram_in_bytes("64m"), Some(64 << 20));
        assert_eq!(ram_in_bytes("1k"), Some(1024));
        assert_eq!(ram_in_bytes("1.5g"), Some(3 << 29));
        assert_eq!(ram_in_bytes("10MiB"), Some(10 << 20));
        assert_eq!(ram_in_bytes("100"), Some(100));
        assert_eq!(ram_in_bytes("1x"), None);
        assert_eq!(ram_in_bytes("m"), None);
    }
}
