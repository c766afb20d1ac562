//! Parsing `linux.seccomp` from raw JSON with errors that name the field.
//!
//! oci-spec's typed deserializer stops at the first unknown enum value with a message such as
//! "unknown variant `SCMP_ARCH_FOO`", without saying where. The spec loader should hand the
//! raw `linux.seccomp` object to [`from_json`] instead, which walks it first and reports
//! `linux.seccomp.architectures[1]: unknown architecture "SCMP_ARCH_FOO"`.

use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::SeccompError;

const FIELD: &str = "linux.seccomp";

/// Parses the JSON text of a `linux.seccomp` object.
pub fn from_json_slice(json: &[u8]) -> Result<LinuxSeccomp, SeccompError> {
    let v: Value =
        serde_json::from_slice(json).map_err(|e| SeccompError::invalid(FIELD, format!("invalid JSON: {e}")))?;
    from_json(&v)
}

/// Converts a `linux.seccomp` JSON value, checking every enum and number first.
pub fn from_json(v: &Value) -> Result<LinuxSeccomp, SeccompError> {
    let obj = v.as_object().ok_or_else(|| SeccompError::invalid(FIELD, "expected an object"))?;

    match obj.get("defaultAction") {
        None => return Err(SeccompError::invalid(format!("{FIELD}.defaultAction"), "required")),
        Some(a) => {
            enumerated::<LinuxSeccompAction>(a, &format!("{FIELD}.defaultAction"), "action")?;
        }
    }
    optional_u32(obj.get("defaultErrnoRet"), &format!("{FIELD}.defaultErrnoRet"))?;
    for (i, a) in array(obj.get("architectures"), &format!("{FIELD}.architectures"))? {
        enumerated::<Arch>(a, &format!("{FIELD}.architectures[{i}]"), "architecture")?;
    }
    for (i, f) in array(obj.get("flags"), &format!("{FIELD}.flags"))? {
        enumerated::<LinuxSeccompFilterFlag>(f, &format!("{FIELD}.flags[{i}]"), "flag")?;
    }
    for key in ["listenerPath", "listenerMetadata"] {
        if let Some(s) = obj.get(key) {
            if !s.is_string() {
                return Err(SeccompError::invalid(format!("{FIELD}.{key}"), "expected a string"));
            }
        }
    }
    for (i, call) in array(obj.get("syscalls"), &format!("{FIELD}.syscalls"))? {
        let field = format!("{FIELD}.syscalls[{i}]");
        let call = call.as_object().ok_or_else(|| SeccompError::invalid(&field, "expected an object"))?;
        let names = call.get("names").ok_or_else(|| SeccompError::invalid(format!("{field}.names"), "required"))?;
        for (j, n) in array(Some(names), &format!("{field}.names"))? {
            if !n.is_string() {
                return Err(SeccompError::invalid(format!("{field}.names[{j}]"), "expected a string"));
            }
        }
        let action = call.get("action").ok_or_else(|| SeccompError::invalid(format!("{field}.action"), "required"))?;
        enumerated::<LinuxSeccompAction>(action, &format!("{field}.action"), "action")?;
        optional_u32(call.get("errnoRet"), &format!("{field}.errnoRet"))?;
        for (k, arg) in array(call.get("args"), &format!("{field}.args"))? {
            let af = format!("{field}.args[{k}]");
            let arg = arg.as_object().ok_or_else(|| SeccompError::invalid(&af, "expected an object"))?;
            for (key, required) in [("index", true), ("value", true), ("valueTwo", false)] {
                match arg.get(key) {
                    None if required => return Err(SeccompError::invalid(format!("{af}.{key}"), "required")),
                    None => {}
                    Some(n) if n.is_u64() => {}
                    Some(n) => {
                        return Err(SeccompError::invalid(
                            format!("{af}.{key}"),
                            format!("expected an unsigned 64-bit integer, got {n}"),
                        ))
                    }
                }
            }
            let op = arg.get("op").ok_or_else(|| SeccompError::invalid(format!("{af}.op"), "required"))?;
            enumerated::<LinuxSeccompOperator>(op, &format!("{af}.op"), "operator")?;
        }
    }

    serde_json::from_value(v.clone()).map_err(|e| SeccompError::invalid(FIELD, e.to_string()))
}

fn array<'a>(v: Option<&'a Value>, field: &str) -> Result<impl Iterator<Item = (usize, &'a Value)>, SeccompError> {
    match v {
        None | Some(Value::Null) => Ok([].iter().enumerate()),
        Some(Value::Array(a)) => Ok(a.iter().enumerate()),
        Some(_) => Err(SeccompError::invalid(field, "expected an array")),
    }
}

fn enumerated<T: DeserializeOwned>(v: &Value, field: &str, kind: &str) -> Result<T, SeccompError> {
    let Some(s) = v.as_str() else {
        return Err(SeccompError::invalid(field, "expected a string"));
    };
    serde_json::from_value(v.clone()).map_err(|_| SeccompError::invalid(field, format!("unknown {kind} {s:?}")))
}

fn optional_u32(v: Option<&Value>, field: &str) -> Result<(), SeccompError> {
    match v {
        None | Some(Value::Null) => Ok(()),
        Some(n) if n.as_u64().is_some_and(|n| u32::try_from(n).is_ok()) => Ok(()),
        Some(n) => Err(SeccompError::invalid(field, format!("expected an unsigned 32-bit integer, got {n}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: Value) -> String {
        from_json(&v).unwrap_err().to_string()
    }

    #[test]
    fn accepts_a_full_profile() {
        let s = from_json(&json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                          "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]
        }))
        .unwrap();
        assert_eq!(s.default_errno_ret(), Some(38));
        assert_eq!(s.architectures().as_ref().map(Vec::len), Some(2));
    }

    #[test]
    fn field_named_errors() {
        assert_eq!(
            err(json!({"defaultAction": "SCMP_ACT_ALLOW",
                       "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_FOO"]})),
            r#"linux.seccomp.architectures[1]: unknown architecture "SCMP_ARCH_FOO""#
        );
        assert_eq!(
            err(json!({"defaultAction": "SCMP_ACT_NOPE"})),
            r#"linux.seccomp.defaultAction: unknown action "SCMP_ACT_NOPE""#
        );
        assert_eq!(err(json!({})), "linux.seccomp.defaultAction: required");
        assert_eq!(
            err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["a"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["b"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_LIKE"}]}]})),
            r#"linux.seccomp.syscalls[1].args[0].op: unknown operator "SCMP_CMP_LIKE""#
        );
        assert_eq!(
            err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["a", 7], "action": "SCMP_ACT_ERRNO"}]})),
            "linux.seccomp.syscalls[0].names[1]: expected a string"
        );
        assert_eq!(
            err(json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_X"]})),
            r#"linux.seccomp.flags[0]: unknown flag "SECCOMP_FILTER_FLAG_X""#
        );
        assert_eq!(
            err(json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": -1})),
            "linux.seccomp.defaultErrnoRet: expected an unsigned 32-bit integer, got -1"
        );
        assert_eq!(
            err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["a"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 0, "value": -5, "op": "SCMP_CMP_EQ"}]}]})),
            "linux.seccomp.syscalls[0].args[0].value: expected an unsigned 64-bit integer, got -5"
        );
        assert_eq!(err(json!([1])), "linux.seccomp: expected an object");
        assert!(from_json_slice(b"{nope").unwrap_err().to_string().starts_with("linux.seccomp: invalid JSON"));
    }
}
