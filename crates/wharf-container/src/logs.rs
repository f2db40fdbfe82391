//! Reading a container's json-file log for `logs`: stream selection, `--tail`, `--since`,
//! `--until`, `-t`, and `-f` (follow the file, across rotation, until the container stops).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use wharf_shim_proto::{frame, STREAM_STDERR, STREAM_STDOUT};

/// What `logs` was asked for.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Include stdout.
    pub stdout: bool,
    /// Include stderr.
    pub stderr: bool,
    /// Keep reading until the container stops.
    pub follow: bool,
    /// Only the last N lines.
    pub tail: Option<usize>,
    /// Prefix each line with its time.
    pub timestamps: bool,
    /// Unix nanoseconds; entries before are skipped.
    pub since: Option<i128>,
    /// Unix nanoseconds; entries after are skipped.
    pub until: Option<i128>,
}

#[derive(Deserialize)]
struct Entry {
    log: String,
    stream: String,
    time: String,
}

fn nanos(t: &str) -> Option<i128> {
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|d| d.unix_timestamp_nanos())
}

/// Parse Docker's `since`/`until` value: unix seconds with optional fraction, or RFC 3339.
pub fn parse_time(s: &str) -> Option<i128> {
    if s.is_empty() {
        return None;
    }
    if let Some(n) = nanos(s) {
        return Some(n);
    }
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i128 = secs.parse().ok()?;
    let mut f = frac.to_string();
    f.truncate(9);
    while f.len() < 9 {
        f.push('0');
    }
    Some(secs * 1_000_000_000 + f.parse::<i128>().unwrap_or(0))
}

fn rotated(path: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for i in 1.. {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{i}"));
        let p = PathBuf::from(p);
        if !p.exists() {
            break;
        }
        v.push(p);
    }
    v.reverse();
    v
}

struct Emitter<'a> {
    tty: bool,
    opts: &'a LogOptions,
    out: &'a mut dyn Write,
}

impl Emitter<'_> {
    fn keep(&self, e: &Entry) -> bool {
        let want = match e.stream.as_str() {
            "stderr" => self.opts.stderr,
            _ => self.opts.stdout,
        };
        if !want {
            return false;
        }
        if self.opts.since.is_some() || self.opts.until.is_some() {
            let t = nanos(&e.time).unwrap_or(0);
            if self.opts.since.is_some_and(|s| t < s) || self.opts.until.is_some_and(|u| t > u) {
                return false;
            }
        }
        true
    }

    fn emit(&mut self, e: &Entry) -> io::Result<()> {
        let mut data = Vec::with_capacity(e.log.len() + 40);
        if self.opts.timestamps {
            data.extend_from_slice(e.time.as_bytes());
            data.push(b' ');
        }
        data.extend_from_slice(e.log.as_bytes());
        if self.tty {
            self.out.write_all(&data)
        } else {
            let s = if e.stream == "stderr" {
                STREAM_STDERR
            } else {
                STREAM_STDOUT
            };
            self.out.write_all(&frame(s, &data))
        }
    }
}

/// A container's log files, opened when the request came: rotated ones oldest first, then the
/// live one. Reading goes through these descriptors, so a container removed (its directory
/// renamed away and deleted) after the request still has everything it wrote delivered.
#[derive(Debug)]
pub struct OpenLog {
    path: PathBuf,
    rotated: Vec<File>,
    live: Option<File>,
}

/// Open the log at `path` and its rotated files, now.
pub fn open_log(path: &Path) -> OpenLog {
    OpenLog {
        path: path.to_path_buf(),
        rotated: rotated(path).iter().filter_map(|p| File::open(p).ok()).collect(),
        live: File::open(path).ok(),
    }
}

/// Read complete lines of `file` from `*pos` on, emitting the kept entries (or, with `collect`,
/// gathering them); `*pos` moves past what was read.
fn read_lines(
    file: &File,
    pos: &mut u64,
    em: &mut Emitter<'_>,
    mut collect: Option<&mut Vec<Entry>>,
) -> io::Result<bool> {
    let mut r = BufReader::new(file);
    r.seek(SeekFrom::Start(*pos))?;
    let mut line = String::new();
    let mut any = false;
    loop {
        line.clear();
        let n = r.read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            return Ok(any);
        }
        *pos += n as u64;
        if let Ok(e) = serde_json::from_str::<Entry>(&line) {
            if em.keep(&e) {
                match collect.as_deref_mut() {
                    Some(v) => v.push(e),
                    None => em.emit(&e)?,
                }
                any = true;
            }
        }
    }
}

