//! The host's device nodes a `--privileged` container gets in its `/dev`, as Docker lists them
//! (containerd's `HostDevices`): every block and character device under the host's `/dev`,
//! recursively, with its mode and owner, but not the console and not what lives in `pts`,
//! `shm`, `fd`, `mqueue` and the container managers' and udev's private directories (the
//! container has its own of those). Symlinks, sockets and other files are not devices.

use std::path::Path;

use oci_spec::runtime::{LinuxDevice, LinuxDeviceBuilder, LinuxDeviceType};

/// Directories under `/dev` whose contents are never copied.
const SKIPPED_DIRS: &[&str] = &["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

/// The OCI `linux.devices` entries for the device nodes under `root` (the host's `/dev`),
/// named as they are there; sorted by path.
pub fn host_devices(root: &Path) -> Vec<LinuxDevice> {
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort_by(|a, b| a.path().cmp(b.path()));
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<LinuxDevice>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let path = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            let name = e.file_name();
            if !SKIPPED_DIRS.iter().any(|s| name == *s) {
                walk(root, &path, out);
            }
            continue;
        }
        if path == root.join("console") {
            continue;
        }
        // lstat: a symlink is not a device, whatever it points at.
        let Ok(st) = rustix::fs::lstat(&path) else { continue };
        let kind = match st.st_mode & 0o170000 {
            0o020000 => LinuxDeviceType::C,
            0o060000 => LinuxDeviceType::B,
            _ => continue,
        };
        let Ok(rel) = path.strip_prefix(root) else { continue };
        let dev = LinuxDeviceBuilder::default()
            .path(Path::new("/dev").join(rel))
            .typ(kind)
            .major(i64::from(rustix::fs::major(st.st_rdev)))
            .minor(i64::from(rustix::fs::minor(st.st_rdev)))
            .file_mode(st.st_mode & 0o777)
            .uid(st.st_uid)
            .gid(st.st_gid)
            .build();
        out.extend(dev);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_devices_without_console_pts_or_links() {
        let devs = host_devices(Path::new("/dev"));
        let paths: Vec<&str> = devs.iter().filter_map(|d| d.path().to_str()).collect();
        // Every Linux host has these character devices.
        for p in ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"] {
            assert!(paths.contains(&p), "{p} missing from {paths:?}");
        }
        let null = devs.iter().find(|d| d.path() == Path::new("/dev/null")).unwrap();
        assert_eq!((null.typ(), null.major(), null.minor()), (LinuxDeviceType::C, 1, 3));
        assert!(!paths.contains(&"/dev/console"));
        assert!(paths
            .iter()
            .all(|p| !p.starts_with("/dev/pts/") && !p.starts_with("/dev/shm/")));
        // /dev/stdin and friends are symlinks, never devices.
        assert!(!paths.contains(&"/dev/stdin"));
        assert!(!paths.contains(&"/dev/fd"));
    }
}
