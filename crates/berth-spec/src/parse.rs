//! Bytes → `serde_json::Value` → runc-style leniency fixes → oci-spec types.
//!
//! Why the detour through `Value`: oci-spec's `Capability` enum rejects names it does not know,
//! but runc drops them with a warning, and a bundle written for a newer kernel must still start.
//! Filtering a `Value` is the cheapest place to do that without forking oci-spec's types. The
//! `Value` is parsed once and then moved into the typed structs, so strings are not copied.
//!
//! Error paths are cold and may redo work: a syntax error re-parses with path tracking to say
//! *where* the text broke, and a type error re-runs typed deserialization under
//! serde_path_to_error and then finds the offending value in the original text (`locate.rs`)
//! for a line and column. The hot path pays for neither.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::caps::capability_number;
use crate::error::{field, index, render, segments, Seg, SpecError};
use crate::locate::{line_col, locate};

/// The five capability sets of `process.capabilities`, in JSON spelling.
const CAP_SETS: [&str; 5] = ["bounding", "effective", "inheritable", "permitted", "ambient"];

/// Parses bytes into a `Value`, turning syntax errors into located, path-named errors.
pub(crate) fn parse_value(bytes: &[u8]) -> Result<Value, SpecError> {
    serde_json::from_slice::<Value>(bytes).map_err(|e| syntax_error(bytes, &e))
}

fn syntax_error(bytes: &[u8], e: &serde_json::Error) -> SpecError {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let path = match serde_path_to_error::deserialize::<_, Value>(&mut de) {
        Err(pe) => render(&segments(pe.path())),
        // The value itself parsed: the error is trailing garbage after it.
        Ok(_) => ".".to_string(),
    };
    SpecError::Json { path, message: bare_message(e), line: e.line(), column: e.column() }
}

/// serde_json's message without its " at line L column C" suffix (we print our own).
fn bare_message(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match full.strip_suffix(&suffix) {
        Some(m) => m.to_string(),
        None => full,
    }
}

/// A type error at `segs`, located in `bytes`.
pub(crate) fn type_error(bytes: &[u8], segs: &[Seg], message: String) -> SpecError {
    let (line, column) = line_col(bytes, locate(bytes, segs));
    SpecError::Json { path: render(segs), message, line, column }
}

