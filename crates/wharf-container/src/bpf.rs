//! Seccomp profiles compiled in the daemon, once per distinct profile, to the BPF program the
//! kernel runs.
//!
//! Left to libcontainer, a container's init compiles its profile with libseccomp on the
//! critical path of every start (about 8 ms for Docker's profile over three architectures on
//! these machines, a quarter of a whole `run --rm`), and libcontainer's exec path applies no
//! profile at all to the processes `docker exec` starts. So the daemon compiles the profile
//! here, with the same libseccomp calls libcontainer makes (`initialize_seccomp`), keeps the
//! program, and hands it to the shim in the bundle ([`hand_off`]); the shim's executor loads it
//! with seccomp(2) right before exec, for the init and for every exec alike. Without
//! no_new_privs the load needs CAP_SYS_ADMIN, so the runtime spec keeps CAP_SYS_ADMIN in the
//! effective and permitted sets (never the bounding or inheritable set) until then; the
//! executor drops every capability outside the bounding set before exec, and the kernel's
//! execve would drop them anyway. Profiles with `SCMP_ACT_NOTIFY` are left to libcontainer,
//! whose listener handshake they need.

use std::collections::HashMap;
use std::collections::HashSet;
use std::io::{Read, Seek};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::{
    Arch, Capabilities, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
    Spec,
};
use serde_json::Value;
use wharf_shim_proto::SeccompFilter;

use crate::error::{ContainerError, Result};

/// The file in a bundle that holds the compiled program.
pub const FILTER_FILE: &str = "seccomp.bpf";

/// The capability the runtime spec keeps until the executor has loaded the filter.
const LOAD_CAP: Capability = Capability::SysAdmin;

/// Distinct profiles kept; the cache is emptied when it would grow past this.
const CACHE_MAX: usize = 64;

/// A profile compiled: `struct sock_filter` records in host byte order, and the seccomp(2)
/// flags to load them with.
#[derive(Debug, PartialEq, Eq)]
pub struct Program {
    /// The instructions, 8 bytes each.
    pub bpf: Vec<u8>,
    /// `SECCOMP_FILTER_FLAG_*`.
    pub flags: u32,
}

fn cache() -> &'static Mutex<HashMap<String, Arc<Program>>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Program>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// Compile an OCI `linux.seccomp` object, or answer from the cache. `None`: the profile needs
/// libcontainer's own loading (user notification).
pub fn compile(profile: &Value) -> Result<Option<Arc<Program>>> {
    let key = profile.to_string();
    // One compile at a time: libseccomp keeps process-wide state (its API level).
    let mut cache = cache().lock().expect("seccomp cache");
    if let Some(p) = cache.get(&key) {
        return Ok(Some(p.clone()));
    }
    let seccomp: LinuxSeccomp = serde_json::from_value(profile.clone())
        .map_err(|e| ContainerError::Invalid(format!("Decoding seccomp profile failed: {e}")))?;
    let Some(program) = compile_uncached(&seccomp)? else {
        return Ok(None);
    };
    let program = Arc::new(program);
    if cache.len() >= CACHE_MAX {
        cache.clear();
    }
    cache.insert(key, program.clone());
    Ok(Some(program))
}

/// Compile Docker's default profile for the default capability set ahead of any container.
pub fn prewarm() {
    let caps: Vec<String> = crate::spec::DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
    if let Err(e) = compile(&crate::seccomp::default_profile(&caps)) {
        tracing::warn!("compiling Docker's seccomp profile: {e}");
    }
}

fn invalid(what: &str, e: impl std::fmt::Display) -> ContainerError {
    ContainerError::Invalid(format!("seccomp profile: {what}: {e}"))
}

