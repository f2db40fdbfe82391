//! The metadata database: which layers exist, which images exist and which names point at
//! them. One redb file; every change is one write transaction, so a crash leaves either all of
//! an operation visible or none of it (an image is never half-registered).

use std::collections::BTreeMap;
use std::path::Path;

use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use wharf_reference::Digest;

const LAYERS: TableDefinition<&str, &[u8]> = TableDefinition::new("layers");
const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");
const REFS: TableDefinition<&str, &str> = TableDefinition::new("refs");

/// Metadata failures.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// The database file could not be opened, read or written.
    #[error("metadata database: {0}")]
    Db(String),
    /// A stored record does not parse.
    #[error("metadata record {key}: {source}")]
    Corrupt {
        /// Which key.
        key: String,
        /// The parse failure.
        #[source]
        source: serde_json::Error,
    },
}

macro_rules! db_err {
    ($($t:ty),*) => {$(impl From<$t> for MetaError {
        fn from(e: $t) -> Self { MetaError::Db(e.to_string()) }
    })*};
}
db_err!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// A layer as stored: identified by its chain ID.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerRecord {
    /// The chain ID (the key).
    pub chain_id: Digest,
    /// The digest of the uncompressed layer tar.
    pub diff_id: Digest,
    /// The chain ID of the layer below, if any.
    pub parent: Option<Digest>,
    /// The directory name under the driver's root.
    pub cache_id: String,
    /// Bytes of file content in this layer alone.
    pub size: u64,
    /// The uncompressed tar's size.
    pub tar_size: u64,
}

/// An image as stored. The image ID is the digest of its config blob.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageRecord {
    /// The image ID.
    pub id: Digest,
    /// The chain ID of the top layer (`None` for an image with no layers).
    pub top_layer: Option<Digest>,
    /// The image this one was built from locally (`Parent` in inspect), if known.
    #[serde(default)]
    pub parent: Option<Digest>,
    /// Unix nanoseconds when a tag last moved to this image (`Metadata.LastTagTime`).
    #[serde(default)]
    pub last_tag_time: Option<i128>,
    /// Unix seconds when this image was registered here (for `until` and `before/since`).
    #[serde(default)]
    pub loaded_at: i64,
}

/// One atomic change to the metadata.
#[derive(Default, Debug)]
pub struct Batch {
    /// Layers to add or replace.
    pub put_layers: Vec<LayerRecord>,
    /// Layers to delete (by chain ID).
    pub del_layers: Vec<Digest>,
    /// Images to add or replace.
    pub put_images: Vec<ImageRecord>,
    /// Images to delete.
    pub del_images: Vec<Digest>,
    /// Names to point at images (`docker.io/library/busybox:latest` -> ID).
    pub put_refs: Vec<(String, Digest)>,
    /// Names to remove.
    pub del_refs: Vec<String>,
}

/// The metadata database.
pub struct Meta {
    db: Database,
}

impl std::fmt::Debug for Meta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Meta")
    }
}

fn decode<T: for<'de> Deserialize<'de>>(key: &str, v: &[u8]) -> Result<T, MetaError> {
    serde_json::from_slice(v).map_err(|source| MetaError::Corrupt {
        key: key.to_string(),
        source,
    })
}

impl Meta {
    /// Open or create the database file.
    pub fn open(path: &Path) -> Result<Self, MetaError> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        tx.open_table(LAYERS)?;
        tx.open_table(IMAGES)?;
        tx.open_table(REFS)?;
        tx.commit()?;
        Ok(Meta { db })
    }

    /// Apply a batch in one transaction.
    pub fn commit(&self, b: Batch) -> Result<(), MetaError> {
        let tx = self.db.begin_write()?;
        {
            let mut layers = tx.open_table(LAYERS)?;
            for l in &b.put_layers {
                let v = serde_json::to_vec(l).expect("serialise layer record");
                layers.insert(l.chain_id.hex().as_str(), v.as_slice())?;
            }
            for d in &b.del_layers {
                layers.remove(d.hex().as_str())?;
            }
            let mut images = tx.open_table(IMAGES)?;
            for i in &b.put_images {
                let v = serde_json::to_vec(i).expect("serialise image record");
                images.insert(i.id.hex().as_str(), v.as_slice())?;
            }
            for d in &b.del_images {
                images.remove(d.hex().as_str())?;
            }
            let mut refs = tx.open_table(REFS)?;
            for r in &b.del_refs {
                refs.remove(r.as_str())?;
            }
            for (r, id) in &b.put_refs {
                refs.insert(r.as_str(), id.hex().as_str())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every layer, by chain ID.
    pub fn layers(&self) -> Result<BTreeMap<Digest, LayerRecord>, MetaError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(LAYERS)?;
        let mut out = BTreeMap::new();
        for row in t.iter()? {
            let (k, v) = row?;
            let rec: LayerRecord = decode(k.value(), v.value())?;
            out.insert(rec.chain_id, rec);
        }
        Ok(out)
    }

    /// One layer.
    pub fn layer(&self, chain: &Digest) -> Result<Option<LayerRecord>, MetaError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(LAYERS)?;
        let key = chain.hex();
        Ok(match t.get(key.as_str())? {
            Some(v) => Some(decode(&key, v.value())?),
            None => None,
        })
    }

    /// Every image, by ID.
    pub fn images(&self) -> Result<BTreeMap<Digest, ImageRecord>, MetaError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(IMAGES)?;
        let mut out = BTreeMap::new();
        for row in t.iter()? {
            let (k, v) = row?;
            let rec: ImageRecord = decode(k.value(), v.value())?;
            out.insert(rec.id, rec);
        }
        Ok(out)
    }

    /// Every name and the image it points at.
    pub fn refs(&self) -> Result<BTreeMap<String, Digest>, MetaError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(REFS)?;
        let mut out = BTreeMap::new();
        for row in t.iter()? {
            let (k, v) = row?;
            if let Ok(d) = Digest::from_hex(v.value()) {
                out.insert(k.value().to_string(), d);
            }
        }
        Ok(out)
    }
}
