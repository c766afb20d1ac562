//! Links the shim as a position-dependent executable.
//!
//! The shim is long-lived, one process per group of containers, and its memory is charged
//! per container. As a PIE, the dynamic loader writes ~11k relative relocations into
//! `.data.rel.ro` at start-up, which makes ~200 KB of the executable private dirty memory for
//! the life of the process; linked non-PIE those addresses are resolved at link time and the
//! pages stay clean and shared (containerd's Go shims are not PIE either). The code itself is
//! still compiled position-independent; only the final link changes. `BERTH_SHIM_PIE=1`
//! keeps the default.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") && std::env::var_os("BERTH_SHIM_PIE").is_none() {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    println!("cargo:rerun-if-env-changed=BERTH_SHIM_PIE");
}
