//! Runtime options: what containerd writes to the `start` action's stdin.
//!
//! containerd 1.6 marshals the task's options (or, without any, the container's runtime
//! options) as a protobuf `Any` and writes it to `start`'s stdin; nothing at all when there
//! are none. What arrives depends on the client:
//!
//! * `runtimeoptions.v1.Options{type_url, config_path}`: what CRI makes of a non-runc
//!   runtime's `options` table (its `TypeUrl` and `ConfigPath` keys; CRI drops any other key
//!   without a word), and what `ctr run --runtime-config-path FILE` sends. berth reads its
//!   settings from the TOML file `config_path` names ([`Settings`]); `type_url` must be empty
//!   or [`BERTH_OPTIONS_TYPE`].
//! * `containerd.runc.v1.Options` (a Go client's runc options) and
//!   `containerd.linux.runc.CreateOptions` (`ctr run --no-pivot`): accepted only when every
//!   field has its default value, since berth's shim honours none of them.
//!
//! Anything else fails `start` with an error naming the type or the field, as containerd's
//! runc shim fails on a type it cannot decode: an option that is silently ignored is a
//! setting the user believes in and does not have.

use std::path::Path;

use containerd_shim_protos::protobuf::rt::WireType;
use containerd_shim_protos::protobuf::CodedInputStream;

use crate::error::{Error, Result};

/// The `TypeUrl` to give berth's options in containerd's configuration (optional).
pub const BERTH_OPTIONS_TYPE: &str = "io.containerd.berth.v1.Options";

/// Which containers share one shim process (one failure domain).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Grouping {
    /// The containers of one pod (CRI's sandbox) share a shim; any other container has one of
    /// its own.
    #[default]
    Pod,
    /// As `Pod`, and every container outside a pod shares one shim per containerd namespace.
    Namespace,
}

/// berth's shim settings (the TOML file `config_path` names).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Settings {
    /// `group`: `"pod"` (the default) or `"namespace"`.
    pub grouping: Grouping,
    /// `isolation = "vm"`: every container of this runtime runs in a VM, as with the spec
    /// annotation `org.berth.isolation=vm` (docs/vm-isolation.md); `"process"` (the default)
    /// leaves the choice to the annotation.
    pub vm: bool,
}

/// The outcome of reading the options: the settings, and what should be logged about them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The settings in force.
    pub settings: Settings,
    /// Warnings for containerd's log (the start action's stdout is the address).
    pub warnings: Vec<String>,
}

enum Field {
    Varint(u64),
    Bytes(Vec<u8>),
    Fixed,
}

impl Field {
    fn is_default(&self) -> bool {
        match self {
            Field::Varint(v) => *v == 0,
            Field::Bytes(b) => b.is_empty(),
            Field::Fixed => false,
        }
    }

    fn string(&self, what: &str) -> Result<String> {
        match self {
            Field::Bytes(b) => String::from_utf8(b.clone())
                .map_err(|_| Error::Invalid(format!("runtime options: {what} is not valid UTF-8"))),
            _ => Err(Error::Invalid(format!("runtime options: {what} is not a string"))),
        }
    }
}

/// The fields of a protobuf message, in wire order.
fn fields(what: &str, data: &[u8]) -> Result<Vec<(u32, Field)>> {
    let bad = |e: &dyn std::fmt::Display| Error::Invalid(format!("runtime options: undecodable {what}: {e}"));
    let mut input = CodedInputStream::from_bytes(data);
    let mut out = Vec::new();
    while let Some(tag) = input.read_raw_tag_or_eof().map_err(|e| bad(&e))? {
        let number = tag >> 3;
        let field = match WireType::new(tag & 7) {
            Some(WireType::Varint) => Field::Varint(input.read_raw_varint64().map_err(|e| bad(&e))?),
            Some(WireType::LengthDelimited) => Field::Bytes(input.read_bytes().map_err(|e| bad(&e))?),
            Some(w @ (WireType::Fixed64 | WireType::Fixed32)) => {
                input.skip_field(w).map_err(|e| bad(&e))?;
                Field::Fixed
            }
            _ => return Err(bad(&format!("field {number} has an unsupported wire type {}", tag & 7))),
        };
        out.push((number, field));
    }
    Ok(out)
}

