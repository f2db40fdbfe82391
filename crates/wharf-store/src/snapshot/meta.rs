//! The records of a snapshot store: `<root>/meta/<n>.json` per snapshot (its key, parent,
//! kind and number), written whole (temporary file, fsync, rename), and its directory
//! `<root>/snapshots/<n>/`. Numbers are short so that overlay mount options stay short; they
//! never change, so committing a snapshot rewrites one record and moves no file.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{Info, Kind, Result, SnapshotError};

/// One snapshot's record.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct Record {
    pub key: String,
    pub parent: Option<String>,
    pub kind: Kind,
    pub n: u64,
}

impl Record {
    pub fn info(&self) -> Info {
        Info {
            key: self.key.clone(),
            parent: self.parent.clone(),
            kind: self.kind,
        }
    }
}

/// The records in memory, the keys being made, and the next number.
#[derive(Debug, Default)]
struct State {
    records: BTreeMap<String, Record>,
    /// Keys being made, with their parents (which may not be removed meanwhile).
    pending: BTreeMap<String, Option<String>>,
    next: u64,
}

/// The records, and where they live.
#[derive(Debug)]
pub(super) struct Meta {
    root: PathBuf,
    state: Mutex<State>,
}

impl Meta {
    /// Opens (or creates) the store at `root`; directories no record names (a crash between
    /// making a directory and writing its record) are removed.
    pub fn open(root: &Path) -> Result<Meta> {
        fs::create_dir_all(root.join("meta"))?;
        fs::create_dir_all(root.join("snapshots"))?;
        let _ = fs::remove_dir_all(root.join("removed"));
        fs::create_dir_all(root.join("removed"))?;
        let mut records = BTreeMap::new();
        for e in fs::read_dir(root.join("meta"))? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "json") {
                let r: Record = serde_json::from_slice(&fs::read(&p)?).map_err(std::io::Error::other)?;
                records.insert(r.key.clone(), r);
            } else {
                let _ = fs::remove_file(&p);
            }
        }
        let known: std::collections::HashSet<String> = records.values().map(|r| r.n.to_string()).collect();
        for e in fs::read_dir(root.join("snapshots"))? {
            let e = e?;
            if !known.contains(&e.file_name().to_string_lossy().into_owned()) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
        let next = records.values().map(|r: &Record| r.n).max().unwrap_or(0) + 1;
        Ok(Meta {
            root: root.to_path_buf(),
            state: Mutex::new(State {
                records,
                pending: Default::default(),
                next,
            }),
        })
    }

    /// A snapshot's own files.
    pub fn fs(&self, r: &Record) -> PathBuf {
        self.dir(r.n).join("fs")
    }

    /// `key` as `stat` tells it.
    pub fn info(&self, key: &str) -> Result<Info> {
        Ok(self.get(key)?.info())
    }

    /// Every snapshot, in key order.
    pub fn walk(&self, f: &mut dyn FnMut(&Info)) {
        for r in self.all() {
            f(&r.info());
        }
    }

    /// `key`, when it has mounts (an active snapshot or a view).
    pub fn mountable(&self, key: &str) -> Result<Record> {
        let r = self.get(key)?;
        if r.kind == Kind::Committed {
            return Err(SnapshotError::precondition(key, "a committed snapshot has no mounts"));
        }
        Ok(r)
    }

    /// `key`, when it is active (it takes layers).
    pub fn active(&self, key: &str) -> Result<Record> {
        let r = self.get(key)?;
        if r.kind != Kind::Active {
            return Err(SnapshotError::precondition(
                key,
                "only an active snapshot takes a layer",
            ));
        }
        Ok(r)
    }

    /// The directory of snapshot number `n`.
    pub fn dir(&self, n: u64) -> PathBuf {
        self.root.join("snapshots").join(n.to_string())
    }

    pub fn get(&self, key: &str) -> Result<Record> {
        self.lock()
            .records
            .get(key)
            .cloned()
            .ok_or_else(|| SnapshotError::NotFound(key.to_string()))
    }

    pub fn all(&self) -> Vec<Record> {
        self.lock().records.values().cloned().collect()
    }

    /// Reserves `key` with a new number and makes its directory with `make` (outside the lock:
    /// a vfs copy takes a while; `make` checks the parent is there, and from the reservation
    /// on the parent cannot be removed); the record is written once `make` succeeded, and
    /// nothing is left if it failed.
    pub fn create(
        &self,
        key: &str,
        parent: Option<&str>,
        kind: Kind,
        make: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<Record> {
        if key.is_empty() {
            return Err(SnapshotError::precondition(key, "a key may not be empty"));
        }
        let n = {
            let mut st = self.lock();
            if st.records.contains_key(key) || st.pending.contains_key(key) {
                return Err(SnapshotError::AlreadyExists(key.to_string()));
            }
            if let Some(p) = parent {
                if st.records.get(p).is_some_and(|r| r.kind != Kind::Committed) {
                    return Err(SnapshotError::precondition(p, "a parent must be committed"));
                }
            }
            st.pending.insert(key.to_string(), parent.map(str::to_string));
            st.next += 1;
            st.next - 1
        };
        let rec = Record {
            key: key.to_string(),
            parent: parent.map(str::to_string),
            kind,
            n,
        };
        let dir = self.dir(n);
        let made = fs::create_dir(&dir)
            .map_err(SnapshotError::from)
            .and_then(|_| make(&dir))
            .and_then(|_| self.write(&rec));
        let mut st = self.lock();
        st.pending.remove(key);
        if let Err(e) = made {
            let _ = fs::remove_dir_all(&dir);
            return Err(e);
        }
        st.records.insert(key.to_string(), rec.clone());
        Ok(rec)
    }

    /// Renames the active `key` to the committed `name`.
    pub fn commit(&self, name: &str, key: &str) -> Result<Record> {
        let mut st = self.lock();
        let records = &mut st.records;
        if records.contains_key(name) {
            return Err(SnapshotError::AlreadyExists(name.to_string()));
        }
        let old = records
            .get(key)
            .ok_or_else(|| SnapshotError::NotFound(key.to_string()))?;
        if old.kind != Kind::Active {
            return Err(SnapshotError::precondition(
                key,
                "only an active snapshot can be committed",
            ));
        }
        let rec = Record {
            key: name.to_string(),
            kind: Kind::Committed,
            ..old.clone()
        };
        self.write(&rec)?;
        records.remove(key);
        records.insert(name.to_string(), rec.clone());
        Ok(rec)
    }

    /// Removes `key`'s record, then moves its directory out of sight for [`Meta::cleanup`].
    pub fn remove(&self, key: &str) -> Result<()> {
        let mut st = self.lock();
        let rec = st
            .records
            .get(key)
            .ok_or_else(|| SnapshotError::NotFound(key.to_string()))?
            .clone();
        let parent_of_one = st.records.values().any(|r| r.parent.as_deref() == Some(key))
            || st.pending.values().any(|p| p.as_deref() == Some(key));
        if parent_of_one {
            return Err(SnapshotError::precondition(key, "it is the parent of another snapshot"));
        }
        fs::remove_file(self.record_path(rec.n))?;
        st.records.remove(key);
        drop(st);
        let dir = self.dir(rec.n);
        if fs::rename(&dir, self.root.join("removed").join(rec.n.to_string())).is_err() {
            fs::remove_dir_all(dir)?;
        }
        Ok(())
    }

    /// Deletes what removals moved out of sight. Cleanups may run side by side (one per
    /// removal): a directory another one took is no error.
    pub fn cleanup(&self) -> Result<()> {
        let gone = |r: std::io::Result<()>| match r {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
        for e in fs::read_dir(self.root.join("removed"))? {
            gone(e.and_then(|e| fs::remove_dir_all(e.path())))?;
        }
        Ok(())
    }

    fn record_path(&self, n: u64) -> PathBuf {
        self.root.join("meta").join(format!("{n}.json"))
    }

    fn write(&self, rec: &Record) -> Result<()> {
        let path = self.record_path(rec.n);
        let tmp = path.with_extension("tmp");
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(rec).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("snapshot records")
    }
}