/// Write the log of a container to `out`. `running` tells whether to keep following.
pub fn write_logs(
    log: OpenLog,
    tty: bool,
    opts: &LogOptions,
    out: &mut dyn Write,
    running: &dyn Fn() -> bool,
) -> io::Result<()> {
    let mut em = Emitter { tty, opts, out };
    let mut entries = Vec::new();
    for f in &log.rotated {
        read_lines(f, &mut 0, &mut em, Some(&mut entries))?;
    }
    let mut live = log.live;
    let mut pos = 0u64;
    if let Some(f) = &live {
        read_lines(f, &mut pos, &mut em, Some(&mut entries))?;
    }
    let skip = match opts.tail {
        Some(n) => entries.len().saturating_sub(n),
        None => 0,
    };
    for e in &entries[skip..] {
        em.emit(e)?;
    }
    em.out.flush()?;
    if !opts.follow {
        return Ok(());
    }
    // Follow the descriptor held since the request; the path only tells of a rotation (a new
    // file there) or, before the first start, of the file's creation.
    let mut last_round = false;
    loop {
        let alive = running();
        if let Some(f) = &live {
            if f.metadata()?.len() < pos {
                pos = 0; // truncated in place
            }
            if read_lines(f, &mut pos, &mut em, None)? {
                em.out.flush()?;
            }
        }
        let at_path = File::open(&log.path).ok();
        let rotated = match (&live, &at_path) {
            (Some(held), Some(now)) => held.metadata()?.ino() != now.metadata()?.ino(),
            (None, Some(_)) => true,
            _ => false,
        };
        if rotated {
            // The held file was read to its end above: go on with the new one.
            live = at_path;
            pos = 0;
            continue;
        }
        if last_round {
            return Ok(());
        }
        if !alive {
            // One more pass picks up what the shim wrote just before the exit.
            last_round = true;
            continue;
        }
        if opts.until.is_some_and(|u| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as i128 > u)
                .unwrap_or(false)
        }) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_streams_and_frames() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c-json.log");
        std::fs::write(
            d.path().join("c-json.log.1"),
            "{\"log\":\"old\\n\",\"stream\":\"stdout\",\"time\":\"2026-01-01T00:00:00.000000001Z\"}\n",
        )
        .unwrap();
        std::fs::write(
            &p,
            concat!(
                "{\"log\":\"a\\n\",\"stream\":\"stdout\",\"time\":\"2026-01-01T00:00:01Z\"}\n",
                "{\"log\":\"e\\n\",\"stream\":\"stderr\",\"time\":\"2026-01-01T00:00:02Z\"}\n",
                "{\"log\":\"b\\n\",\"stream\":\"stdout\",\"time\":\"2026-01-01T00:00:03Z\"}\n",
            ),
        )
        .unwrap();
        let all = LogOptions {
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        let mut out = Vec::new();
        write_logs(open_log(&p), true, &all, &mut out, &|| false).unwrap();
        assert_eq!(out, b"old\na\ne\nb\n");
        let mut out = Vec::new();
        let o = LogOptions {
            tail: Some(2),
            stderr: false,
            ..all.clone()
        };
        write_logs(open_log(&p), false, &o, &mut out, &|| false).unwrap();
        let mut want = frame(STREAM_STDOUT, b"a\n");
        want.extend(frame(STREAM_STDOUT, b"b\n"));
        assert_eq!(out, want);
        let mut out = Vec::new();
        let o = LogOptions {
            since: parse_time("1767225601.5"),
            timestamps: true,
            ..all.clone()
        };
        write_logs(open_log(&p), true, &o, &mut out, &|| false).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-01-01T00:00:02Z e\n2026-01-01T00:00:03Z b\n"
        );
    }
}
