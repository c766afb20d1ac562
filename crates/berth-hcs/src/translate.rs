//! OCI spec -> HCS documents: the rules of the original's `createWindows`, `createLinux`,
//! `Start` and `Exec`, as pure functions.
//!
//! Every rule and every error of the original is kept, in the original's order (so the first
//! failing rule is the one reported), with these upstream fixes applied:
//!
//! * `Root.Path` is really matched against the original's volume-GUID pattern (the original
//!   ignored the match result, so the check never fired);
//! * a `Root.Path` that is empty/short no longer panics (it fails the pattern);
//! * named pipe mounts need build 16299 (RS3) rather than the pre-release 16210;
//! * the Windows command line is `process.commandLine` when given, else every argument escaped
//!   with the Windows rules and joined by spaces (moby 20833b06a0); the original only joined;
//! * a missing `process` or `windows` section is an error instead of a nil dereference.
//!
//! Errors carry the original's messages; their class ([`TranslateError::kind`]) is
//! invalid-parameter for a bad spec, not-implemented for what this host or runtime cannot do,
//! and system for failures of the host itself.

use std::collections::BTreeMap;
use std::path::Path;

use berth_core::{Error, ErrorKind};
use berth_hcs_schema::{
    to_go_json, to_go_json_raw, ContainerConfig, HvRuntime, Layer, MappedDir, MappedPipe, ProcessConfig,
    BOOT_SOURCE_VHD, CONTAINER_TYPE_LINUX, DEFAULT_OWNER, SYSTEM_TYPE_CONTAINER, SYSTEM_TYPE_CONTAINER_LCOW,
};
use oci_spec::runtime::{Mount, Process, Spec, Windows};

use crate::cmdline::escape_args;
use crate::guid::NameToGuid;
use crate::host::HostInfo;
use crate::lcow::{ActualMode, LcowConfig};
use crate::winpath;

/// The Windows build that shipped named pipe mounts (RS3, 1709).
pub const NAMED_PIPE_MIN_BUILD: u32 = 16299;
/// Destination prefix that makes a mount a named pipe mapping.
pub const PIPE_PREFIX: &str = r"\\.\pipe\";
/// The pseudo mount option the engine adds to LCOW bind mounts: where in the utility VM the
/// host folder is mapped.
pub const UVM_PATH_OPTION: &str = "uvmpath";

