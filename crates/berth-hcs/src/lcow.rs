//! Linux-containers-on-Windows utility VM options: a port of opengcs v0.3.4 `client.Config`
//! (`ParseOptions`, `GenerateDefault`, `Validate`), which the original received as its LCOW
//! `runtimeOptions`.
//!
//! Quirks kept on purpose, because they decide which HvRuntime the original sent:
//!
//! * Go's `iota` kept counting across the constant block, so the "requested" modes are 3, 4, 5
//!   and the zero value 0 means "nothing requested" ([`RequestedMode::None`]).
//! * `GenerateDefault` returns as soon as a timeout comes from the options or from
//!   `OPENGCS_UVM_TIMEOUT_SECONDS`, *before* it sets the requested mode to Auto. With a
//!   timeout, nothing is requested, `Validate` skips the VHDX branch and always picks
//!   kernel+initrd, even when `uvm.vhdx` exists.
//! * `Validate` treats a stat error other than "does not exist" as "exists" for the VHDX,
//!   kernel and initrd (it only tests `os.IsNotExist`).
//! * Option keys are matched case-insensitively, unknown keys and entries without `=` are
//!   ignored.

use berth_core::{Error, ErrorKind};
use berth_hcs_schema::MappedVirtualDisk;

use crate::host::HostInfo;
use crate::winpath;

/// Default utility VM timeout (opengcs `defaultUvmTimeoutSeconds`).
pub const DEFAULT_UVM_TIMEOUT_SECONDS: i64 = 5 * 60;
/// Default kernel file name.
pub const DEFAULT_KERNEL_FILE: &str = "bootx64.efi";
/// Default initrd file name.
pub const DEFAULT_INITRD_FILE: &str = "initrd.img";
/// Default VHDX file name (in the kernel/initrd folder).
pub const DEFAULT_VHDX_FILE: &str = "uvm.vhdx";

/// The boot mode asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RequestedMode {
    /// Go's zero value (0): nothing requested; see the module docs.
    #[default]
    None,
    /// `ModeRequestAuto` (3): VHDX if it exists, else kernel+initrd.
    Auto,
    /// `ModeRequestVhdx` (4).
    Vhdx,
    /// `ModeRequestKernelInitrd` (5).
    KernelInitrd,
}

/// The boot mode `validate` settled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ActualMode {
    /// `ModeActualError` (0): not validated, or validation failed.
    #[default]
    Error,
    /// `ModeActualVhdx` (1): boot from the VHDX.
    Vhdx,
    /// `ModeActualKernelInitrd` (2): boot the kernel and initrd.
    KernelInitrd,
}

/// The user-settable options (opengcs `Options`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LcowOptions {
    /// Folder holding the kernel and initrd.
    pub kird_path: String,
    /// Kernel file name (no folder).
    pub kernel_file: String,
    /// Initrd file name (no folder).
    pub initrd_file: String,
    /// Full path of the boot VHDX.
    pub vhdx: String,
    /// Requested utility VM timeout; 0 = unset.
    pub timeout_seconds: i64,
    /// Extra kernel command line (kernel+initrd mode only).
    pub boot_parameters: String,
}

/// Environment values opengcs read (`%ProgramFiles%`, `OPENGCS_UVM_TIMEOUT_SECONDS`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LcowEnv {
    /// `ProgramFiles`; the default kernel folder is `<ProgramFiles>\Linux Containers`.
    pub program_files: Option<String>,
    /// `OPENGCS_UVM_TIMEOUT_SECONDS`.
    pub uvm_timeout_seconds: Option<String>,
}

impl LcowEnv {
    /// Reads both variables from the process environment.
    pub fn from_process() -> Self {
        LcowEnv {
            program_files: std::env::var("ProgramFiles").ok(),
            uvm_timeout_seconds: std::env::var("OPENGCS_UVM_TIMEOUT_SECONDS").ok(),
        }
    }
}

/// A utility VM configuration (opengcs `Config`), what LCOW `create` needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LcowConfig {
    /// The options.
    pub options: LcowOptions,
    /// Requested boot mode.
    pub requested_mode: RequestedMode,
    /// Boot mode after [`LcowConfig::validate`].
    pub actual_mode: ActualMode,
    /// Effective utility VM timeout.
    pub uvm_timeout_seconds: i64,
    /// Data disks to attach (validated only in kernel+initrd mode, as opengcs did).
    pub mapped_virtual_disks: Vec<MappedVirtualDisk>,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidParameter, msg)
}

fn not_found(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
}

