//! Links the shim as a position-dependent executable. Every container has its own shim, so the
//! shim's private memory is paid once per container: a PIE binary applies half a megabyte of
//! start-up relocations (`.rela.dyn`) and dirties its `.data.rel.ro` in every process, while a
//! position-dependent one has those resolved at link time and shares them in the page cache.
fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