/// A translation failure. Messages are the original's.
#[derive(Debug, thiserror::Error)]
pub enum TranslateError {
    /// The `windows` section is missing.
    #[error("{0}")]
    MissingWindows(&'static str),
    /// The `process` section is missing (the original dereferenced nil).
    #[error("OCI spec is invalid - Process must be set")]
    MissingProcess,
    /// Too few `windows.layerFolders`.
    #[error("OCI spec is invalid - at least {0} LayerFolders must be supplied to the runtime")]
    TooFewLayerFolders(&'static str),
    /// `windows.hyperv.utilityVMPath` is set.
    #[error("runtime does not support an explicit utility VM path for Hyper-V containers")]
    ExplicitUtilityVmPath,
    /// No layer folder has a `UtilityVM` folder.
    #[error("utility VM image could not be found")]
    UtilityVmNotFound,
    /// Looking for a `UtilityVM` folder failed for another reason than its absence.
    #[error("stat {path}: {source}")]
    Stat {
        /// The path stat'ed.
        path: String,
        /// The failure.
        source: std::io::Error,
    },
    /// `root.path` is set for a Hyper-V container.
    #[error("OCI spec is invalid - Root.Path must be omitted for a Hyper-V container")]
    RootPathWithHyperV,
    /// `root.path` is not a volume GUID path.
    #[error(r"OCI spec is invalid - Root.Path '{0}' must be a volume GUID path in the format '\\?\Volume{{GUID}}\'")]
    RootPathNotVolumeGuid(String),
    /// `root.readonly` is set.
    #[error("OCI spec is invalid - Root.Readonly must not be set on Windows")]
    RootReadonly,
    /// NameToGuid failed for a layer.
    #[error("layer {folder}: {source}")]
    LayerId {
        /// The layer folder.
        folder: String,
        /// The failure.
        source: crate::guid::NameToGuidError,
    },
    /// A Windows mount has a type.
    #[error("OCI spec is invalid - Mount.Type '{0}' must not be set")]
    MountType(String),
    /// Named pipe mounts on a build that lacks them.
    #[error("named pipe mounts are not supported on this version of Windows")]
    NamedPipesUnsupported,
    /// LCOW without utility VM options.
    #[error("lcow option must be supplied to the runtime")]
    LcowOptionsMissing,
    /// An LCOW bind mount option outside the whitelist.
    #[error("unsupported option {0:?}")]
    UnsupportedMountOption(String),
    /// An LCOW bind mount without `uvmpath=`.
    #[error("no uvmpath for bind mount {0}")]
    NoUvmPath(String),
    /// A path field is not valid UTF-8 (cannot be put in a JSON document).
    #[error("OCI spec is invalid - {0} is not valid UTF-8")]
    NotUtf8(String),
    /// Serializing the OCI spec for the Linux guest failed.
    #[error("marshalling the OCI spec for the utility VM: {0}")]
    Marshal(#[from] serde_json::Error),
}

impl TranslateError {
    /// The error class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            TranslateError::ExplicitUtilityVmPath | TranslateError::NamedPipesUnsupported => ErrorKind::NotImplemented,
            TranslateError::Stat { .. } | TranslateError::LayerId { .. } | TranslateError::Marshal(_) => {
                ErrorKind::System
            }
            _ => ErrorKind::InvalidParameter,
        }
    }
}

impl From<TranslateError> for Error {
    fn from(e: TranslateError) -> Error {
        let kind = e.kind();
        Error::with_source(kind, e.to_string(), e)
    }
}

/// What the translation needs from outside: layer ids and host facts.
#[derive(Clone, Copy)]
pub struct TranslateContext<'a> {
    /// Layer folder name -> GUID.
    pub name_to_guid: &'a dyn NameToGuid,
    /// CPU count, Windows build, file existence.
    pub host: &'a dyn HostInfo,
}

/// The result of translating a container spec.
#[derive(Debug, Clone)]
pub struct ContainerTranslation {
    /// The document for `HcsCreateComputeSystem`.
    pub config: ContainerConfig,
    /// The spec as the container keeps it: for LCOW, bind-mount sources rewritten to their
    /// utility VM paths (this is what goes to the guest in `OCISpecification`).
    pub spec: Spec,
    /// True for a Windows container (the spec has no `linux` section).
    pub is_windows: bool,
    /// Non-fatal adjustments, e.g. a CPU count clamped to the host's.
    pub warnings: Vec<String>,
}

/// True if `spec` describes a Windows container. As in the original, the `linux` section
/// decides: `windows` is present for LCOW too (it carries the layer folders).
pub fn is_windows_spec(spec: &Spec) -> bool {
    spec.linux().is_none()
}

/// Translates a container spec (the original's `Create`: `createWindows` or `createLinux`).
///
/// `credential_spec` is the string form of `windows.credentialSpec` (see
/// [`parse_spec`]); `lcow` the validated utility VM options (required for LCOW).
pub fn translate_container(
    id: &str,
    spec: &Spec,
    credential_spec: Option<&str>,
    lcow: Option<&LcowConfig>,
    ctx: TranslateContext<'_>,
) -> Result<ContainerTranslation, TranslateError> {
    if is_windows_spec(spec) {
        create_windows(id, spec, credential_spec, ctx)
    } else {
        create_linux(id, spec, lcow, ctx)
    }
}

fn utf8<'p>(p: &'p Path, field: &str) -> Result<&'p str, TranslateError> {
    p.to_str().ok_or_else(|| TranslateError::NotUtf8(field.to_string()))
}

fn layer_folders(w: &Windows) -> &[String] {
    w.layer_folders().as_deref().unwrap_or(&[])
}