/// opengcs `ParseOptions`: `lcow.kirdpath`, `lcow.kernel`, `lcow.initrd`, `lcow.vhdx`,
/// `lcow.bootparameters`, `lcow.timeout` as `key=value`; defaults filled in afterwards.
pub fn parse_options(options: &[String], env: &LcowEnv) -> Result<LcowOptions, Error> {
    let mut o = LcowOptions::default();
    for v in options {
        let Some((k, val)) = v.split_once('=') else {
            continue;
        };
        match k.to_lowercase().as_str() {
            "lcow.kirdpath" => o.kird_path = val.to_string(),
            "lcow.kernel" => o.kernel_file = val.to_string(),
            "lcow.initrd" => o.initrd_file = val.to_string(),
            "lcow.vhdx" => o.vhdx = val.to_string(),
            "lcow.bootparameters" => o.boot_parameters = val.to_string(),
            "lcow.timeout" => {
                o.timeout_seconds = val
                    .parse::<i64>()
                    .map_err(|_| invalid("opengcstimeoutsecs option could not be interpreted as an integer"))?;
                if o.timeout_seconds < 0 {
                    return Err(invalid("opengcstimeoutsecs option cannot be negative"));
                }
            }
            _ => {}
        }
    }
    if o.kird_path.is_empty() {
        o.kird_path = winpath::join(&[env.program_files.as_deref().unwrap_or(""), "Linux Containers"]);
    }
    if o.vhdx.is_empty() {
        o.vhdx = winpath::join(&[&o.kird_path, DEFAULT_VHDX_FILE]);
    }
    if o.kernel_file.is_empty() {
        o.kernel_file = DEFAULT_KERNEL_FILE.to_string();
    }
    if o.initrd_file.is_empty() {
        o.initrd_file = DEFAULT_INITRD_FILE.to_string();
    }
    Ok(o)
}

impl LcowConfig {
    /// opengcs `GenerateDefault` (with its early-return quirk, see the module docs).
    pub fn generate_default(options: &[String], env: &LcowEnv) -> Result<LcowConfig, Error> {
        let mut c = LcowConfig { options: parse_options(options, env)?, ..Default::default() };
        let mut env_timeout = 0i64;
        if let Some(t) = env.uvm_timeout_seconds.as_deref().filter(|t| !t.is_empty()) {
            env_timeout = t
                .parse::<i64>()
                .map_err(|_| invalid("OPENGCS_UVM_TIMEOUT_SECONDS could not be interpreted as an integer"))?;
            if env_timeout < 0 {
                return Err(invalid("OPENGCS_UVM_TIMEOUT_SECONDS cannot be negative"));
            }
        }
        if c.options.timeout_seconds != 0 {
            c.uvm_timeout_seconds = c.options.timeout_seconds;
            return Ok(c);
        }
        if env_timeout != 0 {
            c.uvm_timeout_seconds = env_timeout;
            return Ok(c);
        }
        c.uvm_timeout_seconds = DEFAULT_UVM_TIMEOUT_SECONDS;
        c.requested_mode = RequestedMode::Auto;
        Ok(c)
    }

    /// opengcs `Validate`: settles [`LcowConfig::actual_mode`] by looking at the files.
    pub fn validate(&mut self, host: &dyn HostInfo) -> Result<(), Error> {
        self.actual_mode = ActualMode::Error;
        let o = &self.options;
        if self.requested_mode == RequestedMode::Vhdx && o.vhdx.is_empty() {
            return Err(invalid("VHDx mode must supply a VHDx"));
        }
        if self.requested_mode == RequestedMode::KernelInitrd && (o.kernel_file.is_empty() || o.initrd_file.is_empty())
        {
            return Err(invalid("kernel+initrd mode must supply both kernel and initrd"));
        }
        if matches!(self.requested_mode, RequestedMode::Auto | RequestedMode::Vhdx) {
            match host.stat(&o.vhdx) {
                Err(e) if not_found(&e) => {
                    if self.requested_mode == RequestedMode::Vhdx {
                        return Err(Error::not_found(format!("VHDx '{}' not found", o.vhdx)));
                    }
                }
                _ => {
                    self.actual_mode = ActualMode::Vhdx;
                    if !o.boot_parameters.is_empty() {
                        return Err(invalid("Boot parameters cannot be specified in VHDx mode"));
                    }
                    return Ok(());
                }
            }
        }
        if o.initrd_file.is_empty() || o.kernel_file.is_empty() {
            if self.requested_mode == RequestedMode::KernelInitrd {
                return Err(invalid("initrd and kernel options must be supplied"));
            }
            return Err(invalid("opengcs: configuration is invalid"));
        }
        let kernel = winpath::join(&[&o.kird_path, &o.kernel_file]);
        if let Err(e) = host.stat(&kernel) {
            if not_found(&e) {
                return Err(Error::not_found(format!("kernel '{kernel}' not found")));
            }
        }
        let initrd = winpath::join(&[&o.kird_path, &o.initrd_file]);
        if let Err(e) = host.stat(&initrd) {
            if not_found(&e) {
                return Err(Error::not_found(format!("initrd '{initrd}' not found")));
            }
        }
        self.actual_mode = ActualMode::KernelInitrd;
        for mvd in &self.mapped_virtual_disks {
            if host.stat(&mvd.host_path).is_err() {
                return Err(Error::not_found(format!("mapped virtual disk '{}' not found", mvd.host_path)));
            }
            if mvd.container_path.is_empty() {
                return Err(invalid(format!(
                    "mapped virtual disk '{}' requested without a container path",
                    mvd.host_path
                )));
            }
        }
        Ok(())
    }

