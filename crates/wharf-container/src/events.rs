//! The daemon's event stream (`GET /events`): every container, image, network and volume
//! action is published once, kept in a ring of the last 1,024 for `since`, and broadcast to the
//! clients that follow. Events carry Docker's fields (`Type`, `Action`, `Actor`, `time`,
//! `timeNano`, and the legacy `status`/`id`/`from` for containers and images).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde_json::{json, Value};
use tokio::sync::broadcast;

const KEEP: usize = 1024;

/// One event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `container`, `image`, `network`, `volume`, `daemon`.
    pub typ: &'static str,
    /// `create`, `start`, `die`, `destroy`, ...
    pub action: String,
    /// The object's ID.
    pub id: String,
    /// Attributes (`name`, `image`, `exitCode`, labels, ...).
    pub attrs: BTreeMap<String, String>,
    /// Nanoseconds since the epoch.
    pub time_nano: i128,
}

impl Event {
    /// Docker's JSON for it.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "Type": self.typ,
            "Action": self.action,
            "Actor": {"ID": self.id, "Attributes": self.attrs},
            "scope": "local",
            "time": (self.time_nano / 1_000_000_000) as i64,
            "timeNano": self.time_nano as i64,
        });
        if self.typ == "container" || self.typ == "image" {
            v["status"] = json!(self.action);
            v["id"] = json!(self.id);
            if let Some(from) = self.attrs.get("image") {
                v["from"] = json!(from);
            }
        }
        v
    }

    /// Does it pass `docker events --filter`s (type, event, container, image, label, network,
    /// volume)? Values of one key are alternatives; keys must all match.
    pub fn matches(&self, filters: &BTreeMap<String, Vec<String>>) -> bool {
        let attr = |k: &str| self.attrs.get(k).map(String::as_str).unwrap_or("");
        filters.iter().all(|(k, vals)| {
            vals.is_empty()
                || vals.iter().any(|v| match k.as_str() {
                    "type" => self.typ == v,
                    "event" | "action" => self.action == *v || self.action.split(':').next() == Some(v),
                    "container" => {
                        (self.typ == "container" && (self.id.starts_with(v.as_str()) || attr("name") == v))
                            || attr("container") == v
                    }
                    "image" => (self.typ == "image" && (self.id == *v || attr("name") == v)) || attr("image") == v,
                    "network" => self.typ == "network" && (self.id.starts_with(v.as_str()) || attr("name") == v),
                    "volume" => self.typ == "volume" && self.id == *v,
                    "label" => match v.split_once('=') {
                        Some((lk, lv)) => attr(lk) == lv,
                        None => self.attrs.contains_key(v.as_str()),
                    },
                    "scope" => v == "local",
                    _ => false,
                })
        })
    }
}

/// The bus.
#[derive(Debug)]
pub struct Events {
    tx: broadcast::Sender<Event>,
    ring: Mutex<VecDeque<Event>>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            tx: broadcast::channel(KEEP).0,
            ring: Mutex::new(VecDeque::with_capacity(KEEP)),
        }
    }
}

fn now_nano() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

impl Events {
    /// Publish an event now.
    pub fn publish(&self, typ: &'static str, action: &str, id: &str, attrs: BTreeMap<String, String>) {
        let e = Event {
            typ,
            action: action.to_string(),
            id: id.to_string(),
            attrs,
            time_nano: now_nano(),
        };
        {
            let mut ring = self.ring.lock().expect("events");
            if ring.len() == KEEP {
                ring.pop_front();
            }
            ring.push_back(e.clone());
        }
        let _ = self.tx.send(e);
    }

    /// Follow from now on, and the kept events at or after `since` (nanoseconds), in order and
    /// without a gap between the two.
    pub fn subscribe(&self, since: Option<i128>) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let ring = self.ring.lock().expect("events");
        let rx = self.tx.subscribe();
        let past = match since {
            Some(s) => ring.iter().filter(|e| e.time_nano >= s).cloned().collect(),
            None => Vec::new(),
        };
        (past, rx)
    }
}

/// Attributes from pairs.
pub fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_then_follow_and_filters() {
        let ev = Events::default();
        ev.publish(
            "container",
            "create",
            "abc123",
            attrs(&[("name", "web"), ("image", "busybox")]),
        );
        let t = ev.ring.lock().unwrap()[0].time_nano;
        let (past, mut rx) = ev.subscribe(Some(t));
        assert_eq!(past.len(), 1);
        ev.publish("container", "start", "abc123", attrs(&[("name", "web")]));
        let e = rx.try_recv().unwrap();
        assert_eq!(e.action, "start");
        let mut f = BTreeMap::new();
        f.insert("container".to_string(), vec!["web".to_string()]);
        f.insert("event".to_string(), vec!["start".to_string(), "die".to_string()]);
        assert!(e.matches(&f));
        assert!(!past[0].matches(&f));
        let j = past[0].to_json();
        assert_eq!(
            (j["status"].as_str(), j["from"].as_str()),
            (Some("create"), Some("busybox"))
        );
        assert_eq!(j["Actor"]["Attributes"]["name"], "web");
    }
}
