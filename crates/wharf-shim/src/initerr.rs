//! Errors of a container's init that a user can act on. libcontainer's init reports a failed
//! system call to the shim as "failed to unix syscall", without the call or the error; what it
//! was is only in its log line, which goes to the shim's log (the init inherits the shim's
//! stderr). For the failures a user causes, the shim reads that line back and says what runc
//! says: `chdir to cwd ("/proc/self/fd/7") set in config.json failed: not a directory`.

use std::path::Path;

/// The error to report for a failed create: `err` as libcontainer gave it, made specific from
/// the shim's log (`log`) and the spec's working directory (`config`) where it can be.
pub fn explain(err: &str, log: &Path, config: &Path) -> String {
    if !err.contains("failed to unix syscall") {
        return err.to_string();
    }
    let tail = read_tail(log, 16 << 10);
    let Some(line) = tail.lines().rev().find(|l| l.contains("failed to chdir")) else {
        return err.to_string();
    };
    let errno = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("e=").or_else(|| w.strip_prefix("err=")))
        .unwrap_or("EINVAL");
    let cwd = std::fs::read(config)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.pointer("/process/cwd").and_then(|c| c.as_str()).map(String::from))
        .unwrap_or_default();
    format!(
        "chdir to cwd ({:?}) set in config.json failed: {}",
        cwd,
        describe(errno)
    )
}

/// The last `max` bytes of a file, as text.
fn read_tail(path: &Path, max: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut buf = Vec::new();
    let _ = f.take(max).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// An errno's name as Go's `syscall.Errno` prints it (what runc's messages carry).
fn describe(name: &str) -> String {
    match name {
        "ENOTDIR" => "not a directory",
        "ENOENT" => "no such file or directory",
        "EACCES" => "permission denied",
        "EPERM" => "operation not permitted",
        "ELOOP" => "too many levels of symbolic links",
        "ENAMETOOLONG" => "file name too long",
        "EINVAL" => "invalid argument",
        other => return other.to_ascii_lowercase(),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_chdir_reads_as_runcs() {
        let d = std::env::temp_dir().join(format!("wharf-initerr-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let log = d.join("shim.log");
        let config = d.join("config.json");
        std::fs::write(
            &log,
            "2026-12-04T21:00:00Z WARN libcgroups: not supported\n\
             2026-12-04T21:00:00Z ERROR libcontainer::process::init::process: failed to chdir e=ENOTDIR\n",
        )
        .unwrap();
        std::fs::write(&config, r#"{"process":{"cwd":"/proc/self/fd/7"}}"#).unwrap();
        let err = "exec process failed with error error in executing process : failed to unix syscall";
        assert_eq!(
            explain(err, &log, &config),
            r#"chdir to cwd ("/proc/self/fd/7") set in config.json failed: not a directory"#
        );
        // Other errors pass through unchanged.
        assert_eq!(explain("no such image", &log, &config), "no such image");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
