//! The kind of a failure to create the container or start an exec. libcontainer reports its
//! init's and its tenant's failures as text (they cross a process boundary as a message), so
//! this is the one place that reads them: the kind travels in the reply and the daemon never
//! looks at the words.

use wharf_shim_proto::FailureKind;

/// The kind of `message`, a failure to create or exec.
pub fn kind_of(message: &str) -> FailureKind {
    let m = message.to_ascii_lowercase();
    if m.contains("not found") || m.contains("no such file") {
        FailureKind::NotFound
    } else if m.contains("permission denied") || m.contains("is a directory") || m.contains("exec format error") {
        FailureKind::CannotExecute
    } else {
        FailureKind::Internal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libcontainers_words_become_kinds() {
        for (m, k) in [
            (
                "executor validation failed: executable 'nosuch' not found in $PATH",
                FailureKind::NotFound,
            ),
            (
                "exec failed: No such file or directory (os error 2)",
                FailureKind::NotFound,
            ),
            ("executable '/etc' is a directory", FailureKind::CannotExecute),
            (
                "exec failed: Permission denied (os error 13)",
                FailureKind::CannotExecute,
            ),
            ("failed to apply cgroup configuration", FailureKind::Internal),
        ] {
            assert_eq!(kind_of(m), k, "{m}");
        }
    }
}
