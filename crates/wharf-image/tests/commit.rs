//! `commit_image`, as a builder step uses it: over nothing (`FROM scratch`), over an image,
//! with a layer or with none (a step that only changes the config), on both drivers. Root
//! tier: layers are extracted with their owners.

use std::io::Read;

use serde_json::{json, Value};
use wharf_image::{CommitSpec, ImageService};
use wharf_store::Driver;

fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn spec(created_by: &str, config: Value, tag: Option<&str>) -> CommitSpec {
    CommitSpec {
        config,
        changes: vec![],
        container: String::new(),
        container_config: Value::Null,
        author: String::new(),
        comment: String::new(),
        created_by: created_by.into(),
        tag: tag.map(String::from),
        created: None,
    }
}

fn config_of(images: &ImageService, id: &wharf_reference::Digest) -> Value {
    serde_json::from_slice(&images.config_bytes(id).unwrap()).unwrap()
}

#[test]
fn images_from_scratch_with_and_without_layers() {
    if wharf_store::root_tier::skip_unless_root("images_from_scratch_with_and_without_layers") {
        return;
    }
    for driver in [Driver::Overlay2, Driver::Vfs] {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let images = ImageService::open(dir.path(), driver).unwrap();
        // FROM scratch + COPY: one layer, no parent.
        let tar = layer(&[("hello", b"hi")]);
        let first = images
            .commit_image(
                None,
                Some(&mut &tar[..]),
                spec("COPY hello /", json!({"Cmd": ["/hello"]}), None),
            )
            .unwrap();
        let c = config_of(&images, &first);
        assert_eq!(c["rootfs"]["diff_ids"].as_array().unwrap().len(), 1, "{driver:?}");
        assert_eq!(c["os"], "linux");
        assert!(c.get("container").is_none(), "a build step has no container");
        assert!(c["history"][0].get("empty_layer").is_none());
        // ENV: the config changes, no layer.
        let mut s = spec("ENV A=1", json!({"Cmd": ["/hello"], "Env": ["A=1"]}), Some("built:1"));
        s.changes = vec!["LABEL stage=two".into()];
        let second = images.commit_image(Some(&first), None, s).unwrap();
        let c2 = config_of(&images, &second);
        assert_eq!(c2["rootfs"]["diff_ids"], c["rootfs"]["diff_ids"], "{driver:?}");
        assert_eq!(c2["history"].as_array().unwrap().len(), 2);
        assert_eq!(c2["history"][1]["empty_layer"], true);
        assert_eq!(c2["history"][1]["created_by"], "ENV A=1");
        assert_eq!(c2["config"]["Labels"]["stage"], "two");
        assert_eq!(images.resolve("built:1").unwrap(), second);
        assert_eq!(images.inspect("built:1").unwrap().record.parent, Some(first));
        // RUN over it: a second layer, both files there.
        let tar2 = layer(&[("more", b"more")]);
        let third = images
            .commit_image(Some(&second), Some(&mut &tar2[..]), spec("RUN make", json!({}), None))
            .unwrap();
        let c3 = config_of(&images, &third);
        assert_eq!(c3["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
        let (_, chain) = images.rootfs_of(&third).unwrap();
        assert_eq!(chain.len(), 2);
        let mut all = Vec::new();
        images
            .layer_tar(&chain[1].diff_id)
            .unwrap()
            .read_to_end(&mut all)
            .unwrap();
        assert!(!all.is_empty());
        // An empty image: scratch with no layer at all.
        let empty = images.commit_image(None, None, spec("", json!({}), None)).unwrap();
        assert_eq!(config_of(&images, &empty)["rootfs"]["diff_ids"], json!([]));
    }
}
