//! The executor libcontainer calls last in a container's init (and in each exec'd process):
//! it loads the seccomp filter the daemon compiled, drops what the bounding set lacks from the
//! effective and permitted sets, and executes the payload with libcontainer's default executor.
//!
//! The daemon takes the profile out of the runtime spec (see `wharf_container::bpf`), so
//! libcontainer neither compiles it on the critical path nor forgets it for execs (its exec
//! path builds a spec without the profile). Without no_new_privs, loading a filter needs
//! CAP_SYS_ADMIN, which the spec keeps in the effective and permitted sets (never the bounding
//! set) for this moment only: it goes right after the load, before any of the payload runs.

use std::sync::Arc;

use caps::CapSet;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::libc;
use oci_spec::runtime::Spec;
use wharf_shim_proto::SeccompFilter;

/// A compiled filter, read once when the shim starts.
#[derive(Debug)]
pub struct Filter {
    insns: Vec<libc::sock_filter>,
    flags: u32,
}

/// The kernel's limit on a classic BPF program (BPF_MAXINSNS).
const MAX_INSNS: usize = 4096;

impl Filter {
    /// Read the program the daemon wrote: `struct sock_filter` records in host byte order.
    pub fn read(f: &SeccompFilter) -> Result<Filter, String> {
        let bytes = std::fs::read(&f.program).map_err(|e| format!("seccomp filter {}: {e}", f.program))?;
        if bytes.is_empty() || bytes.len() % 8 != 0 || bytes.len() / 8 > MAX_INSNS {
            return Err(format!(
                "seccomp filter {}: {} bytes is no program",
                f.program,
                bytes.len()
            ));
        }
        let insns = bytes
            .chunks_exact(8)
            .map(|c| libc::sock_filter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        Ok(Filter { insns, flags: f.flags })
    }

    /// Install the filter on the calling thread.
    fn load(&self) -> Result<(), String> {
        let prog = libc::sock_fprog {
            len: self.insns.len() as u16,
            filter: self.insns.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: `prog` points at `insns`, which outlives the call; the kernel copies the
        // program and does not keep the pointer.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if r < 0 {
            return Err(format!("loading seccomp filter: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

/// libcontainer's default executor behind the filter.
#[derive(Clone, Default)]
pub struct Payload {
    filter: Option<Arc<Filter>>,
}

impl Payload {
    /// Load `filter` (when there is one) before the payload runs.
    pub fn new(filter: Option<Arc<Filter>>) -> Payload {
        Payload { filter }
    }
}

/// Clear from the effective and permitted sets every capability the bounding set lacks.
fn drop_unbounded() -> Result<(), String> {
    let e = |e: caps::errors::CapsError| format!("capabilities: {e}");
    let bounding = caps::read(None, CapSet::Bounding).map_err(e)?;
    for set in [CapSet::Effective, CapSet::Permitted] {
        let held = caps::read(None, set).map_err(e)?;
        if !held.is_subset(&bounding) {
            let kept = held.intersection(&bounding).copied().collect();
            caps::set(None, set, &kept).map_err(e)?;
        }
    }
    Ok(())
}

impl Executor for Payload {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        if let Some(f) = &self.filter {
            f.load().map_err(ExecutorError::Other)?;
        }
        drop_unbounded().map_err(ExecutorError::Other)?;
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}
