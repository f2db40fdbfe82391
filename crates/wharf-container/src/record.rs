//! A container as stored: `<data-root>/containers/<id>/config.v2.json`, written whole with
//! fsync and rename, so a crash leaves either the old or the new record, never half of one.

use std::fs;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Docker's zero time, shown for "never".
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Where a container is in its life. Stored (and shown by Docker) as the lowercase name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerStatus {
    /// Made, never started (or its start failed).
    #[default]
    Created,
    /// Its process runs.
    Running,
    /// Its process exists, frozen.
    Paused,
    /// Between an exit and the start its restart policy makes.
    Restarting,
    /// Being removed.
    Removing,
    /// Its process ended.
    Exited,
    /// A removal failed half way; only `rm -f` can finish it.
    Dead,
}

impl ContainerStatus {
    /// Every status, in Docker's order.
    pub const ALL: [ContainerStatus; 7] = [
        ContainerStatus::Created,
        ContainerStatus::Restarting,
        ContainerStatus::Running,
        ContainerStatus::Removing,
        ContainerStatus::Paused,
        ContainerStatus::Exited,
        ContainerStatus::Dead,
    ];

    /// The name Docker gives it (`docker ps --filter status=`, inspect's `State.Status`).
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerStatus::Created => "created",
            ContainerStatus::Running => "running",
            ContainerStatus::Paused => "paused",
            ContainerStatus::Restarting => "restarting",
            ContainerStatus::Removing => "removing",
            ContainerStatus::Exited => "exited",
            ContainerStatus::Dead => "dead",
        }
    }

    /// Running or paused: a process exists.
    pub fn has_process(self) -> bool {
        matches!(self, ContainerStatus::Running | ContainerStatus::Paused)
    }
}

impl std::fmt::Display for ContainerStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The runtime state of a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// Where it is in its life.
    pub status: ContainerStatus,
    /// Host PID of the init while it runs.
    pub pid: i64,
    /// Last exit code.
    pub exit_code: i64,
    /// Last start error.
    pub error: String,
    /// RFC 3339 nanos or [`ZERO_TIME`].
    pub started_at: String,
    /// RFC 3339 nanos or [`ZERO_TIME`].
    pub finished_at: String,
    /// The OOM killer acted in the last run.
    pub oom_killed: bool,
    /// The healthcheck's state, when the container has one and has started.
    #[serde(default)]
    pub health: Option<crate::health::Health>,
}

impl Default for State {
    fn default() -> Self {
        State {
            status: ContainerStatus::Created,
            pid: 0,
            exit_code: 0,
            error: String::new(),
            started_at: ZERO_TIME.into(),
            finished_at: ZERO_TIME.into(),
            oom_killed: false,
            health: None,
        }
    }
}

impl State {
    /// Running or paused: a process exists.
    pub fn is_running(&self) -> bool {
        self.status.has_process()
    }
}

/// Everything the daemon keeps about one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// 64 hex.
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    /// RFC 3339 nanos.
    pub created: String,
    /// argv[0].
    pub path: String,
    /// argv[1..].
    pub args: Vec<String>,
    /// Image ID (`sha256:...`).
    pub image: String,
    /// The config, merged with the image's as Docker stores it.
    pub config: crate::config::Config,
    /// The host config as given.
    pub host_config: crate::config::HostSpec,
    /// Runtime state.
    pub state: State,
    /// Restarts done by the restart policy.
    pub restart_count: i64,
    /// `stop`/`kill` by the user: restart policies stay out of it.
    pub manually_stopped: bool,
    /// Storage driver of the root.
    pub driver: String,
    /// Exec IDs that belong to this container.
    #[serde(default)]
    pub exec_ids: Vec<String>,
    /// Volumes, binds and tmpfs mounts.
    #[serde(default)]
    pub mount_points: Vec<crate::mounts::MountPoint>,
    /// The networks it joins, by name.
    #[serde(default)]
    pub networks: std::collections::BTreeMap<String, crate::netsetup::EndpointConfig>,
    /// While it runs: its namespace, endpoints and published ports.
    #[serde(default)]
    pub net: crate::netsetup::NetState,
    /// The committed snapshot its root is prepared over, when not its image's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
}

impl Record {
    /// Load from a container directory.
    pub fn load(dir: &Path) -> std::io::Result<Record> {
        let b = fs::read(dir.join("config.v2.json"))?;
        serde_json::from_slice(&b).map_err(std::io::Error::other)
    }

    /// Write atomically into a container directory.
    ///
    /// Each call writes its own temporary file, so two writers at once never rename one
    /// another's file away (the later rename wins whole).
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(".config.v2.json.{}.{seq}.tmp", std::process::id()));
        let body = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
        fs::rename(&tmp, dir.join("config.v2.json"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        Record {
            id: "a".repeat(64),
            name: "web".into(),
            created: ZERO_TIME.into(),
            path: "sh".into(),
            args: vec!["-c".into(), "true".into()],
            image: "sha256:00".into(),
            config: Default::default(),
            host_config: Default::default(),
            state: State::default(),
            restart_count: 0,
            manually_stopped: false,
            driver: "overlay2".into(),
            exec_ids: vec![],
            mount_points: vec![],
            networks: Default::default(),
            net: Default::default(),
            snapshot: None,
        }
    }

    #[test]
    fn save_and_load() {
        let d = tempfile::tempdir().unwrap();
        let r = sample();
        r.save(d.path()).unwrap();
        let back = Record::load(d.path()).unwrap();
        assert_eq!(back.name, "web");
        assert_eq!(back.args, r.args);
        let names: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["config.v2.json"], "no temporary file stays behind");
    }

    /// A verb and the exit monitor may write one record at the same moment (docker-py's
    /// `test_remove_link` saw `No such file or directory` when both shared one temporary file).
    #[test]
    fn writers_at_once_all_succeed() {
        let d = tempfile::tempdir().unwrap();
        std::thread::scope(|s| {
            for t in 0..8 {
                let dir = d.path();
                s.spawn(move || {
                    let mut r = sample();
                    r.restart_count = t;
                    for _ in 0..50 {
                        r.save(dir).unwrap();
                    }
                });
            }
        });
        assert!(Record::load(d.path()).unwrap().restart_count < 8);
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn statuses_are_stored_by_docker_names() {
        for s in ContainerStatus::ALL {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<ContainerStatus>(&json).unwrap(), s);
        }
        assert!(serde_json::from_str::<ContainerStatus>("\"zombie\"").is_err());
    }
}