/// libcontainer's `initialize_seccomp`, exported instead of loaded.
fn compile_uncached(s: &LinuxSeccomp) -> Result<Option<Program>> {
    let notify = s.default_action() == LinuxSeccompAction::ScmpActNotify
        || s.listener_path().is_some()
        || s.syscalls()
            .iter()
            .flatten()
            .any(|r| r.action() == LinuxSeccompAction::ScmpActNotify);
    if notify {
        return Ok(None);
    }
    let mut flags = 0;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc_flags::TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc_flags::LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => libc_flags::SPEC_ALLOW,
            // Only meaningful with a notify listener.
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => return Ok(None),
        };
    }
    let default = action(s.default_action(), s.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| invalid("default action", e))?;
    for &a in s.architectures().iter().flatten() {
        ctx.add_arch(arch(a)).map_err(|e| invalid("architecture", e))?;
    }
    ctx.set_ctl_nnp(false)
        .map_err(|e| invalid("no_new_privs attribute", e))?;
    for rule in s.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret())?;
        if act == default {
            continue;
        }
        for name in rule.names() {
            // As libcontainer: a name this libseccomp does not know is skipped.
            let Ok(sc) = ScmpSyscall::from_name(name) else {
                continue;
            };
            let added = match rule.args() {
                Some(args) => {
                    let cmps: Vec<ScmpArgCompare> = args
                        .iter()
                        .map(|a| ScmpArgCompare::new(a.index() as u32, op(a.op(), a.value_two()), a.value()))
                        .collect();
                    let mut seen = HashSet::new();
                    if args.iter().all(|a| seen.insert(a.index())) {
                        ctx.add_rule_conditional(act, sc, &cmps).map(|_| ())
                    } else {
                        // Two comparisons of one argument: libseccomp wants them as rules of their own.
                        cmps.iter()
                            .try_for_each(|c| ctx.add_rule_conditional(act, sc, std::slice::from_ref(c)).map(|_| ()))
                    }
                }
                None => ctx.add_rule(act, sc).map(|_| ()),
            };
            added.map_err(|e| invalid(&format!("rule for {name}"), e))?;
        }
    }
    let fd = rustix::fs::memfd_create("wharf-seccomp", rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| ContainerError::Internal(format!("memfd: {e}")))?;
    ctx.export_bpf(&fd)
        .map_err(|e| ContainerError::Internal(format!("seccomp export: {e}")))?;
    let mut f = std::fs::File::from(fd);
    f.rewind()?;
    let mut bpf = Vec::new();
    f.read_to_end(&mut bpf)?;
    if bpf.is_empty() || bpf.len() % 8 != 0 {
        return Err(ContainerError::Internal(format!("seccomp export: {} bytes", bpf.len())));
    }
    Ok(Some(Program { bpf, flags }))
}

/// The kernel's `SECCOMP_FILTER_FLAG_*` (linux/seccomp.h).
mod libc_flags {
    pub const TSYNC: u32 = 1;
    pub const LOG: u32 = 2;
    pub const SPEC_ALLOW: u32 = 4;
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction> {
    const EPERM: i32 = 1;
    let errno = errno.map(|e| e as i32).unwrap_or(EPERM);
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => ScmpAction::KillThread,
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno),
        LinuxSeccompAction::ScmpActTrace => {
            ScmpAction::Trace(u16::try_from(errno).map_err(|e| invalid("SCMP_ACT_TRACE errno", e))?)
        }
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
    })
}

fn op(o: LinuxSeccompOperator, datum_b: Option<u64>) -> ScmpCompareOp {
    match o {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(datum_b.unwrap_or(0)),
    }
}

