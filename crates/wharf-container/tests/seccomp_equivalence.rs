//! The daemon's compiled seccomp programs are the very programs libcontainer would load.
//!
//! A forked child loads a profile through libcontainer's own `initialize_seccomp`; the test
//! reads the filter back from the kernel (PTRACE_SECCOMP_GET_FILTER, root only) and compares
//! it, instruction for instruction, with what `wharf_container::bpf::compile` made of the same
//! profile.

use nix::libc;
use serde_json::{json, Value};

/// linux/ptrace.h; the libc crate does not name it.
const PTRACE_SECCOMP_GET_FILTER: libc::c_uint = 0x420c;

fn loaded_by_libcontainer(profile: &Value) -> Vec<u8> {
    let seccomp: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(profile.clone()).unwrap();
    // SAFETY: the child only runs libcontainer's seccomp setup and stops; this test binary runs
    // one test, so no other thread holds a lock the child could need.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        // SAFETY: plain syscalls in the child; _exit never returns.
        unsafe {
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) != 0 {
                libc::_exit(2);
            }
            if libcontainer::seccomp::initialize_seccomp(&seccomp).is_err() {
                libc::_exit(3);
            }
            libc::raise(libc::SIGSTOP);
            libc::_exit(0);
        }
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFSTOPPED(status), "child did not stop: status {status:#x}");
    // SAFETY: the child is stopped under our trace; a null buffer asks for the length.
    let n = unsafe { libc::ptrace(PTRACE_SECCOMP_GET_FILTER, pid, 0, std::ptr::null_mut::<u8>()) };
    assert!(n > 0, "PTRACE_SECCOMP_GET_FILTER: {}", std::io::Error::last_os_error());
    let mut buf = vec![0u8; n as usize * 8];
    // SAFETY: buf holds n instructions of 8 bytes.
    let m = unsafe { libc::ptrace(PTRACE_SECCOMP_GET_FILTER, pid, 0, buf.as_mut_ptr()) };
    assert_eq!(m, n);
    // SAFETY: our child; reaped right after.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, &mut status, 0);
    }
    buf
}

#[test]
fn compiled_programs_match_what_libcontainer_loads() {
    if wharf_store::root_tier::skip_unless_root("compiled_programs_match_what_libcontainer_loads") {
        return;
    }
    let mut caps: Vec<String> = wharf_container::spec::DEFAULT_CAPS
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut profiles = vec![wharf_container::seccomp::default_profile(&caps)];
    caps.push("CAP_SYS_ADMIN".into());
    caps.push("CAP_SYS_PTRACE".into());
    profiles.push(wharf_container::seccomp::default_profile(&caps));
    // Every action, an errno of its own, two comparisons of one argument, an unknown name.
    profiles.push(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [
            {"names": ["mkdir", "no_such_syscall"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["chmod"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["fchmod"], "action": "SCMP_ACT_TRAP"},
            {"names": ["acct"], "action": "SCMP_ACT_LOG"},
            {"names": ["setpgid"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_GT"}, {"index": 0, "value": 100, "op": "SCMP_CMP_LT"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 255, "valueTwo": 8, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["getcwd"], "action": "SCMP_ACT_ALLOW"}
        ]
    }));
    for p in &profiles {
        let ours = wharf_container::bpf::compile(p).unwrap().expect("compiled");
        let theirs = loaded_by_libcontainer(p);
        assert_eq!(ours.bpf.len(), theirs.len(), "program length");
        assert!(ours.bpf == theirs, "programs differ");
    }
}
