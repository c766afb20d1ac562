//! VM isolation, host side (see docs/vm-isolation.md).
//!
//! A container whose spec carries the annotation `org.berth.isolation=vm` runs inside a
//! lightweight VM: QEMU's microvm booting Debian's cloud kernel and berth's initramfs, its
//! rootfs shared by virtiofsd, and berth's guest agent (`berth-vm-agent`, which runs the
//! container with berth-linux inside the guest) reached over virtio-serial. This crate has
//! the host's part: what to boot and how ([`host`]), the agent protocol ([`proto`]), the
//! per-container supervisor that owns QEMU and virtiofsd ([`supervisor`]), the control
//! socket for execs ([`ctl`]) and the exec stand-in ([`standin`]). berth-linux calls it from
//! `create`/`run`/`exec`/`kill`, so every front (CLI, library, shim) gets VM containers
//! through the same operations.

#![forbid(unsafe_code)]

pub mod ctl;
pub mod host;
pub mod proto;
pub mod standin;
pub mod supervisor;

use oci_spec::runtime::Spec;

/// The annotation that selects the isolation.
pub const ISOLATION_ANNOTATION: &str = "org.berth.isolation";
/// Its value for a VM.
pub const ISOLATION_VM: &str = "vm";
/// Where the guest mounts the shared rootfs (the guest spec's `root.path`).
pub const GUEST_ROOTFS: &str = "/run/rootfs";

/// Errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Something to install.
    #[error("{0}")]
    Missing(String),
    /// The spec asks for what a VM container cannot do.
    #[error("{0}")]
    Invalid(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// Result.
pub type Result<T> = std::result::Result<T, Error>;

/// Whether the spec asks for VM isolation: `annotations["org.berth.isolation"]` is `vm`;
/// `process` (or no annotation) is the default; any other value is an error naming it.
pub fn requested(spec: &Spec) -> Result<bool> {
    match spec.annotations().as_ref().and_then(|a| a.get(ISOLATION_ANNOTATION)).map(String::as_str) {
        None | Some("process") | Some("") => Ok(false),
        Some(ISOLATION_VM) => Ok(true),
        Some(other) => Err(Error::Invalid(format!(
            "annotations[\"{ISOLATION_ANNOTATION}\"]: {other:?} is not an isolation (\"process\" or \"vm\")"
        ))),
    }
}

/// The spec the guest's berth runs: `root.path` is the guest's mount of the shared rootfs;
/// the rest keeps its meaning (namespaces, mounts, capabilities, seccomp, resources, applied
/// by berth-linux inside the guest). Refused, naming the field: hooks that run during
/// create (they are host programs, and the guest has only its initramfs and the rootfs),
/// namespaces joined by path and bind mounts of host paths (the guest has neither).
/// `poststart`/`poststop` stay on the host, where berth runs them as for any container.
pub fn guest_spec(spec: &Spec, rootfs: &std::path::Path) -> Result<serde_json::Value> {
    let vm = format!("with {ISOLATION_ANNOTATION}={ISOLATION_VM}");
    if let Some(h) = spec.hooks() {
        #[allow(deprecated)]
        let create_time = [
            ("prestart", h.prestart().as_ref().is_some_and(|v| !v.is_empty())),
            ("createRuntime", h.create_runtime().as_ref().is_some_and(|v| !v.is_empty())),
            ("createContainer", h.create_container().as_ref().is_some_and(|v| !v.is_empty())),
            ("startContainer", h.start_container().as_ref().is_some_and(|v| !v.is_empty())),
        ];
        if let Some((name, _)) = create_time.iter().find(|(_, set)| *set) {
            return Err(Error::Invalid(format!(
                "hooks.{name}: not supported {vm} (the container is set up inside the guest, where host programs do not exist)"
            )));
        }
    }
    for ns in spec.linux().as_ref().and_then(|l| l.namespaces().as_ref()).into_iter().flatten() {
        if ns.path().is_some() {
            return Err(Error::Invalid(format!(
                "linux.namespaces: joining the {:?} namespace of a host process is not possible {vm}",
                ns.typ()
            )));
        }
    }
    for (i, m) in spec.mounts().as_ref().into_iter().flatten().enumerate() {
        let bind = m.typ().as_deref() == Some("bind")
            || m.options().as_ref().is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"));
        let inside = m.source().as_ref().is_some_and(|s| s.starts_with(rootfs));
        if bind && !inside {
            return Err(Error::Invalid(format!(
                "mounts[{i}] ({}): a bind mount of a host path is not possible {vm} (only the rootfs is shared with the guest)",
                m.destination().display()
            )));
        }
    }
    let mut v = serde_json::to_value(spec).map_err(|e| Error::Other(e.to_string()))?;
    v["root"]["path"] = serde_json::Value::String(GUEST_ROOTFS.into());
    if let Some(o) = v.as_object_mut() {
        o.remove("hooks");
    }
    // Inside the guest the container is a process-isolated one (else the guest's berth would
    // try to start a VM of its own).
    if let Some(a) = v.get_mut("annotations").and_then(|a| a.as_object_mut()) {
        a.remove(ISOLATION_ANNOTATION);
    }
    // Host paths inside the rootfs are guest paths under the guest's mount of it.
    if let Some(mounts) = v.get_mut("mounts").and_then(|m| m.as_array_mut()) {
        for m in mounts {
            if let Some(src) = m.get("source").and_then(|s| s.as_str()).map(std::path::PathBuf::from) {
                if let Ok(rel) = src.strip_prefix(rootfs) {
                    m["source"] = serde_json::Value::String(format!("{GUEST_ROOTFS}/{}", rel.display()));
                }
            }
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn annotation_selects_and_bad_values_name_it() {
        assert!(!requested(&spec(r#"{"ociVersion":"1.0.2"}"#)).unwrap());
        assert!(requested(&spec(r#"{"ociVersion":"1.0.2","annotations":{"org.berth.isolation":"vm"}}"#)).unwrap());
        let e = requested(&spec(r#"{"ociVersion":"1.0.2","annotations":{"org.berth.isolation":"hyperv"}}"#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("annotations[\"org.berth.isolation\"]") && e.contains("hyperv"), "{e}");
    }

    #[test]
    fn guest_spec_rewrites_the_root_and_refuses_host_only_fields() {
        let root = std::path::Path::new("/b/rootfs");
        let s = spec(
            r#"{"ociVersion":"1.0.2","root":{"path":"/b/rootfs"},"mounts":[{"destination":"/data","type":"bind","source":"/b/rootfs/srv","options":["rbind"]}],"hooks":{"poststop":[{"path":"/bin/true"}]}}"#,
        );
        let g = guest_spec(&s, root).unwrap();
        assert_eq!(g["root"]["path"], GUEST_ROOTFS);
        assert_eq!(g["mounts"][0]["source"], "/run/rootfs/srv");
        assert!(g.get("hooks").is_none());
        let s = spec(
            r#"{"ociVersion":"1.0.2","root":{"path":"/b/rootfs"},"annotations":{"org.berth.isolation":"vm","a":"b"}}"#,
        );
        let g = guest_spec(&s, root).unwrap();
        assert_eq!(g["annotations"], serde_json::json!({"a":"b"}));
        let s = spec(
            r#"{"ociVersion":"1.0.2","root":{"path":"/b/rootfs"},"mounts":[{"destination":"/data","type":"bind","source":"/srv","options":["rbind"]}]}"#,
        );
        let e = guest_spec(&s, root).unwrap_err().to_string();
        assert!(e.starts_with("mounts[0] (/data)"), "{e}");
        let s = spec(
            r#"{"ociVersion":"1.0.2","root":{"path":"/b/rootfs"},"hooks":{"createRuntime":[{"path":"/bin/true"}]}}"#,
        );
        assert!(guest_spec(&s, root).unwrap_err().to_string().starts_with("hooks.createRuntime"));
        let s = spec(
            r#"{"ociVersion":"1.0.2","root":{"path":"/b/rootfs"},"linux":{"namespaces":[{"type":"network","path":"/proc/1/ns/net"}]}}"#,
        );
        assert!(guest_spec(&s, root).unwrap_err().to_string().starts_with("linux.namespaces"));
    }
}