/// The runc option types berth knows by name, with their fields' names (as in containerd's
/// configuration).
const RUNC_OPTIONS: &[(u32, &str)] = &[
    (1, "NoPivotRoot"),
    (2, "NoNewKeyring"),
    (3, "ShimCgroup"),
    (4, "IoUid"),
    (5, "IoGid"),
    (6, "BinaryName"),
    (7, "Root"),
    (8, "CriuPath"),
    (9, "SystemdCgroup"),
    (10, "CriuImagePath"),
    (11, "CriuWorkPath"),
    (12, "TaskApiAddress"),
    (13, "TaskApiVersion"),
];
const RUNC_CREATE_OPTIONS: &[(u32, &str)] = &[
    (1, "NoPivotRoot"),
    (2, "OpenTcp"),
    (3, "ExternalUnixSockets"),
    (4, "Terminal"),
    (5, "FileLocks"),
    (6, "EmptyNamespaces"),
    (7, "CgroupsMode"),
    (8, "NoNewKeyring"),
    (9, "ShimCgroup"),
    (10, "IoUid"),
    (11, "IoGid"),
    (12, "CriuWorkPath"),
    (13, "CriuImagePath"),
];

/// Reads the runtime options from `start`'s stdin (`data`; empty: none were given).
pub fn parse(data: &[u8]) -> Result<Parsed> {
    if data.is_empty() {
        return Ok(Parsed::default());
    }
    let mut type_url = String::new();
    let mut value = Vec::new();
    for (n, f) in fields("google.protobuf.Any", data)? {
        match (n, f) {
            (1, f) => type_url = f.string("the type URL")?,
            (2, Field::Bytes(b)) => value = b,
            (n, _) => return Err(Error::Invalid(format!("runtime options: undecodable Any (field {n})"))),
        }
    }
    // typeurl names a type by its full protobuf name; a `types.googleapis.com/`-style prefix
    // is allowed.
    let name = type_url.rsplit('/').next().unwrap_or_default();
    match name {
        "runtimeoptions.v1.Options" => runtime_options(&value),
        "containerd.runc.v1.Options" => no_fields_set(name, RUNC_OPTIONS, &value),
        "containerd.linux.runc.CreateOptions" => no_fields_set(name, RUNC_CREATE_OPTIONS, &value),
        _ => Err(Error::Unsupported(format!(
            "runtime options of type {type_url:?} are not understood by berth's shim: give the runtime's options as \
             `ConfigPath` (a berth shim TOML file, see docs/containerd.md), with `TypeUrl` empty or \
             {BERTH_OPTIONS_TYPE:?}"
        ))),
    }
}

fn no_fields_set(type_name: &str, names: &[(u32, &str)], value: &[u8]) -> Result<Parsed> {
    for (n, f) in fields(type_name, value)? {
        if f.is_default() {
            continue;
        }
        let name = names.iter().find(|(k, _)| *k == n).map_or_else(|| format!("field {n}"), |(_, s)| s.to_string());
        return Err(Error::Unsupported(format!(
            "runtime option {name} ({type_name}) is not supported by berth's shim (it honours none of runc's options; \
             see docs/containerd.md)"
        )));
    }
    Ok(Parsed::default())
}

