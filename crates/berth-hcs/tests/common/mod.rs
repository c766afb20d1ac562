//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io;
use std::sync::Mutex;

use berth_hcs::guid::{Guid, NameToGuid, NameToGuidError, StandInNameToGuid};
use berth_hcs::host::HostInfo;
use oci_spec::runtime::Spec;
use serde_json::Value;

pub mod standin;

/// A host whose facts are a table: CPU count, Windows build, and the paths that exist
/// (anything else is "not found" unless listed in `errors`).
pub struct FakeHost {
    pub cpus: u64,
    pub build: Option<u32>,
    pub existing: Vec<String>,
    pub errors: HashMap<String, io::ErrorKind>,
    pub stats: Mutex<Vec<String>>,
}

impl FakeHost {
    pub fn new() -> Self {
        FakeHost {
            cpus: 4,
            build: Some(17763),
            existing: Vec::new(),
            errors: HashMap::new(),
            stats: Mutex::new(Vec::new()),
        }
    }
    pub fn with(mut self, path: &str) -> Self {
        self.existing.push(path.to_string());
        self
    }
}

impl HostInfo for FakeHost {
    fn num_cpu(&self) -> u64 {
        self.cpus
    }
    fn os_build(&self) -> Option<u32> {
        self.build
    }
    fn stat(&self, path: &str) -> io::Result<()> {
        self.stats.lock().unwrap().push(path.to_string());
        if self.existing.iter().any(|p| p == path) {
            return Ok(());
        }
        Err(io::Error::from(*self.errors.get(path).unwrap_or(&io::ErrorKind::NotFound)))
    }
}

/// The test NameToGuid: knows the pair of the original's Create comment (and whatever the
/// stand-in knows), records every name asked for, and fails for the name "fail".
#[derive(Default)]
pub struct TestNameToGuid {
    pub asked: Mutex<Vec<String>>,
}

pub const COMMENT_LAYER: &str = "65bf96e5760a09edf1790cb229e2dfb2dbd0fcdc0bf7451bae099106bfbfea0c";
pub const COMMENT_LAYER_GUID: &str = "18955d65-d45a-557b-bf1c-49d6dfefc526";

impl NameToGuid for TestNameToGuid {
    fn name_to_guid(&self, name: &str) -> Result<Guid, NameToGuidError> {
        self.asked.lock().unwrap().push(name.to_string());
        if name == "fail" {
            return Err(NameToGuidError { name: name.into(), reason: "injected failure".into() });
        }
        if name == COMMENT_LAYER {
            // Built from the Windows memory layout, so the text form exercises the swap.
            return Ok(Guid([
                0x65, 0x5d, 0x95, 0x18, 0x5a, 0xd4, 0x7b, 0x55, 0xbf, 0x1c, 0x49, 0xd6, 0xdf, 0xef, 0xc5, 0x26,
            ]));
        }
        StandInNameToGuid.name_to_guid(name)
    }
}

/// A spec from JSON, through the same parser `berth hcs-config` uses.
pub fn spec(v: Value) -> Spec {
    berth_hcs::parse_spec(v.to_string().as_bytes()).expect("test spec must parse").spec
}

/// Sets `path` (a `/`-separated list of object keys) in `v` to `value`, creating objects.
pub fn set(v: &mut Value, path: &str, value: Value) {
    let mut cur = v;
    let parts: Vec<&str> = path.split('/').collect();
    for (i, p) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            cur.as_object_mut().unwrap().insert(p.to_string(), value);
            return;
        }
        cur = cur.as_object_mut().unwrap().entry(p.to_string()).or_insert_with(|| Value::Object(Default::default()));
    }
}

/// Removes `path` from `v`.
pub fn remove(v: &mut Value, path: &str) {
    let parts: Vec<&str> = path.split('/').collect();
    let mut cur = v;
    for p in &parts[..parts.len() - 1] {
        cur = cur.get_mut(*p).unwrap();
    }
    cur.as_object_mut().unwrap().remove(*parts.last().unwrap());
}

pub const VOLUME: &str = r"\\?\Volume{66d1ef4c-7a00-11e6-8948-00155ddbef9d}\";
pub const BASE: &str = r"C:\control\windowsfilter\base";
pub const SCRATCH: &str = r"C:\control\windowsfilter\scratch";

/// A minimal valid process-isolated Windows spec.
pub fn wcow() -> Value {
    serde_json::json!({
        "ociVersion": "1.0.1",
        "hostname": "host",
        "root": {"path": VOLUME},
        "process": {"cwd": "C:\\", "args": ["cmd"], "user": {"uid": 0, "gid": 0}},
        "windows": {"layerFolders": [BASE, SCRATCH]}
    })
}

/// A minimal valid Linux-on-Windows spec.
pub fn lcow() -> Value {
    serde_json::json!({
        "ociVersion": "1.0.1",
        "hostname": "host",
        "root": {"path": "rootfs"},
        "process": {"cwd": "/", "args": ["sh", "-c", "echo hi"], "user": {"uid": 0, "gid": 0}},
        "linux": {},
        "windows": {"layerFolders": [BASE, SCRATCH]}
    })
}
