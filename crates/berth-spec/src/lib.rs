//! Loading and validating OCI runtime bundles for berth.
//!
//! The output types are oci-spec's (`oci_spec::runtime::Spec`, `Process`), so the runtime and
//! the CLI work with the same structs the rest of the Rust container ecosystem uses. This crate
//! adds what oci-spec does not do:
//!
//! - runc's leniency: unknown capability names are dropped with a warning instead of failing
//!   the parse, a missing `process.user` means uid 0, `"seccomp": {}` means no seccomp, and a
//!   relative mount destination is taken as relative to `/` (with a warning);
//! - Linux validation of the rules runc enforces (and the runtime-spec MUSTs whose violation
//!   would make the runtime guess), each error naming the JSON path of the offending field;
//! - errors for malformed JSON that carry both a JSON path and a line/column.
//!
//! Warnings are returned as strings in [`Loaded::warnings`]; the caller decides how to log
//! them (runc logs them at warning level and carries on).
//!
//! See `docs/spec.md` for the full rule list and where berth differs from runc.

mod caps;
mod default;
mod error;
mod locate;
mod parse;
mod rootless;
mod validate;

#[cfg(test)]
mod tests;

use std::path::Path;

use oci_spec::runtime::{Process, Spec};

pub use caps::{capability_name, capability_number, capability_to_number, CAPABILITIES, LAST_CAPABILITY};
pub use default::{default_spec, DEFAULT_SPEC_JSON};
pub use error::SpecError;
pub use rootless::to_rootless;
pub use validate::{
    id_range_problem, parse_id_list, policy_name, validate_with_warnings, CPU_LIMIT, MAX_ID, NODE_LIMIT,
};

/// A parsed document and the warnings its leniencies produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The spec, after runc-style fixes (unknown capabilities removed, mount destinations
    /// made absolute).
    pub spec: Spec,
    /// Human-readable notes about what was ignored or reinterpreted, each starting with the
    /// JSON path it concerns.
    pub warnings: Vec<String>,
}

/// Reads `<bundle>/config.json`, parses and validates it for `create` on Linux.
pub fn load_bundle(bundle: &Path) -> Result<Loaded, SpecError> {
    let path = bundle.join("config.json");
    // std opens with O_CLOEXEC.
    let bytes = std::fs::read(&path).map_err(|error| SpecError::Io { path, error })?;
    parse(&bytes)
}

/// Parses and validates a `config.json` for `create` on Linux.
pub fn parse(bytes: &[u8]) -> Result<Loaded, SpecError> {
    let mut loaded = parse_with(bytes, true)?;
    normalize_mount_destinations(&mut loaded);
    validate_with_warnings(&loaded.spec, &mut loaded.warnings)?;
    Ok(loaded)
}

/// Parses a `config.json` without platform validation (for the Windows/HCS path, which has
/// its own rules). runc's capability leniency still applies.
pub fn parse_unvalidated(bytes: &[u8]) -> Result<Loaded, SpecError> {
    parse_with(bytes, false)
}

fn parse_with(bytes: &[u8], strict: bool) -> Result<Loaded, SpecError> {
    let mut warnings = Vec::new();
    let mut value = parse::parse_value(bytes)?;
    parse::prepass_spec(&mut value, bytes, strict, &mut warnings)?;
    let spec: Spec = parse::typed(value, bytes, || {
        let mut v = parse::parse_value(bytes)?;
        parse::prepass_spec(&mut v, bytes, strict, &mut Vec::new())?;
        Ok(v)
    })?;
    Ok(Loaded { spec, warnings })
}

/// runc joins a relative destination onto the rootfs, i.e. treats it as relative to `/`.
/// Making that explicit here means the runtime can assume absolute destinations.
fn normalize_mount_destinations(loaded: &mut Loaded) {
    let Some(mounts) = loaded.spec.mounts_mut().as_mut() else {
        return;
    };
    for (i, m) in mounts.iter_mut().enumerate() {
        let dest = m.destination();
        if dest.as_os_str().is_empty() || dest.is_absolute() {
            continue;
        }
        loaded.warnings.push(validate::relative_destination_warning(i, dest));
        let abs = Path::new("/").join(dest);
        m.set_destination(abs);
    }
}

/// Linux platform validation of a spec for `create`. Warnings are discarded; use
/// [`validate_with_warnings`] to see them.
///
/// Rules that depend on which JSON keys were present (major/minor of c/b/u devices) can only
/// be checked by [`parse`]/[`load_bundle`], since the typed struct defaults them to 0.
pub fn validate(spec: &Spec) -> Result<(), SpecError> {
    validate_with_warnings(spec, &mut Vec::new())
}

/// Parses a process document as given to `exec --process FILE`, and validates it for exec.
/// Unknown capabilities are dropped with a warning, as in `config.json`.
pub fn parse_process(bytes: &[u8]) -> Result<(Process, Vec<String>), SpecError> {
    let mut warnings = Vec::new();
    let mut value = parse::parse_value(bytes)?;
    parse::prepass_exec_process(&mut value, bytes, &mut warnings)?;
    let process: Process = parse::typed(value, bytes, || {
        let mut v = parse::parse_value(bytes)?;
        parse::prepass_exec_process(&mut v, bytes, &mut Vec::new())?;
        Ok(v)
    })?;
    validate::process(&process, "", true, &mut warnings)?;
    Ok((process, warnings))
}

/// Validates a process. With `for_exec`, paths in errors are relative to the process
/// document (`args`, `cwd`) and an empty `cwd` is allowed (the caller then uses the
/// container's); otherwise paths start with `process.` and `cwd` is required.
pub fn validate_process(p: &Process, for_exec: bool) -> Result<(), SpecError> {
    let prefix = if for_exec { "" } else { "process" };
    validate::process(p, prefix, for_exec, &mut Vec::new())
}
