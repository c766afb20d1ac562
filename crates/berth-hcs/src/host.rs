//! What the translation needs to know about the host: CPU count, Windows build, and whether
//! paths exist (utility VM images, LCOW kernels).
//!
//! The original asked the OS directly (`sysinfo.NumCPU`, `system.GetOSVersion`, `os.Stat`);
//! here it is a trait so translation is a pure function in tests and so a dry run on a
//! non-Windows host can say what it assumes instead of stat'ing Windows paths it cannot see.

use std::io;

/// Host facts used by the translation.
pub trait HostInfo: Send + Sync {
    /// Number of logical CPUs available to containers.
    fn num_cpu(&self) -> u64;
    /// The Windows build number, or `None` when unknown (not a Windows host).
    fn os_build(&self) -> Option<u32>;
    /// Go `os.Stat(path)`: `Ok` if it exists; an error of kind `NotFound` if it does not.
    fn stat(&self, path: &str) -> io::Result<()>;
}

/// The machine berth runs on.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealHost;

impl HostInfo for RealHost {
    fn num_cpu(&self) -> u64 {
        std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
    }

    fn os_build(&self) -> Option<u32> {
        crate::ffi::windows_build()
    }

    fn stat(&self, path: &str) -> io::Result<()> {
        std::fs::metadata(path).map(|_| ())
    }
}

/// For dry runs on hosts that cannot see the Windows paths of a spec: every path exists, the
/// Windows build is unknown (so build-gated features are allowed), CPUs are the local ones.
#[derive(Debug, Clone, Copy, Default)]
pub struct AssumeExistsHost;

impl HostInfo for AssumeExistsHost {
    fn num_cpu(&self) -> u64 {
        RealHost.num_cpu()
    }

    fn os_build(&self) -> Option<u32> {
        None
    }

    fn stat(&self, _path: &str) -> io::Result<()> {
        Ok(())
    }
}

/// For dry runs on non-Windows hosts: Windows paths are looked up in the local file system
/// with every `\` read as `/`, so a spec (or `lcow.kirdpath`) that uses local absolute paths is
/// checked for real, while drive-letter paths (`C:\...`) simply do not exist. The Windows build
/// is unknown, so build-gated features are allowed.
#[derive(Debug, Clone, Copy, Default)]
pub struct SlashHost;

impl HostInfo for SlashHost {
    fn num_cpu(&self) -> u64 {
        RealHost.num_cpu()
    }

    fn os_build(&self) -> Option<u32> {
        None
    }

    fn stat(&self, path: &str) -> io::Result<()> {
        std::fs::metadata(path.replace('\\', "/")).map(|_| ())
    }
}