    /// What the daemon did with the `lcow.*` options: [`LcowConfig::generate_default`] then
    /// [`LcowConfig::validate`].
    pub fn from_options(options: &[String], env: &LcowEnv, host: &dyn HostInfo) -> Result<LcowConfig, Error> {
        let mut c = LcowConfig::generate_default(options, env)?;
        c.validate(host)?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io;

    /// A host whose file system is a table: path -> Ok / NotFound / other error.
    struct Files(HashMap<String, io::ErrorKind>, Vec<String>);
    impl HostInfo for Files {
        fn num_cpu(&self) -> u64 {
            4
        }
        fn os_build(&self) -> Option<u32> {
            Some(17763)
        }
        fn stat(&self, path: &str) -> io::Result<()> {
            if self.1.iter().any(|p| p == path) {
                return Ok(());
            }
            Err(io::Error::from(*self.0.get(path).unwrap_or(&io::ErrorKind::NotFound)))
        }
    }
    fn files(existing: &[&str]) -> Files {
        Files(HashMap::new(), existing.iter().map(|s| s.to_string()).collect())
    }
    fn env() -> LcowEnv {
        LcowEnv { program_files: Some("C:\\Program Files".into()), uvm_timeout_seconds: None }
    }
    fn opts(o: &[&str]) -> Vec<String> {
        o.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn defaults() {
        let o = parse_options(&[], &env()).unwrap();
        assert_eq!(o.kird_path, "C:\\Program Files\\Linux Containers");
        assert_eq!(o.vhdx, "C:\\Program Files\\Linux Containers\\uvm.vhdx");
        assert_eq!(o.kernel_file, "bootx64.efi");
        assert_eq!(o.initrd_file, "initrd.img");
        let o = parse_options(&[], &LcowEnv::default()).unwrap();
        assert_eq!(o.kird_path, "Linux Containers");
    }

    #[test]
    fn keys_case_insensitive_unknown_ignored() {
        let o = parse_options(
            &opts(&[
                "LCOW.KirdPath=D:\\k",
                "lcow.kernel=vmlinuz",
                "lcow.initrd=i.img",
                "lcow.bootparameters=console=ttyS0",
                "lcow.bogus=1",
                "nokey",
            ]),
            &env(),
        )
        .unwrap();
        assert_eq!(o.kird_path, "D:\\k");
        assert_eq!(o.vhdx, "D:\\k\\uvm.vhdx");
        assert_eq!(o.kernel_file, "vmlinuz");
        assert_eq!(o.initrd_file, "i.img");
        // SplitN(s, "=", 2): the value keeps its own '='.
        assert_eq!(o.boot_parameters, "console=ttyS0");
    }

    #[test]
    fn timeout_errors() {
        for (v, msg) in [
            ("lcow.timeout=x", "opengcstimeoutsecs option could not be interpreted as an integer"),
            ("lcow.timeout=-1", "opengcstimeoutsecs option cannot be negative"),
        ] {
            let e = parse_options(&opts(&[v]), &env()).unwrap_err();
            assert_eq!(e.message(), msg);
            assert_eq!(e.kind(), ErrorKind::InvalidParameter);
        }
        for (v, msg) in [
            ("x", "OPENGCS_UVM_TIMEOUT_SECONDS could not be interpreted as an integer"),
            ("-3", "OPENGCS_UVM_TIMEOUT_SECONDS cannot be negative"),
        ] {
            let e = LcowConfig::generate_default(&[], &LcowEnv { uvm_timeout_seconds: Some(v.into()), ..env() })
                .unwrap_err();
            assert_eq!(e.message(), msg);
        }
    }

    #[test]
    fn timeout_priority_and_early_return_quirk() {
        let c = LcowConfig::generate_default(&[], &env()).unwrap();
        assert_eq!(c.uvm_timeout_seconds, 300);
        assert_eq!(c.requested_mode, RequestedMode::Auto);

        let c = LcowConfig::generate_default(&opts(&["lcow.timeout=7"]), &env()).unwrap();
        assert_eq!(c.uvm_timeout_seconds, 7);
        assert_eq!(c.requested_mode, RequestedMode::None, "early return");

        let e = LcowEnv { uvm_timeout_seconds: Some("9".into()), ..env() };
        let c = LcowConfig::generate_default(&opts(&["lcow.timeout=7"]), &e).unwrap();
        assert_eq!(c.uvm_timeout_seconds, 7, "option beats environment");
        let c = LcowConfig::generate_default(&[], &e).unwrap();
        assert_eq!(c.uvm_timeout_seconds, 9);
        assert_eq!(c.requested_mode, RequestedMode::None, "early return");
    }

    const VHDX: &str = "C:\\Program Files\\Linux Containers\\uvm.vhdx";
    const KERNEL: &str = "C:\\Program Files\\Linux Containers\\bootx64.efi";
    const INITRD: &str = "C:\\Program Files\\Linux Containers\\initrd.img";

    #[test]
    fn auto_prefers_existing_vhdx() {
        let c = LcowConfig::from_options(&[], &env(), &files(&[VHDX, KERNEL, INITRD])).unwrap();
        assert_eq!(c.actual_mode, ActualMode::Vhdx);
        let c = LcowConfig::from_options(&[], &env(), &files(&[KERNEL, INITRD])).unwrap();
        assert_eq!(c.actual_mode, ActualMode::KernelInitrd);
    }

    #[test]
    fn timeout_quirk_skips_vhdx_even_if_present() {
        let c = LcowConfig::from_options(&opts(&["lcow.timeout=30"]), &env(), &files(&[VHDX, KERNEL, INITRD])).unwrap();
        assert_eq!(c.actual_mode, ActualMode::KernelInitrd);
    }

    #[test]
    fn boot_parameters_refused_with_vhdx() {
        let e = LcowConfig::from_options(&opts(&["lcow.bootparameters=quiet"]), &env(), &files(&[VHDX])).unwrap_err();
        assert_eq!(e.message(), "Boot parameters cannot be specified in VHDx mode");
    }

    #[test]
    fn missing_kernel_or_initrd() {
        let e = LcowConfig::from_options(&[], &env(), &files(&[INITRD])).unwrap_err();
        assert_eq!(e.message(), format!("kernel '{KERNEL}' not found"));
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let e = LcowConfig::from_options(&[], &env(), &files(&[KERNEL])).unwrap_err();
        assert_eq!(e.message(), format!("initrd '{INITRD}' not found"));
    }

    #[test]
    fn stat_errors_other_than_not_found_count_as_present() {
        let mut h = files(&[]);
        h.0.insert(VHDX.into(), io::ErrorKind::PermissionDenied);
        let c = LcowConfig::from_options(&[], &env(), &h).unwrap();
        assert_eq!(c.actual_mode, ActualMode::Vhdx);
    }

    #[test]
    fn explicit_modes() {
        let mut c = LcowConfig::generate_default(&[], &env()).unwrap();
        c.requested_mode = RequestedMode::Vhdx;
        let e = c.validate(&files(&[KERNEL, INITRD])).unwrap_err();
        assert_eq!(e.message(), format!("VHDx '{VHDX}' not found"));
        c.options.vhdx.clear();
        let e = c.validate(&files(&[])).unwrap_err();
        assert_eq!(e.message(), "VHDx mode must supply a VHDx");

        let mut c = LcowConfig::generate_default(&[], &env()).unwrap();
        c.requested_mode = RequestedMode::KernelInitrd;
        c.validate(&files(&[VHDX, KERNEL, INITRD])).unwrap();
        assert_eq!(c.actual_mode, ActualMode::KernelInitrd);
        c.options.kernel_file.clear();
        let e = c.validate(&files(&[])).unwrap_err();
        assert_eq!(e.message(), "kernel+initrd mode must supply both kernel and initrd");

        let mut c = LcowConfig::generate_default(&[], &env()).unwrap();
        c.options.initrd_file.clear();
        let e = c.validate(&files(&[])).unwrap_err();
        assert_eq!(e.message(), "opengcs: configuration is invalid");
        assert_eq!(c.actual_mode, ActualMode::Error);
    }

    #[test]
    fn mapped_virtual_disks_checked_in_kernel_mode() {
        let mut c = LcowConfig::generate_default(&opts(&["lcow.timeout=1"]), &env()).unwrap();
        c.mapped_virtual_disks = vec![MappedVirtualDisk { host_path: "C:\\d.vhdx".into(), ..Default::default() }];
        let e = c.validate(&files(&[KERNEL, INITRD])).unwrap_err();
        assert_eq!(e.message(), "mapped virtual disk 'C:\\d.vhdx' not found");
        let e = c.validate(&files(&[KERNEL, INITRD, "C:\\d.vhdx"])).unwrap_err();
        assert_eq!(e.message(), "mapped virtual disk 'C:\\d.vhdx' requested without a container path");
    }
}