// oci-spec 0.10 declares copy-getters for these types but does not derive them, so the
// values are read back through serde into mirrors of the runtime-spec shapes.
#[derive(Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ResourcesMirror {
    memory: Option<MemoryMirror>,
    cpu: Option<CpuMirror>,
    storage: Option<StorageMirror>,
}
#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct MemoryMirror {
    limit: Option<u64>,
}
#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct CpuMirror {
    count: Option<u64>,
    shares: Option<u16>,
    maximum: Option<u16>,
}
#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct StorageMirror {
    iops: Option<u64>,
    bps: Option<u64>,
}
#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct NetworkMirror {
    #[serde(rename = "allowUnqualifiedDNSQuery")]
    allow_unqualified_dns_query: Option<bool>,
}

fn mirror<T: serde::Serialize, U: serde::de::DeserializeOwned + Default>(v: &T) -> U {
    // Plain data of the same shape both ways: neither step can fail.
    serde_json::to_value(v).and_then(serde_json::from_value).unwrap_or_default()
}

fn apply_network(config: &mut ContainerConfig, w: &Windows) {
    if let Some(n) = w.network() {
        config.endpoint_list = n.endpoint_list().clone().unwrap_or_default();
        let nm: NetworkMirror = mirror(n);
        config.allow_unqualified_dns_query = nm.allow_unqualified_dns_query.unwrap_or(false);
        if let Some(list) = n.dns_search_list() {
            config.dns_search_list = list.join(",");
        }
        config.network_shared_container_name = n.network_shared_container_name().clone().unwrap_or_default();
    }
}

fn layers(folders: &[String], file: Option<&str>, ctx: TranslateContext<'_>) -> Result<Vec<Layer>, TranslateError> {
    let mut out = Vec::with_capacity(folders.len());
    for folder in folders {
        let (_, name) = winpath::split(folder);
        let g = ctx
            .name_to_guid
            .name_to_guid(name)
            .map_err(|source| TranslateError::LayerId { folder: folder.clone(), source })?;
        out.push(Layer {
            id: g.to_string(),
            path: match file {
                Some(f) => winpath::join(&[folder, f]),
                None => folder.clone(),
            },
        });
    }
    Ok(out)
}

