//! Docker's default seccomp profile, as an OCI `linux.seccomp` object: every syscall not
//! listed fails with EPERM; namespace-creating `clone` flags, `clone3` (ENOSYS, so libcs fall
//! back to `clone`), `AF_ALG` and `AF_VSOCK` sockets, `keyctl`, `add_key`, `request_key` and
//! `userfaultfd` are refused; syscalls that need a capability are allowed only when the
//! container has it. `--security-opt seccomp=unconfined|<file>` replaces it.

use serde_json::{json, Value};

use crate::error::{ContainerError, Result};

/// Allowed for every container.
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
    "arch_prctl",
    "modify_ldt",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    "process_madvise",
];

/// Syscalls allowed only with a capability, as Docker's profile groups them.
const BY_CAP: &[(&str, &[&str])] = &[
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    ("CAP_SYS_MODULE", &["delete_module", "init_module", "finit_module"]),
    ("CAP_SYS_PACCT", &["acct"]),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// The namespace flags of `clone(2)`: CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET.
const CLONE_NS_FLAGS: u64 = 0x7E02_0000;
const AF_ALG: u64 = 38;
const AF_VSOCK: u64 = 40;
const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// Docker's default profile for a container with capabilities `caps`.
pub fn default_profile(caps: &[String]) -> Value {
    let has = |c: &str| caps.iter().any(|x| x == c);
    let mut names: Vec<&str> = ALLOWED.to_vec();
    for (cap, calls) in BY_CAP {
        if has(cap) {
            names.extend_from_slice(calls);
        }
    }
    names.sort_unstable();
    names.dedup();
    let mut syscalls = vec![json!({"names": names, "action": "SCMP_ACT_ALLOW"})];
    // personality(2): only the harmless personas.
    for p in [0u64, 8, 0x20000, 0x20008, 0xffff_ffff] {
        syscalls.push(json!({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": p, "op": "SCMP_CMP_EQ"}]}));
    }
    // socket(2): every family but AF_ALG and AF_VSOCK (one comparison per rule).
    syscalls.push(json!({"names": ["socket"], "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": AF_ALG, "op": "SCMP_CMP_LT"}]}));
    syscalls.push(json!({"names": ["socket"], "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": AF_ALG + 1, "op": "SCMP_CMP_EQ"}]}));
    syscalls.push(json!({"names": ["socket"], "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_GT"}]}));
    if has("CAP_SYS_ADMIN") {
        syscalls.push(json!({"names": ["clone", "clone3"], "action": "SCMP_ACT_ALLOW"}));
    } else {
        syscalls.push(json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": CLONE_NS_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}));
        syscalls.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS}));
    }
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": syscalls,
    })
}

/// The profile for a container: a profile given inline (the docker CLI sends the file's
/// contents), none with `seccomp=unconfined`, else Docker's default, which `--privileged`
/// drops. As in Docker 25+, a profile given explicitly applies to privileged containers too.
pub fn for_container(hc: &crate::config::HostSpec) -> Result<Option<Value>> {
    for opt in hc.security.security_opt.iter().flatten() {
        let Some(v) = opt.strip_prefix("seccomp=").or_else(|| opt.strip_prefix("seccomp:")) else {
            continue;
        };
        if v == "unconfined" {
            return Ok(None);
        }
        let profile: Value = serde_json::from_str(v)
            .map_err(|e| ContainerError::Invalid(format!("Decoding seccomp profile failed: {e}")))?;
        return Ok(Some(docker_to_oci(profile)));
    }
    if hc.security.privileged.unwrap_or(false) {
        return Ok(None);
    }
    Ok(Some(default_profile(&crate::spec::capabilities(hc)?)))
}

/// Docker's profile format to OCI's: `archMap` becomes `architectures`, `includes`/`excludes`
/// conditions are dropped with the rules they guard, `name` becomes `names`.
fn docker_to_oci(mut p: Value) -> Value {
    if p.get("architectures").is_none() {
        if let Some(map) = p.get("archMap").and_then(|v| v.as_array()) {
            let mut arches = Vec::new();
            for a in map {
                if let Some(x) = a.get("architecture") {
                    arches.push(x.clone());
                }
                for s in a
                    .get("subArchitectures")
                    .and_then(|v| v.as_array())
                    .into_iter()
                    .flatten()
                {
                    arches.push(s.clone());
                }
            }
            p["architectures"] = json!(arches);
        }
    }
    if let Some(o) = p.as_object_mut() {
        o.remove("archMap");
        o.remove("defaultErrno");
    }
    if let Some(list) = p.get_mut("syscalls").and_then(|v| v.as_array_mut()) {
        list.retain(|s| {
            s.get("includes")
                .is_none_or(|i| i.as_object().is_none_or(|o| o.is_empty()))
        });
        for s in list.iter_mut() {
            if let Some(o) = s.as_object_mut() {
                if let Some(n) = o.remove("name") {
                    o.insert("names".into(), json!([n]));
                }
                o.remove("includes");
                o.remove("excludes");
                o.remove("comment");
            }
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(p: &Value, name: &str) -> bool {
        p["syscalls"].as_array().unwrap().iter().any(|s| {
            s["action"] == "SCMP_ACT_ALLOW"
                && s.get("args").is_none()
                && s["names"].as_array().unwrap().iter().any(|n| n == name)
        })
    }

    #[test]
    fn defaults_refuse_what_docker_refuses() {
        let caps: Vec<String> = crate::spec::DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
        let p = default_profile(&caps);
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
        for bad in [
            "keyctl",
            "add_key",
            "request_key",
            "userfaultfd",
            "mount",
            "unshare",
            "setns",
            "reboot",
            "clone3",
        ] {
            assert!(!allowed(&p, bad), "{bad}");
        }
        for good in ["read", "execve", "chroot", "wait4", "ptrace"] {
            assert!(allowed(&p, good), "{good}");
        }
        let mut admin = caps.clone();
        admin.push("CAP_SYS_ADMIN".into());
        let p = default_profile(&admin);
        assert!(allowed(&p, "mount") && allowed(&p, "unshare") && allowed(&p, "clone3"));
    }

    #[test]
    fn docker_format_converts() {
        let p = docker_to_oci(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
            "syscalls": [
                {"name": "read", "action": "SCMP_ACT_ALLOW"},
                {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}}
            ]
        }));
        assert_eq!(p["architectures"], json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]));
        assert_eq!(p["syscalls"].as_array().unwrap().len(), 1);
        assert_eq!(p["syscalls"][0]["names"], json!(["read"]));
    }
}
