//! Docker's `json-file` log format: one JSON object per line, `{"log", "stream", "time"}`,
//! lines split at 16 KiB as Docker splits them, rotated at `max-size` keeping `max-file` files
//! (`<path>`, `<path>.1`, ...).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

/// Docker cuts log lines longer than this into several entries.
const MAX_LINE: usize = 16 * 1024;

/// A json-file writer for one container.
pub struct JsonLog {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    max_file: u32,
    partial: [Vec<u8>; 2],
}

/// RFC 3339 with nanoseconds in UTC, as Docker writes log times.
pub fn now_nanos() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

impl JsonLog {
    /// Open (append to) the log at `path`.
    pub fn open(path: PathBuf, max_size: u64, max_file: u32) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        Ok(JsonLog {
            path,
            file,
            size,
            max_size,
            max_file: max_file.max(1),
            partial: [Vec::new(), Vec::new()],
        })
    }

    /// Record `data` read from `stream` (1 stdout, 2 stderr).
    pub fn write(&mut self, stream: u8, data: &[u8]) {
        let idx = usize::from(stream == 2);
        let mut buf = std::mem::take(&mut self.partial[idx]);
        buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + nl + 1;
            let mut s = start;
            while end - s > MAX_LINE {
                self.entry(stream, &buf[s..s + MAX_LINE]);
                s += MAX_LINE;
            }
            self.entry(stream, &buf[s..end]);
            start = end;
        }
        while buf.len() - start >= MAX_LINE {
            self.entry(stream, &buf[start..start + MAX_LINE]);
            start += MAX_LINE;
        }
        buf.drain(..start);
        self.partial[idx] = buf;
    }

    /// Write out any unterminated lines (at exit).
    pub fn flush(&mut self) {
        for (idx, stream) in [(0, 1u8), (1, 2u8)] {
            let rest = std::mem::take(&mut self.partial[idx]);
            if !rest.is_empty() {
                self.entry(stream, &rest);
            }
        }
    }

    fn entry(&mut self, stream: u8, bytes: &[u8]) {
        let v = serde_json::json!({
            "log": String::from_utf8_lossy(bytes),
            "stream": if stream == 2 { "stderr" } else { "stdout" },
            "time": now_nanos(),
        });
        let mut line = serde_json::to_vec(&v).expect("serialise");
        line.push(b'\n');
        if self.max_size > 0 && self.size > 0 && self.size + line.len() as u64 > self.max_size {
            if let Err(e) = self.rotate() {
                eprintln!("wharf-shim: rotate {}: {e}", self.path.display());
            }
        }
        // A full disk loses log lines, never the container.
        if self.file.write_all(&line).is_ok() {
            self.size += line.len() as u64;
        }
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.max_file > 1 {
            for i in (1..self.max_file - 1).rev() {
                let from = self.rotated(i);
                if from.exists() {
                    fs::rename(&from, self.rotated(i + 1))?;
                }
            }
            fs::rename(&self.path, self.rotated(1))?;
            self.file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        } else {
            self.file.set_len(0)?;
        }
        self.size = 0;
        Ok(())
    }

    fn rotated(&self, i: u32) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{i}"));
        p.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(p: &std::path::Path) -> Vec<serde_json::Value> {
        fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn splits_lines_and_keeps_partials() {
        let dir = std::env::temp_dir().join(format!("wharf-log-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.log");
        let mut l = JsonLog::open(p.clone(), 0, 1).unwrap();
        l.write(1, b"one\ntw");
        l.write(2, b"err\n");
        l.write(1, b"o\nthree");
        l.flush();
        let got = lines(&p);
        let logs: Vec<(&str, &str)> = got
            .iter()
            .map(|v| (v["stream"].as_str().unwrap(), v["log"].as_str().unwrap()))
            .collect();
        assert_eq!(
            logs,
            vec![
                ("stdout", "one\n"),
                ("stderr", "err\n"),
                ("stdout", "two\n"),
                ("stdout", "three")
            ]
        );
        assert!(got[0]["time"].as_str().unwrap().ends_with('Z'));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rotates_at_max_size() {
        let dir = std::env::temp_dir().join(format!("wharf-logr-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("b.log");
        let mut l = JsonLog::open(p.clone(), 300, 3).unwrap();
        for i in 0..40 {
            l.write(1, format!("line {i}\n").as_bytes());
        }
        l.flush();
        let names: Vec<String> = {
            let mut v: Vec<String> = fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names, vec!["b.log", "b.log.1", "b.log.2"]);
        for n in &names {
            assert!(fs::metadata(dir.join(n)).unwrap().len() <= 300);
        }
        let last = lines(&p);
        assert_eq!(last.last().unwrap()["log"], "line 39\n");
        fs::remove_dir_all(&dir).unwrap();
    }
}