fn create_windows(
    id: &str,
    spec: &Spec,
    credential_spec: Option<&str>,
    ctx: TranslateContext<'_>,
) -> Result<ContainerTranslation, TranslateError> {
    let w = spec
        .windows()
        .as_ref()
        .ok_or(TranslateError::MissingWindows("OCI spec is invalid - Windows must be set for a Windows container"))?;
    let mut warnings = Vec::new();
    let mut config = ContainerConfig {
        system_type: SYSTEM_TYPE_CONTAINER.into(),
        name: id.into(),
        owner: DEFAULT_OWNER.into(),
        ignore_flushes_during_boot: w.ignore_flushes_during_boot().unwrap_or(false),
        host_name: spec.hostname().clone().unwrap_or_default(),
        hv_partition: false,
        servicing: w.servicing().unwrap_or(false),
        ..Default::default()
    };

    if let Some(r) = w.resources() {
        let r: ResourcesMirror = mirror(&r);
        if let Some(cpu) = r.cpu {
            if let Some(count) = cpu.count {
                // Clamped here rather than when the engine stores the setting, so a container
                // moved to a bigger host gets its full request there.
                let host_cpus = ctx.host.num_cpu();
                let mut c = count;
                if c > host_cpus {
                    let msg =
                        format!("Changing requested CPUCount of {c} to current number of processors, {host_cpus}");
                    log::warn!("{msg}");
                    warnings.push(msg);
                    c = host_cpus;
                }
                // Go's uint32(cpuCount): truncation, harmless once clamped to the host.
                config.processor_count = c as u32;
            }
            if let Some(shares) = cpu.shares {
                config.processor_weight = u64::from(shares);
            }
            if let Some(max) = cpu.maximum {
                config.processor_maximum = i64::from(max);
            }
        }
        if let Some(limit) = r.memory.and_then(|m| m.limit) {
            // Go's int64(limit)/1024/1024: a limit above i64::MAX wraps negative, as it did.
            config.memory_maximum_in_mb = (limit as i64) / 1024 / 1024;
        }
        if let Some(s) = r.storage {
            if let Some(bps) = s.bps {
                config.storage_bandwidth_maximum = bps;
            }
            if let Some(iops) = s.iops {
                config.storage_iops_maximum = iops;
            }
        }
    }

    let hyperv = w.hyperv().as_ref();
    if hyperv.is_some() {
        config.hv_partition = true;
    }
    apply_network(&mut config, w);
    if let Some(cs) = credential_spec {
        config.credentials = cs.to_string();
    } else if w.credential_spec().is_some() {
        // The original only used a string credential spec; oci-spec can only hold the object
        // form, which the original ignored too.
        let msg = "windows.credentialSpec is not a string; ignored as the original did".to_string();
        log::warn!("{msg}");
        warnings.push(msg);
    }

    let folders = layer_folders(w);
    if folders.len() < 2 {
        return Err(TranslateError::TooFewLayerFolders("two"));
    }
    let (scratch, read_only) = match folders.split_last() {
        Some((last, rest)) => (last, rest),
        None => return Err(TranslateError::TooFewLayerFolders("two")),
    };
    config.layer_folder_path = scratch.clone();

    let root_path = match spec.root() {
        Some(r) => utf8(r.path(), "Root.Path")?,
        None => "",
    };
    if config.hv_partition {
        if hyperv.and_then(|h| h.utility_vm_path().as_deref()).is_some_and(|p| !p.is_empty()) {
            return Err(TranslateError::ExplicitUtilityVmPath);
        }
        // The first (upper-most) read-only layer that carries a utility VM image wins.
        let mut uvm_image_path = None;
        for folder in read_only {
            let full = winpath::join(&[folder, "UtilityVM"]);
            match ctx.host.stat(&full) {
                Ok(()) => {
                    uvm_image_path = Some(full);
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(TranslateError::Stat { path: full, source }),
            }
        }
        let image_path = uvm_image_path.ok_or(TranslateError::UtilityVmNotFound)?;
        config.hv_runtime = Some(HvRuntime { image_path, ..Default::default() });
        if !root_path.is_empty() {
            return Err(TranslateError::RootPathWithHyperV);
        }
    } else {
        if !is_volume_guid_path(root_path) {
            return Err(TranslateError::RootPathNotVolumeGuid(root_path.to_string()));
        }
        // HCS wants the volume path without its trailing backslash; the pattern guarantees
        // the path ends in one ASCII backslash.
        config.volume_path = root_path.strip_suffix('\\').unwrap_or(root_path).to_string();
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        return Err(TranslateError::RootReadonly);
    }

    config.layers = layers(read_only, None, ctx)?;

    let mut mapped_dirs = Vec::new();
    let mut mapped_pipes = Vec::new();
    for m in spec.mounts().as_deref().unwrap_or(&[]) {
        if let Some(t) = m.typ().as_deref().filter(|t| !t.is_empty()) {
            return Err(TranslateError::MountType(t.to_string()));
        }
        let dest = utf8(m.destination(), "Mount.Destination")?;
        let source = match m.source() {
            Some(s) => utf8(s, "Mount.Source")?,
            None => "",
        };
        if let Some(pipe) = dest.strip_prefix(PIPE_PREFIX) {
            mapped_pipes.push(MappedPipe { host_path: source.to_string(), container_pipe_name: pipe.to_string() });
        } else {
            let read_only = m.options().as_deref().unwrap_or(&[]).iter().any(|o| o.to_lowercase() == "ro");
            mapped_dirs.push(MappedDir {
                host_path: source.to_string(),
                container_path: dest.to_string(),
                read_only,
                ..Default::default()
            });
        }
    }
    config.mapped_directories = mapped_dirs;
    if !mapped_pipes.is_empty() && ctx.host.os_build().is_some_and(|b| b < NAMED_PIPE_MIN_BUILD) {
        return Err(TranslateError::NamedPipesUnsupported);
    }
    config.mapped_pipes = mapped_pipes;

    Ok(ContainerTranslation { config, spec: spec.clone(), is_windows: true, warnings })
}

/// Go's `%+v` of a runtime-spec `Mount`, for the "no uvmpath" error.
fn go_mount_debug(dest: &str, typ: &str, source: &str, options: &[String]) -> String {
    format!("{{Destination:{dest} Type:{typ} Source:{source} Options:[{}]}}", options.join(" "))
}

fn create_linux(
    id: &str,
    spec: &Spec,
    lcow: Option<&LcowConfig>,
    ctx: TranslateContext<'_>,
) -> Result<ContainerTranslation, TranslateError> {
    let lcow = lcow.ok_or(TranslateError::LcowOptionsMissing)?;
    let mut config = ContainerConfig {
        hv_partition: true,
        name: id.into(),
        system_type: SYSTEM_TYPE_CONTAINER_LCOW.into(),
        container_type: CONTAINER_TYPE_LINUX.into(),
        owner: DEFAULT_OWNER.into(),
        terminate_on_last_handle_closed: true,
        ..Default::default()
    };
    config.hv_runtime = Some(if lcow.actual_mode == ActualMode::Vhdx {
        HvRuntime {
            image_path: lcow.options.vhdx.clone(),
            boot_source: BOOT_SOURCE_VHD.into(),
            writable_boot_source: false,
            ..Default::default()
        }
    } else {
        HvRuntime {
            image_path: lcow.options.kird_path.clone(),
            linux_kernel_file: lcow.options.kernel_file.clone(),
            linux_initrd_file: lcow.options.initrd_file.clone(),
            linux_boot_parameters: lcow.options.boot_parameters.clone(),
            ..Default::default()
        }
    });

    let w = spec
        .windows()
        .as_ref()
        .ok_or(TranslateError::MissingWindows("spec.Windows must not be nil for LCOW containers"))?;
    let folders = layer_folders(w);
    let Some((scratch, read_only)) = folders.split_last() else {
        return Err(TranslateError::TooFewLayerFolders("one"));
    };
    config.layer_folder_path = scratch.clone();
    config.layers = layers(read_only, Some("layer.vhd"), ctx)?;
    apply_network(&mut config, w);

    // Only bind mounts become mapped folders, and they are mapped into the utility VM (at
    // uvmpath/destination); the guest then bind-mounts that path into the container, so the
    // spec's source is rewritten to it. Other mounts pass through to the guest unchanged.
    let mut mapped_dirs = Vec::new();
    let mut spec_mounts: Vec<Mount> = Vec::new();
    for m in spec.mounts().as_deref().unwrap_or(&[]) {
        let mut spec_mount = m.clone();
        if m.typ().as_deref() == Some("bind") {
            let mut kept = Vec::new();
            let mut uvm_path = String::new();
            let mut read_only = false;
            for opt in m.options().as_deref().unwrap_or(&[]) {
                let (key, value) = match opt.split_once('=') {
                    Some((k, v)) => (k, Some(v)),
                    None => (opt.as_str(), None),
                };
                match key {
                    // The original indexed the value unchecked (a bare `uvmpath` panicked);
                    // here it counts as an empty uvmpath.
                    UVM_PATH_OPTION => {
                        uvm_path = value.unwrap_or("").to_string();
                        continue;
                    }
                    "rw" | "rbind" => {}
                    "ro" => read_only = true,
                    _ => return Err(TranslateError::UnsupportedMountOption(opt.clone())),
                }
                kept.push(opt.clone());
            }
            let dest = utf8(m.destination(), "Mount.Destination")?;
            let source = match m.source() {
                Some(s) => utf8(s, "Mount.Source")?,
                None => "",
            };
            if uvm_path.is_empty() {
                return Err(TranslateError::NoUvmPath(go_mount_debug(dest, "bind", source, &kept)));
            }
            let in_uvm = winpath::posix_join(&[&uvm_path, dest]);
            mapped_dirs.push(MappedDir {
                host_path: source.to_string(),
                container_path: in_uvm.clone(),
                create_in_utility_vm: true,
                read_only,
                ..Default::default()
            });
            // The original stripped uvmpath only from its loop copy, so the mount handed to
            // the guest keeps all its options, uvmpath included; only the source changes.
            spec_mount.set_source(Some(in_uvm.into()));
        }
        spec_mounts.push(spec_mount);
    }
    config.mapped_directories = mapped_dirs;

    let mut rewritten = spec.clone();
    if spec.mounts().is_some() {
        rewritten.set_mounts(Some(spec_mounts));
    }
    Ok(ContainerTranslation { config, spec: rewritten, is_windows: false, warnings: Vec::new() })
}

/// The original's volume GUID pattern, matched for real:
/// `^\\\\\?\\(Volume)\{{0,1}[0-9a-fA-F]{8}\-[0-9a-fA-F]{4}\-[0-9a-fA-F]{4}\-[0-9a-fA-F]{4}\-[0-9a-fA-F]{12}(\}){0,1}\}\\$`.
///
/// That is `\\?\Volume{GUID}\` — and, as the pattern was written, also the odd forms with
/// the opening brace missing (`\\?\VolumeGUID}\`) or a doubled closing one (`{GUID}}\`),
/// which are accepted here exactly as the pattern accepts them.
pub fn is_volume_guid_path(s: &str) -> bool {
    let Some(rest) = s.strip_prefix(r"\\?\Volume") else {
        return false;
    };
    let rest = rest.strip_prefix('{').unwrap_or(rest);
    let b = rest.as_bytes();
    let mut i = 0;
    for (gi, len) in [8usize, 4, 4, 4, 12].into_iter().enumerate() {
        if gi > 0 {
            if b.get(i) != Some(&b'-') {
                return false;
            }
            i += 1;
        }
        for _ in 0..len {
            match b.get(i) {
                Some(c) if c.is_ascii_hexdigit() => i += 1,
                _ => return false,
            }
        }
    }
    let tail = b.get(i..).unwrap_or_default();
    tail == b"}\\" || tail == b"}}\\"
}

/// The environment map (the original's `setupEnvironmentVariables`): `KEY=VALUE` entries
/// split at the first `=`; entries without `=` are dropped; later duplicates win.
pub fn environment(env: &[String]) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for e in env {
        if let Some((k, v)) = e.split_once('=') {
            m.insert(k.to_string(), v.to_string());
        }
    }
    m
}

