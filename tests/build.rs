//! The root tier: the end-to-end tests run a real daemon, which needs root (namespaces,
//! mounts, cgroups, nftables). Built without root, they are marked ignored with that reason,
//! so that `cargo test` as a user runs the hermetic tier and says what it left out.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(root_tier)");
    println!("cargo::rerun-if-changed=build.rs");
    let uid = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
    });
    if uid.as_deref() == Some("0") {
        println!("cargo::rustc-cfg=root_tier");
    }
}
