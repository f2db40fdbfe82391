//! `tag`: a new name for an image (names that read as digests refused, as dockerd).

use super::*;
use wharf_reference::{Digest, Reference};
use wharf_store::Batch;

impl ImageService {
    /// `tag SOURCE TARGET`.
    pub fn tag(&self, source: &str, target: &str) -> Result<Reference> {
        let _g = self.write_lock.lock().expect("image lock");
        let id = self.resolve(source)?;
        let r = Reference::parse_tagged_default(target)?;
        if r.digest().is_some() {
            return Err(ImageError::Invalid(
                "refusing to create a tag with a digest reference".into(),
            ));
        }
        if r.path().starts_with("sha256") && r.path().len() > 64 {
            return Err(ImageError::Invalid(format!("invalid reference format: {target}")));
        }
        refuse_digest_named(&r)?;
        self.put_tag(&id, &r)?;
        Ok(r)
    }

    pub(crate) fn put_tag(&self, id: &Digest, r: &Reference) -> Result<()> {
        let mut rec = self
            .meta
            .images()?
            .remove(id)
            .ok_or_else(|| ImageError::NotFound(id.to_string()))?;
        rec.last_tag_time = Some(now_nanos());
        self.meta.commit(Batch {
            put_refs: vec![(r.to_string(), *id)],
            put_images: vec![rec],
            ..Batch::default()
        })?;
        Ok(())
    }
}

/// A name that reads as a digest algorithm (`sha256:<tag>`) would be mistaken for an image
/// ID: dockerd refuses to make one.
pub fn refuse_digest_named(r: &Reference) -> Result<()> {
    if r.familiar_name() == "sha256" {
        return Err(ImageError::Invalid(
            "refusing to create an ambiguous tag using digest algorithm as name".into(),
        ));
    }
    Ok(())
}