fn command(p: &Process, is_windows: bool, cfg: &mut ProcessConfig) {
    let args = p.args().as_deref().unwrap_or(&[]);
    if is_windows {
        cfg.command_line = match p.command_line().as_deref() {
            Some(cl) if !cl.is_empty() => cl.to_string(),
            _ => escape_args(args),
        };
    } else {
        cfg.command_args = args.to_vec();
    }
}

/// hcsshim's CreateProcess zeroed the console size of processes without a console before
/// sending the document; doing it here keeps dry-run output equal to what HCS receives.
fn hcsshim_normalize(mut cfg: ProcessConfig) -> ProcessConfig {
    if !cfg.emulate_console {
        cfg.console_size = [0, 0];
    }
    cfg
}

/// The init process document (the original's `Start`). `spec` is the container's spec as
/// translated (for LCOW it goes to the guest verbatim as `OCISpecification`).
pub fn init_process_config(spec: &Spec, is_windows: bool) -> Result<ProcessConfig, TranslateError> {
    let p = spec.process().as_ref().ok_or(TranslateError::MissingProcess)?;
    let servicing = spec.windows().as_ref().and_then(|w| w.servicing()).unwrap_or(false);
    let terminal = p.terminal().unwrap_or(false);
    let mut cfg = ProcessConfig {
        emulate_console: terminal,
        working_directory: utf8(p.cwd(), "Process.Cwd")?.to_string(),
        create_std_in_pipe: !servicing,
        create_std_out_pipe: !servicing,
        create_std_err_pipe: !terminal && !servicing,
        ..Default::default()
    };
    if let Some(cs) = p.console_size() {
        cfg.console_size = [cs.height(), cs.width()];
    }
    cfg.environment = environment(p.env().as_deref().unwrap_or(&[]));
    command(p, is_windows, &mut cfg);
    cfg.user = p.user().username().clone().unwrap_or_default();
    if !is_windows {
        cfg.oci_specification = Some(to_go_json_raw(spec)?);
    }
    Ok(hcsshim_normalize(cfg))
}

