//! The root tier of the tests: those that set owners, make devices or mount need root. Run
//! without it, they skip and say so, rather than pass off what they did not test.

/// True when this process is not root, after saying that `what` is skipped. Written straight
/// to stderr: the test harness shows a passing test's own prints to nobody.
pub fn skip_unless_root(what: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return false;
    }
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("skipped {what}: root tier (needs root: owners, devices, mounts)\n").as_bytes(),
    );
    true
}
