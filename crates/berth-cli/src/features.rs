//! `berth features`: the features document of runtime-spec (runc 1.1's `features` shape),
//! listing what this build supports. The content is decided at compile time and says nothing
//! about the host (runtime-spec's rule): every list comes from the code that parses the
//! field, so it cannot claim more than berth does.

use serde_json::{json, Value};

/// The hooks berth runs, in the order of the lifecycle.
const HOOKS: &[&str] = &["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"];

/// Namespace types berth creates or joins (`linux.namespaces[].type`), sorted.
const NAMESPACES: &[&str] = &["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"];

/// Whether this build applies `process.apparmorProfile` / `process.selinuxLabel`: it does,
/// where the host has the LSM, and refuses them as runc 1.1 does where it has not
/// (berth-linux `lsm.rs`). As in runc, the answer is about the build, not the host.
const APPARMOR: bool = true;
const SELINUX: bool = true;

/// The document, pretty-printed with four spaces and a final newline (as runc prints it).
pub fn document() -> String {
    let mut annotations = serde_json::Map::new();
    annotations.insert("io.berth.version".into(), env!("CARGO_PKG_VERSION").into());
    annotations.insert("io.berth.commit".into(), env!("BERTH_COMMIT").into());
    annotations.insert("io.berth.checkpoint.enabled".into(), "false".into());
    if let Some(v) = berth_seccomp::libseccomp_version() {
        annotations.insert("io.github.seccomp.libseccomp.version".into(), v.into());
    }
    let doc = json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": berth_core::OCI_VERSION,
        "hooks": HOOKS,
        "mountOptions": berth_linux::mountopts::KNOWN,
        "linux": {
            "namespaces": NAMESPACES,
            "capabilities": &berth_spec::CAPABILITIES[..],
            // cgroupfs only: --systemd-cgroup is refused.
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {
                "enabled": true,
                "actions": berth_seccomp::KNOWN_ACTIONS,
                "operators": berth_seccomp::KNOWN_OPERATORS,
                "archs": berth_seccomp::KNOWN_ARCHS,
            },
            "apparmor": {"enabled": APPARMOR},
            "selinux": {"enabled": SELINUX},
        },
        "annotations": Value::Object(annotations),
    });
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    serde::Serialize::serialize(&doc, &mut ser).unwrap_or_default();
    String::from_utf8_lossy(&out).into_owned() + "\n"
}