/// An exec process document (the original's `Exec`): stdin and stdout always, stderr only
/// without a terminal; the working directory falls back to the container's.
pub fn exec_process_config(
    container_spec: &Spec,
    is_windows: bool,
    p: &Process,
) -> Result<ProcessConfig, TranslateError> {
    let terminal = p.terminal().unwrap_or(false);
    let mut cfg = ProcessConfig {
        create_std_in_pipe: true,
        create_std_out_pipe: true,
        create_std_err_pipe: !terminal,
        emulate_console: terminal,
        ..Default::default()
    };
    if let Some(cs) = p.console_size() {
        cfg.console_size = [cs.height(), cs.width()];
    }
    let cwd = utf8(p.cwd(), "Process.Cwd")?;
    cfg.working_directory = if !cwd.is_empty() {
        cwd.to_string()
    } else {
        match container_spec.process() {
            Some(cp) => utf8(cp.cwd(), "Process.Cwd")?.to_string(),
            None => String::new(),
        }
    };
    cfg.environment = environment(p.env().as_deref().unwrap_or(&[]));
    command(p, is_windows, &mut cfg);
    cfg.user = p.user().username().clone().unwrap_or_default();
    Ok(hcsshim_normalize(cfg))
}

/// A spec parsed from `config.json`, plus the string form of `windows.credentialSpec`.
///
/// Also maps runtime-spec's `windows.hyperv.utilityVMPath` to the key oci-spec reads.
///
/// runtime-spec declares `credentialSpec` as "any JSON value"; the original used it only when
/// it was a string (the engine put the credential spec file's contents there). oci-spec can
/// only hold an object, so a string is taken out before parsing and returned separately.
#[derive(Debug, Clone)]
pub struct ParsedSpec {
    /// The spec.
    pub spec: Spec,
    /// `windows.credentialSpec` if it was a string.
    pub credential_spec: Option<String>,
}