fn arch(a: Arch) -> ScmpArch {
    match a {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

/// Move a container's profile from libcontainer to the shim: compile it and write the
/// program to `bundle/seccomp.bpf` (the filter for the shim); a profile libcontainer must load
/// itself (user notification) comes back typed, for the runtime spec. Both `None`: unconfined.
/// With a filter, [`keep_for_load`] then readies the spec's capabilities for its load.
pub fn hand_off(profile: Option<Value>, bundle: &Path) -> Result<(Option<SeccompFilter>, Option<LinuxSeccomp>)> {
    let Some(profile) = profile else {
        return Ok((None, None));
    };
    let Some(program) = compile(&profile)? else {
        let left = serde_json::from_value(profile)
            .map_err(|e| ContainerError::Invalid(format!("Decoding seccomp profile failed: {e}")))?;
        return Ok((None, Some(left)));
    };
    let path = bundle.join(FILTER_FILE);
    std::fs::write(&path, &program.bpf)?;
    let filter = SeccompFilter {
        program: path.display().to_string(),
        flags: program.flags,
    };
    Ok((Some(filter), None))
}

/// A filter the shim loads needs CAP_SYS_ADMIN in the process's effective and permitted sets
/// unless the process has no_new_privs.
pub fn keep_for_load(spec: &mut Spec) {
    let nnp = spec.process().as_ref().and_then(|p| p.no_new_privileges());
    if nnp != Some(true) {
        keep_sys_admin(spec);
    }
}

/// Keep CAP_SYS_ADMIN in the effective and permitted sets (never the bounding or inheritable
/// ones) for the shim's executor, which drops it before the payload runs.
fn keep_sys_admin(spec: &mut Spec) {
    let Some(process) = spec.process_mut().as_mut() else {
        return;
    };
    let mut caps = process.capabilities().clone().unwrap_or_default();
    let add = |set: &Option<Capabilities>| {
        let mut set = set.clone().unwrap_or_default();
        set.insert(LOAD_CAP);
        set
    };
    caps.set_effective(Some(add(caps.effective())));
    caps.set_permitted(Some(add(caps.permitted())));
    process.set_capabilities(Some(caps));
}

/// The executor seals the cgroup mounts of every container whose spec mounts them read-only
/// (all but `--privileged`): that remount needs CAP_SYS_ADMIN whatever the seccomp setup, so
/// it is kept for the executor as for a filter's load.
pub fn keep_for_cgroup_seal(spec: &mut Spec) {
    let read_only = spec.mounts().as_ref().is_some_and(|ms| {
        ms.iter()
            .rev()
            .find(|m| m.destination() == Path::new("/sys/fs/cgroup"))
            .is_some_and(|m| {
                m.typ().as_deref() == Some("cgroup")
                    && m.options().as_ref().is_some_and(|o| o.iter().any(|x| x == "ro"))
            })
    });
    if read_only {
        keep_sys_admin(spec);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn default_profile() -> Value {
        let caps: Vec<String> = crate::spec::DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
        crate::seccomp::default_profile(&caps)
    }

    #[test]
    fn compiles_once_per_profile() {
        let p = default_profile();
        let a = compile(&p).unwrap().unwrap();
        let b = compile(&p).unwrap().unwrap();
        assert!(Arc::ptr_eq(&a, &b), "the second compile comes from the cache");
        assert_eq!(a.flags, 0);
        // Docker's profile over x86_64, x86 and x32: well over a thousand instructions, under
        // the kernel's limit of 4096.
        let insns = a.bpf.len() / 8;
        assert!((1000..4096).contains(&insns), "{insns} instructions");
        let mut other = p.clone();
        other["defaultErrnoRet"] = json!(38);
        let c = compile(&other).unwrap().unwrap();
        assert_ne!(a.bpf, c.bpf, "the default errno is part of the program");
    }

    #[test]
    fn notify_profiles_stay_with_libcontainer() {
        let p = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["getcwd"], "action": "SCMP_ACT_NOTIFY"}]});
        assert!(compile(&p).unwrap().is_none());
        let dir = tempfile::tempdir().unwrap();
        let (filter, left) = hand_off(Some(p.clone()), dir.path()).unwrap();
        assert!(filter.is_none());
        assert_eq!(
            serde_json::to_value(left.unwrap()).unwrap()["syscalls"][0]["action"],
            "SCMP_ACT_NOTIFY"
        );
        assert!(!dir.path().join(FILTER_FILE).exists());
    }

    #[test]
    fn bad_profiles_are_refused() {
        let e = compile(&json!({"defaultAction": "SCMP_ACT_BOGUS"})).unwrap_err();
        assert!(e.to_string().contains("Decoding seccomp profile failed"), "{e}");
        let e = compile(&json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]}))
        .unwrap_err();
        assert!(e.to_string().contains("rule for read"), "{e}");
    }

    /// A spec with `caps` in every set but the inheritable one, `nnp` and the cgroup mount.
    fn spec_with(caps: &[&str], nnp: bool, cgroup_opt: &str) -> Spec {
        let mut v = serde_json::to_value(Spec::default()).unwrap();
        v["process"]["capabilities"] =
            json!({"bounding": caps, "effective": caps, "permitted": caps, "inheritable": []});
        v["process"]["noNewPrivileges"] = json!(nnp);
        v["mounts"] = json!([{"destination": "/sys/fs/cgroup", "type": "cgroup", "options": ["nosuid", cgroup_opt]}]);
        serde_json::from_value(v).unwrap()
    }

    fn set(spec: &Spec, which: &str) -> Vec<String> {
        let v = serde_json::to_value(spec.process().as_ref().unwrap().capabilities()).unwrap();
        let mut out: Vec<String> = serde_json::from_value(v[which].clone()).unwrap_or_default();
        out.sort();
        out
    }

    #[test]
    fn hand_off_keeps_sys_admin_only_where_the_load_needs_it() {
        let dir = tempfile::tempdir().unwrap();
        let (f, left) = hand_off(Some(default_profile()), dir.path()).unwrap();
        assert!(left.is_none(), "the daemon loads it, not libcontainer");
        let f = f.unwrap();
        assert_eq!(
            std::fs::read(&f.program).unwrap(),
            compile(&default_profile()).unwrap().unwrap().bpf
        );
        let mut spec = spec_with(&["CAP_CHOWN", "CAP_KILL"], false, "rw");
        keep_for_load(&mut spec);
        assert_eq!(set(&spec, "effective"), ["CAP_CHOWN", "CAP_KILL", "CAP_SYS_ADMIN"]);
        assert_eq!(set(&spec, "permitted"), ["CAP_CHOWN", "CAP_KILL", "CAP_SYS_ADMIN"]);
        assert_eq!(
            set(&spec, "bounding"),
            ["CAP_CHOWN", "CAP_KILL"],
            "never the bounding set"
        );
        assert!(set(&spec, "inheritable").is_empty(), "never the inheritable set");

        // With no_new_privs the kernel needs no capability to load a filter.
        let mut spec = spec_with(&["CAP_CHOWN", "CAP_KILL"], true, "rw");
        keep_for_load(&mut spec);
        assert_eq!(set(&spec, "effective"), ["CAP_CHOWN", "CAP_KILL"]);
        assert_eq!(set(&spec, "permitted"), ["CAP_CHOWN", "CAP_KILL"]);

        // Unconfined: nothing to hand off.
        assert!(matches!(hand_off(None, dir.path()).unwrap(), (None, None)));
    }

    #[test]
    fn the_cgroup_seal_keeps_sys_admin_only_for_read_only_cgroups() {
        let mut spec = spec_with(&["CAP_KILL"], true, "ro");
        keep_for_cgroup_seal(&mut spec);
        assert_eq!(set(&spec, "effective"), ["CAP_KILL", "CAP_SYS_ADMIN"]);
        assert_eq!(set(&spec, "permitted"), ["CAP_KILL", "CAP_SYS_ADMIN"]);
        assert_eq!(set(&spec, "bounding"), ["CAP_KILL"]);
        // --privileged: writable cgroups, nothing to seal.
        let mut spec = spec_with(&["CAP_KILL"], true, "rw");
        keep_for_cgroup_seal(&mut spec);
        assert_eq!(set(&spec, "effective"), ["CAP_KILL"]);
    }
}
