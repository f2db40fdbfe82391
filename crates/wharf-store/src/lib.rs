//! Storage for images: the content store (blobs by digest), the layer store (overlay2 and vfs
//! drivers, safe tar application) and the metadata database (layers, images, names).
//!
//! **Invariant:** nothing here knows about HTTP, the Docker API or image configs; it stores
//! bytes, directories and records. **Invariant:** every path taken from an archive is resolved
//! inside its target root by [`saferoot`], never by string joining.

#![forbid(unsafe_code)]

pub mod apply;
pub mod archive;
pub mod changes;
pub mod clamp;
pub mod content;
pub mod layer;
pub mod meta;
pub mod omit;
pub mod root_tier;
pub mod saferoot;
pub mod snapshot;
pub mod split;
pub mod spool;

pub use apply::{apply_tar, apply_tar_in, decompress, ApplyError, ApplyOptions, WhiteoutMode};
pub use content::{random_name, ContentError, ContentStore};
pub use layer::{spread_subdirs, Driver, LayerError, LayerStore};
pub use meta::{Batch, ImageRecord, LayerRecord, Meta, MetaError};
