//! Progress messages in the JSON form the docker CLI renders (`status`, `id`,
//! `progressDetail`, `progress`, `aux`), sent down a channel that the API edge streams.

use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedSender;

/// Where progress goes. Dropped messages (a client that went away) are fine.
#[derive(Clone, Debug)]
pub struct Progress {
    tx: Option<UnboundedSender<Value>>,
}

fn size(n: u64) -> String {
    wharf_units::human_size_4(n as f64)
}

/// Docker's bar: `[=====>      ]  1.2MB/3.4MB`.
pub fn bar(current: u64, total: u64) -> String {
    if total == 0 {
        return String::new();
    }
    let width = 50u64;
    let filled = (current.min(total) * width / total).min(width);
    let mut s = String::from("[");
    for i in 0..width {
        s.push(if i + 1 < filled || (filled == width && i + 1 == width) {
            '='
        } else if i + 1 == filled {
            '>'
        } else {
            ' '
        });
    }
    if filled == width {
        s.pop();
        s.push('>');
    }
    s.push(']');
    format!("{s}  {}/{}", size(current), size(total))
}

impl Progress {
    /// Progress into `tx`.
    pub fn new(tx: UnboundedSender<Value>) -> Progress {
        Progress { tx: Some(tx) }
    }

    /// Progress nobody reads.
    pub fn none() -> Progress {
        Progress { tx: None }
    }

    /// Send a raw message.
    pub fn send(&self, v: Value) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(v);
        }
    }

    /// `{"status": s}`.
    pub fn status(&self, s: impl Into<String>) {
        self.send(json!({"status": s.into()}));
    }

    /// `{"status": s, "id": id}` (one line of a layer's progress).
    pub fn item(&self, id: &str, s: &str) {
        self.send(json!({"status": s, "progressDetail": {}, "id": id}));
    }

    /// A bar for `id`.
    pub fn bar(&self, id: &str, s: &str, current: u64, total: u64) {
        self.send(json!({
            "status": s,
            "progressDetail": {"current": current, "total": total},
            "progress": bar(current, total),
            "id": id,
        }));
    }

    /// An `aux` message (push's digest).
    pub fn aux(&self, v: Value) {
        self.send(json!({"progressDetail": {}, "aux": v}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_bars_read_like_dockers() {
        assert_eq!(size(2048), "2.048kB");
        assert_eq!(size(32_300_000), "32.3MB");
        assert_eq!(size(999), "999B");
        assert_eq!(size(1_000_000), "1MB");
        let b = bar(50, 100);
        assert!(b.starts_with("[========================>"), "{b}");
        assert!(b.ends_with("]  50B/100B"), "{b}");
        let full = bar(100, 100);
        assert!(
            full.starts_with("[=================================================>]"),
            "{full}"
        );
    }
}
