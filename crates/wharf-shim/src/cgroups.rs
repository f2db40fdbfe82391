//! The container's cgroups as the shim sees them: libcgroups' manager for `stats` and
//! `update` (the one libcontainer created them with, v1, v2 or hybrid), and the OOM count.

use std::fs;

/// libcgroups' manager for the container's cgroup (v1, v2 or hybrid, as libcontainer chose).
pub fn cgroup_manager(cgroup_path: &str, id: &str) -> Result<libcgroups::common::AnyCgroupManager, String> {
    libcgroups::common::create_cgroup_manager(libcgroups::common::CgroupConfig {
        cgroup_path: cgroup_path.into(),
        systemd_cgroup: false,
        container_name: id.to_string(),
    })
    .map_err(|e| e.to_string())
}

/// The cgroup's figures (for `docker stats`), read by the same manager that created it.
pub fn cgroup_stats(cgroup_path: &str, id: &str) -> Result<serde_json::Value, String> {
    crate::stats::read(&cgroup_manager(cgroup_path, id)?, cgroup_path)
}

/// `docker update`: the container's cgroup gets the whole new resources object, through the
/// same cgroup manager libcontainer created it with (v1, v2 or hybrid).
pub fn update_resources(cgroup_path: &str, id: &str, res: &oci_spec::runtime::LinuxResources) -> Result<(), String> {
    use libcgroups::common::{CgroupManager, ControllerOpt};
    let manager = cgroup_manager(cgroup_path, id)?;
    let opt = ControllerOpt {
        resources: res,
        disable_oom_killer: res
            .memory()
            .as_ref()
            .and_then(|m| m.disable_oom_killer())
            .unwrap_or(false),
        oom_score_adj: None,
        freezer_state: None,
    };
    manager.apply(&opt).map_err(|e| e.to_string())
}

/// How often the kernel's OOM killer has acted in the cgroup (v1 or v2 layout).
pub fn oom_kills(cgroup_path: &str) -> u64 {
    let rel = cgroup_path.trim_start_matches('/');
    let candidates = [
        (format!("/sys/fs/cgroup/memory/{rel}/memory.oom_control"), "oom_kill "),
        (format!("/sys/fs/cgroup/{rel}/memory.events"), "oom_kill "),
        (format!("/sys/fs/cgroup/unified/{rel}/memory.events"), "oom_kill "),
    ];
    for (p, key) in candidates {
        if let Ok(s) = fs::read_to_string(&p) {
            if let Some(n) = s
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse().ok())
            {
                return n;
            }
        }
    }
    0
}
