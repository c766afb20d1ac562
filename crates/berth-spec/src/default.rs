//! The spec `runc spec` (runc 1.1) writes.
//!
//! The JSON is runc 1.1.5's output byte for byte, so `berth spec` can write exactly what runc
//! writes (oci-spec keeps capabilities in a `HashSet`, so re-serializing a `Spec` would shuffle
//! their order). Note it has no inheritable capabilities: runc ≥ 1.1.2 dropped them for
//! CVE-2022-29162.

use oci_spec::runtime::Spec;

/// What `runc spec` (1.1) writes to `config.json`, tab-indented like runc.
pub const DEFAULT_SPEC_JSON: &str = include_str!("runc-1.1-default.json");

/// [`DEFAULT_SPEC_JSON`] as a `Spec`: root `rootfs` (read-only), `sh` with a terminal, the
/// default mounts, masked and read-only paths, three capabilities, `RLIMIT_NOFILE` 1024,
/// pid/network/ipc/uts/mount namespaces and a deny-all device cgroup rule.
pub fn default_spec() -> Spec {
    // The embedded document parses (a unit test proves it); the fallback only keeps this
    // function free of panics.
    crate::parse_unvalidated(DEFAULT_SPEC_JSON.as_bytes()).map(|l| l.spec).unwrap_or_default()
}
