//! A data root written by wharf before the engine had its own container types still opens:
//! records from that wharf (`tests/fixtures/records/*.config.v2.json`, written by `docker
//! create` with most flags against it) load as the engine's types, inspect renders their
//! `Config` and `HostConfig` exactly as that wharf did (`*.inspect.json`), and a record saved
//! again keeps every stored field.

use serde_json::Value;
use std::path::Path;
use wharf_api::convert::{config_view, host_config_view};
use wharf_container::record::Record;

fn fixture(name: &str) -> (tempfile::TempDir, Value) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/records");
    let d = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir.join(format!("{name}.config.v2.json")),
        d.path().join("config.v2.json"),
    )
    .unwrap();
    let inspect: Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.inspect.json"))).unwrap()).unwrap();
    (d, inspect[0].clone())
}

/// Inspect showed every field the view has (Links aside: rewritten as `/other:/self/alias`),
/// and nothing else but the zeros and nulls dockerd shows for fields left unset.
fn same_as_inspected(view: &Value, inspected: &Value, what: &str) {
    let view = view.as_object().unwrap();
    for (k, v) in view {
        if k != "Links" {
            assert_eq!(&inspected[k], v, "{what}.{k}");
        }
    }
    for (k, v) in inspected.as_object().unwrap() {
        let zero =
            matches!(v, Value::Null | Value::Bool(false)) || v == "" || v == 0 || *v == serde_json::json!([0, 0]);
        assert!(view.contains_key(k) || zero, "{what}.{k} = {v} is not in the record");
    }
}

#[test]
fn records_written_before_the_engine_types_open_and_inspect_alike() {
    for name in ["web", "pub"] {
        let (d, inspect) = fixture(name);
        let stored: Value = serde_json::from_slice(&std::fs::read(d.path().join("config.v2.json")).unwrap()).unwrap();
        let rec = Record::load(d.path()).unwrap();
        assert_eq!(format!("/{}", rec.name), inspect["Name"], "{name}");
        let config = serde_json::to_value(config_view(&rec.config)).unwrap();
        same_as_inspected(&config, &inspect["Config"], &format!("{name}: Config"));
        assert_eq!(config, stored["config"], "{name}: no config field lost");
        let shown = serde_json::to_value(host_config_view(&rec.host_config)).unwrap();
        same_as_inspected(&shown, &inspect["HostConfig"], &format!("{name}: HostConfig"));
        assert_eq!(shown, stored["host_config"], "{name}: no host config field lost");
        // Saved again, the record keeps every field it had.
        rec.save(d.path()).unwrap();
        let again: Value = serde_json::from_slice(&std::fs::read(d.path().join("config.v2.json")).unwrap()).unwrap();
        assert_eq!(again, stored, "{name}: saved again");
    }
}