fn runtime_options(value: &[u8]) -> Result<Parsed> {
    let mut type_url = String::new();
    let mut config_path = String::new();
    for (n, f) in fields("runtimeoptions.v1.Options", value)? {
        match n {
            1 => type_url = f.string("TypeUrl")?,
            2 => config_path = f.string("ConfigPath")?,
            n if f.is_default() => log::debug!("runtime options: field {n} of runtimeoptions.v1.Options is empty"),
            n => {
                return Err(Error::Unsupported(format!(
                    "runtime options: field {n} of runtimeoptions.v1.Options is not understood by berth's shim"
                )))
            }
        }
    }
    if !type_url.is_empty() && type_url != BERTH_OPTIONS_TYPE {
        return Err(Error::Unsupported(format!(
            "runtime options: TypeUrl {type_url:?} is not berth's: leave it empty or set {BERTH_OPTIONS_TYPE:?}"
        )));
    }
    if config_path.is_empty() {
        // CRI turns a runtime's `options` table into this message and drops every key other
        // than TypeUrl and ConfigPath, so settings written straight into the table arrive as
        // nothing at all.
        return Ok(Parsed {
            settings: Settings::default(),
            warnings: vec![
                "runtime options name no ConfigPath: berth's shim uses its defaults (containerd's CRI drops every \
                 key of a runtime's `options` table but TypeUrl and ConfigPath; put berth's settings in a file and \
                 name it in ConfigPath, see docs/containerd.md)"
                    .into(),
            ],
        });
    }
    let path = Path::new(&config_path);
    if !path.is_absolute() {
        return Err(Error::Invalid(format!("runtime options: ConfigPath {config_path:?} is not an absolute path")));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("runtime options: reading ConfigPath {config_path}"), e))?;
    Ok(Parsed { settings: parse_settings(&config_path, &text)?, warnings: Vec::new() })
}

