//! Docker's units, as its `go-units` package spells them: durations for people ("About a
//! minute"), sizes for people ("4.26MB" in decimal, "1.5MiB" in binary) and the byte sizes
//! users type ("64m", "1.5g"). The daemon and the CLI share them so that both print the same.

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

#[cfg(test)]
mod tests {
    use super::*;

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