/// Parses `config.json` bytes (see [`ParsedSpec`]).
pub fn parse_spec(json: &[u8]) -> Result<ParsedSpec, Error> {
    let mut v: serde_json::Value = serde_json::from_slice(json)
        .map_err(|e| Error::with_source(ErrorKind::InvalidParameter, "config.json is not valid JSON", e))?;
    let mut credential_spec = None;
    if let Some(w) = v.get_mut("windows").and_then(|w| w.as_object_mut()) {
        if w.get("credentialSpec").is_some_and(|c| c.is_string()) {
            if let Some(serde_json::Value::String(s)) = w.remove("credentialSpec") {
                credential_spec = Some(s);
            }
        }
        // runtime-spec names it `utilityVMPath`; oci-spec 0.10 only reads `utilityVmPath` and
        // would silently drop the real key, hiding the "explicit utility VM path" error.
        if let Some(h) = w.get_mut("hyperv").and_then(|h| h.as_object_mut()) {
            if let Some(p) = h.remove("utilityVMPath") {
                h.insert("utilityVmPath".into(), p);
            }
        }
    }
    let spec: Spec = serde_json::from_value(v).map_err(|e| {
        Error::with_source(ErrorKind::InvalidParameter, "config.json is not a valid OCI runtime spec", e)
    })?;
    Ok(ParsedSpec { spec, credential_spec })
}

/// Serializes a translated document the way hcsshim did (Go `json.Marshal`).
pub fn document<T: serde::Serialize>(doc: &T) -> Result<String, Error> {
    to_go_json(doc).map_err(|e| Error::wrap_system("serializing an HCS document", e))
}