/// Parses berth's shim settings file (`what` names it in errors).
pub fn parse_settings(what: &str, text: &str) -> Result<Settings> {
    let doc = toml_edit::Document::parse(text)
        .map_err(|e| Error::Invalid(format!("{what}: not valid TOML: {}", e.to_string().trim_end())))?;
    let mut s = Settings::default();
    for (key, item) in doc.as_table().iter() {
        match key {
            "group" => {
                let v = item.as_str().ok_or_else(|| {
                    Error::Invalid(format!("{what}: group must be a string: \"pod\" or \"namespace\""))
                })?;
                s.grouping = match v {
                    "pod" => Grouping::Pod,
                    "namespace" => Grouping::Namespace,
                    other => {
                        return Err(Error::Invalid(format!(
                            "{what}: group = {other:?} is not a grouping berth knows: \"pod\" (one shim per pod, \
                             else per container; the default) or \"namespace\" (containers outside a pod share \
                             one shim per containerd namespace)"
                        )))
                    }
                };
            }
            "isolation" => {
                s.vm = match item.as_str() {
                    Some("vm") => true,
                    Some("process") => false,
                    _ => {
                        return Err(Error::Invalid(format!(
                            "{what}: isolation must be \"process\" (the default) or \"vm\" (docs/vm-isolation.md)"
                        )))
                    }
                };
            }
            other => {
                return Err(Error::Invalid(format!(
                    "{what}: unknown setting {other:?} (berth's shim knows: group, isolation)"
                )))
            }
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A protobuf length-delimited field.
    fn ld(n: u32, b: &[u8]) -> Vec<u8> {
        let mut v = vec![(n << 3 | 2) as u8, b.len() as u8];
        v.extend_from_slice(b);
        v
    }

    fn any(type_url: &str, value: &[u8]) -> Vec<u8> {
        let mut v = ld(1, type_url.as_bytes());
        v.extend(ld(2, value));
        v
    }

    fn runtime_opts(type_url: &str, path: &str) -> Vec<u8> {
        let mut v = Vec::new();
        if !type_url.is_empty() {
            v.extend(ld(1, type_url.as_bytes()));
        }
        if !path.is_empty() {
            v.extend(ld(2, path.as_bytes()));
        }
        any("runtimeoptions.v1.Options", &v)
    }

    fn err(data: &[u8]) -> String {
        parse(data).expect_err("should fail").to_string()
    }

    #[test]
    fn no_options_is_the_default() {
        assert_eq!(parse(&[]).unwrap(), Parsed::default());
        assert_eq!(parse(&[]).unwrap().settings.grouping, Grouping::Pod);
    }

    #[test]
    fn isolation_setting() {
        assert!(parse_settings("f", "isolation = \"vm\"\n").unwrap().vm);
        assert!(!parse_settings("f", "isolation = \"process\"\n").unwrap().vm);
        assert!(!parse_settings("f", "").unwrap().vm);
        let e = parse_settings("f", "isolation = \"hyperv\"\n").unwrap_err().to_string();
        assert!(e.contains("isolation must be"), "{e}");
    }

    #[test]
    fn config_path_selects_grouping() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("berth.toml");
        std::fs::write(&f, "# density\ngroup = \"namespace\" # one shim\n").unwrap();
        let p = f.to_str().unwrap();
        assert_eq!(parse(&runtime_opts("", p)).unwrap().settings.grouping, Grouping::Namespace);
        assert_eq!(parse(&runtime_opts(BERTH_OPTIONS_TYPE, p)).unwrap().settings.grouping, Grouping::Namespace);
        // A prefixed type URL names the same type.
        let mut v = ld(2, p.as_bytes());
        v = any("types.googleapis.com/runtimeoptions.v1.Options", &v);
        assert_eq!(parse(&v).unwrap().settings.grouping, Grouping::Namespace);
        std::fs::write(&f, "group = 'pod'\n").unwrap();
        assert_eq!(parse(&runtime_opts("", p)).unwrap().settings.grouping, Grouping::Pod);
        std::fs::write(&f, "").unwrap();
        assert_eq!(parse(&runtime_opts("", p)).unwrap(), Parsed::default());
    }

    #[test]
    fn bad_settings_are_refused_naming_the_file_and_key() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("berth.toml");
        let p = f.to_str().unwrap();
        for (text, want) in [
            ("grouping = \"namespace\"\n", "unknown setting \"grouping\""),
            ("group = \"everything\"\n", "group = \"everything\" is not a grouping"),
            ("group = true\n", "group must be a string"),
            ("group = \n", "not valid TOML"),
            ("[shim]\ngroup = \"namespace\"\n", "unknown setting \"shim\""),
        ] {
            std::fs::write(&f, text).unwrap();
            let e = err(&runtime_opts("", p));
            assert!(e.contains(p) && e.contains(want), "{text:?}: {e}");
        }
        let e = err(&runtime_opts("", "/nonexistent/berth.toml"));
        assert!(e.contains("ConfigPath /nonexistent/berth.toml"), "{e}");
        let e = err(&runtime_opts("", "relative.toml"));
        assert!(e.contains("not an absolute path"), "{e}");
        let e = err(&runtime_opts("io.containerd.runsc.v1.options", p));
        assert!(e.contains("TypeUrl \"io.containerd.runsc.v1.options\" is not berth's"), "{e}");
    }

    #[test]
    fn an_empty_runtime_options_message_warns() {
        let p = parse(&runtime_opts("", "")).unwrap();
        assert_eq!(p.settings, Settings::default());
        assert_eq!(p.warnings.len(), 1);
        assert!(p.warnings[0].contains("no ConfigPath"), "{:?}", p.warnings);
    }

    #[test]
    fn runc_options_only_when_all_default() {
        assert_eq!(parse(&any("containerd.runc.v1.Options", &[])).unwrap(), Parsed::default());
        // BinaryName = "/usr/bin/runc"
        let e = err(&any("containerd.runc.v1.Options", &ld(6, b"/usr/bin/runc")));
        assert!(e.contains("runtime option BinaryName (containerd.runc.v1.Options) is not supported"), "{e}");
        // SystemdCgroup = true
        let e = err(&any("containerd.runc.v1.Options", &[9 << 3, 1]));
        assert!(e.contains("SystemdCgroup"), "{e}");
        // ctr run --no-pivot: CreateOptions{NoPivotRoot: true}
        let e = err(&any("containerd.linux.runc.CreateOptions", &[1 << 3, 1]));
        assert!(e.contains("runtime option NoPivotRoot (containerd.linux.runc.CreateOptions)"), "{e}");
        // A field berth has no name for: field 40, varint 1 (the tag 320 is a two-byte varint).
        let e = err(&any("containerd.runc.v1.Options", &[0xc0, 0x02, 1]));
        assert!(e.contains("field 40"), "{e}");
    }

    #[test]
    fn unknown_types_and_garbage_are_refused() {
        let e = err(&any("io.containerd.runsc.v1.options", &[]));
        assert!(e.contains("\"io.containerd.runsc.v1.options\" are not understood"), "{e}");
        let e = err(b"\xff\xff\xff");
        assert!(e.contains("undecodable"), "{e}");
        let e = err(&[0x0a, 0x10, b'x']);
        assert!(e.contains("undecodable"), "{e}");
    }
}