/// Moves `value` into `T`. On failure, `redo` rebuilds the same `Value` (the original was
/// consumed) so the failure can be repeated under path tracking.
pub(crate) fn typed<T: DeserializeOwned>(
    value: Value,
    bytes: &[u8],
    redo: impl FnOnce() -> Result<Value, SpecError>,
) -> Result<T, SpecError> {
    match serde_json::from_value::<T>(value) {
        Ok(t) => Ok(t),
        Err(first) => {
            let again = redo()?;
            match serde_path_to_error::deserialize::<_, T>(again) {
                Err(pe) => {
                    let segs = segments(pe.path());
                    Err(type_error(bytes, &segs, pe.inner().to_string()))
                }
                // Deserialization is deterministic, so this is unreachable in practice; still
                // report the first failure rather than pretend success.
                Ok(_) => Err(type_error(bytes, &[], first.to_string())),
            }
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "map",
    }
}

/// Leniency fixes on a whole `config.json`. `strict` adds the checks that need to see which
/// keys were present (the typed structs default missing numbers to 0).
pub(crate) fn prepass_spec(
    v: &mut Value,
    bytes: &[u8],
    strict: bool,
    warnings: &mut Vec<String>,
) -> Result<(), SpecError> {
    let Value::Object(root) = v else {
        return Err(type_error(bytes, &[], format!("invalid type: {}, expected a JSON object", kind(v))));
    };
    if let Some(Value::Object(p)) = root.get_mut("process") {
        prepass_process(p, &[Seg::Key("process".into())], bytes, warnings)?;
    }
    if let Some(Value::Object(linux)) = root.get_mut("linux") {
        drop_empty_seccomp(linux, warnings);
        intel_rdt_names(linux);
        if strict {
            device_numbers_present(linux)?;
        }
    }
    Ok(())
}

/// Leniency fixes on a bare process document (`exec --process`).
pub(crate) fn prepass_exec_process(v: &mut Value, bytes: &[u8], warnings: &mut Vec<String>) -> Result<(), SpecError> {
    match v {
        Value::Object(p) => prepass_process(p, &[], bytes, warnings),
        other => Err(type_error(bytes, &[], format!("invalid type: {}, expected a JSON object", kind(other)))),
    }
}

fn prepass_process(
    p: &mut Map<String, Value>,
    at: &[Seg],
    bytes: &[u8],
    warnings: &mut Vec<String>,
) -> Result<(), SpecError> {
    // Go's encoding/json leaves an absent `user` as uid 0/gid 0 and an absent `cwd` as "";
    // oci-spec makes both required. Fill them so the validator, not serde, decides.
    if matches!(p.get("user"), None | Some(Value::Null)) {
        p.insert("user".into(), Value::Object(Map::new()));
    }
    if matches!(p.get("cwd"), None | Some(Value::Null)) {
        p.insert("cwd".into(), Value::String(String::new()));
    }
    scheduler_flags(p, at)?;
    exec_cpu_affinity(p);
    io_priority_class(p, at)?;
    let Some(Value::Object(caps)) = p.get_mut("capabilities") else {
        return Ok(());
    };
    for set in CAP_SETS {
        let Some(Value::Array(list)) = caps.get_mut(set) else {
            continue;
        };
        // Hot path: every name known, nothing to do.
        if list.iter().all(|c| c.as_str().and_then(capability_number).is_some()) {
            continue;
        }
        let mut segs = at.to_vec();
        segs.push(Seg::Key("capabilities".into()));
        segs.push(Seg::Key(set.into()));
        if let Some(i) = list.iter().position(|c| !c.is_string()) {
            segs.push(Seg::Index(i));
            let msg = format!("invalid type: {}, expected a capability name", list.get(i).map_or("value", kind));
            return Err(type_error(bytes, &segs, msg));
        }
        let where_ = render(&segs);
        list.retain(|c| match c.as_str() {
            Some(name) if capability_number(name).is_none() => {
                warnings.push(format!("unknown capability {name:?} in {where_}: ignored"));
                false
            }
            _ => true,
        });
    }
    Ok(())
}

/// The runtime spec's `process.scheduler.flags` names, and the spelling oci-spec 0.10's enum
/// wants for each (it misspells two of them, so the spec's own names would not parse).
const SCHED_FLAGS: [(&str, &str); 7] = [
    ("SCHED_FLAG_RESET_ON_FORK", "SCHED_RESET_ON_FORK"),
    ("SCHED_FLAG_RECLAIM", "SCHED_FLAG_RECLAIM"),
    ("SCHED_FLAG_DL_OVERRUN", "SCHED_FLAG_D_L_OVERRUN"),
    ("SCHED_FLAG_KEEP_POLICY", "SCHED_FLAG_KEEP_POLICY"),
    ("SCHED_FLAG_KEEP_PARAMS", "SCHED_FLAG_KEEP_PARAMS"),
    ("SCHED_FLAG_UTIL_CLAMP_MIN", "SCHED_FLAG_UTIL_CLAMP_MIN"),
    ("SCHED_FLAG_UTIL_CLAMP_MAX", "SCHED_FLAG_UTIL_CLAMP_MAX"),
];

/// Rewrites `scheduler.flags` from the runtime spec's names to oci-spec's. Only the spec's
/// names are accepted (as runc does), not oci-spec's misspellings.
fn scheduler_flags(p: &mut Map<String, Value>, at: &[Seg]) -> Result<(), SpecError> {
    let Some(Value::Array(flags)) = p.get_mut("scheduler").and_then(|s| s.get_mut("flags")) else {
        return Ok(());
    };
    for (i, f) in flags.iter_mut().enumerate() {
        let Value::String(name) = f else { continue };
        match SCHED_FLAGS.iter().find(|(spec, _)| spec == name) {
            Some((_, ours)) => *name = (*ours).to_string(),
            None => {
                let mut segs = at.to_vec();
                segs.extend([Seg::Key("scheduler".into()), Seg::Key("flags".into()), Seg::Index(i)]);
                let known: Vec<&str> = SCHED_FLAGS.iter().map(|(spec, _)| *spec).collect();
                return Err(SpecError::invalid(
                    render(&segs),
                    format!("unknown flag {name:?} (the runtime spec defines {})", known.join(", ")),
                ));
            }
        }
    }
    Ok(())
}

/// An empty `execCPUAffinity.initial` or `.final` means "not set" (runtime spec: "If omitted
/// or empty"); oci-spec's format check would reject the empty string.
fn exec_cpu_affinity(p: &mut Map<String, Value>) {
    if let Some(Value::Object(a)) = p.get_mut("execCPUAffinity") {
        a.retain(|k, v| !((k == "initial" || k == "final") && v.as_str() == Some("")));
    }
}

/// `ioPriority.class` is REQUIRED; oci-spec would quietly default a missing one to
/// IOPRIO_CLASS_BE.
fn io_priority_class(p: &Map<String, Value>, at: &[Seg]) -> Result<(), SpecError> {
    if let Some(Value::Object(io)) = p.get("ioPriority") {
        if matches!(io.get("class"), None | Some(Value::Null)) {
            let mut segs = at.to_vec();
            segs.extend([Seg::Key("ioPriority".into()), Seg::Key("class".into())]);
            return Err(SpecError::invalid(
                render(&segs),
                "required (IOPRIO_CLASS_RT, IOPRIO_CLASS_BE or IOPRIO_CLASS_IDLE)",
            ));
        }
    }
    Ok(())
}

/// The runtime spec spells them `enableCMT` and `enableMBM`; oci-spec 0.10 reads
/// `enableCmt` and `enableMbm`, and would silently drop the spec's spelling.
fn intel_rdt_names(linux: &mut Map<String, Value>) {
    if let Some(Value::Object(rdt)) = linux.get_mut("intelRdt") {
        for (spec, ours) in [("enableCMT", "enableCmt"), ("enableMBM", "enableMbm")] {
            if let Some(v) = rdt.remove(spec) {
                rdt.insert(ours.to_string(), v);
            }
        }
    }
}

/// runc treats `"seccomp": {}` (no default action, no rules) as "no seccomp"; oci-spec would
/// reject the missing `defaultAction`.
fn drop_empty_seccomp(linux: &mut Map<String, Value>, warnings: &mut Vec<String>) {
    let empty = match linux.get("seccomp") {
        Some(Value::Object(sc)) => {
            matches!(sc.get("defaultAction"), None | Some(Value::Null))
                && match sc.get("syscalls") {
                    None | Some(Value::Null) => true,
                    Some(Value::Array(a)) => a.is_empty(),
                    Some(_) => false,
                }
        }
        _ => false,
    };
    if empty {
        linux.remove("seccomp");
        warnings.push("linux.seccomp: no defaultAction and no syscalls: seccomp is disabled (as in runc)".into());
    }
}

/// The typed `LinuxDevice` defaults a missing major/minor to 0, which would silently create
/// the wrong node; the spec requires both for c, b and u devices.
fn device_numbers_present(linux: &Map<String, Value>) -> Result<(), SpecError> {
    let Some(Value::Array(devices)) = linux.get("devices") else {
        return Ok(());
    };
    for (i, d) in devices.iter().enumerate() {
        let Value::Object(d) = d else { continue };
        let Some(t @ ("c" | "b" | "u")) = d.get("type").and_then(Value::as_str) else {
            continue;
        };
        for key in ["major", "minor"] {
            if matches!(d.get(key), None | Some(Value::Null)) {
                return Err(SpecError::invalid(
                    field(&index("linux.devices", i), key),
                    format!("required for device type {t:?}"),
                ));
            }
        }
    }
    Ok(())
}
