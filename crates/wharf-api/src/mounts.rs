//! `HostConfig.Mounts` entries newer than the edge's models (bollard-stubs 1.47): `type=image`
//! (API 1.48) is taken out of the body before the models read it, checked here, and handed to
//! the engine as its own `ImageMount`.

use serde_json::Value;
use wharf_container::mounts::ImageMount;

use crate::error::ApiError;

/// Take the image mounts out of a create body's `HostConfig.Mounts`.
pub fn take_image_mounts(body: &mut Value) -> Result<Vec<ImageMount>, ApiError> {
    let Some(list) = body
        .get_mut("HostConfig")
        .and_then(|hc| hc.get_mut("Mounts"))
        .and_then(Value::as_array_mut)
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut kept = Vec::new();
    for m in list.drain(..) {
        if m.get("Type").and_then(Value::as_str) != Some("image") {
            kept.push(m);
            continue;
        }
        let s = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        for other in ["BindOptions", "VolumeOptions", "TmpfsOptions"] {
            if m.get(other).is_some_and(|o| !o.is_null()) {
                return Err(ApiError::invalid(format!(
                    "invalid mount config for type \"image\": field {other} must not be specified"
                )));
            }
        }
        // An image is always mounted read-only, whatever `ReadOnly` says.
        out.push(ImageMount {
            source: s("Source"),
            target: s("Target"),
            subpath: m
                .pointer("/ImageOptions/Subpath")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        });
    }
    *list = kept;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_mounts_leave_the_others_in_place() {
        let mut body = serde_json::json!({"HostConfig": {"Mounts": [
            {"Type": "bind", "Source": "/a", "Target": "/b"},
            {"Type": "image", "Source": "busybox", "Target": "/img", "ImageOptions": {"Subpath": "etc"}},
        ]}});
        let got = take_image_mounts(&mut body).unwrap();
        assert_eq!(
            got,
            vec![ImageMount {
                source: "busybox".into(),
                target: "/img".into(),
                subpath: "etc".into()
            }]
        );
        assert_eq!(body["HostConfig"]["Mounts"].as_array().unwrap().len(), 1);
        let mut bad = serde_json::json!({"HostConfig": {"Mounts": [
            {"Type": "image", "Source": "busybox", "Target": "/img", "VolumeOptions": {}},
        ]}});
        assert!(take_image_mounts(&mut bad).is_err());
    }
}
