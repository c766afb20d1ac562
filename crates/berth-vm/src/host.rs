//! What the host needs to boot a guest: QEMU, virtiofsd, the kernel and the initramfs
//! (located, or a clear error naming the Debian package), the accelerator (KVM when it really
//! works, else TCG), the resources mapping, and QEMU's command line.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use oci_spec::runtime::Spec;

use crate::{Error, Result};

/// Files and programs a VM container needs.
#[derive(Debug, Clone)]
pub struct Assets {
    /// qemu-system-x86_64.
    pub qemu: PathBuf,
    /// virtiofsd.
    pub virtiofsd: PathBuf,
    /// The guest kernel.
    pub kernel: PathBuf,
    /// The guest initramfs.
    pub initrd: PathBuf,
}

fn first_existing(candidates: impl IntoIterator<Item = PathBuf>) -> Option<PathBuf> {
    candidates.into_iter().find(|p| p.is_file())
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// The directories searched for `vmlinuz` and `initramfs.cpio`: `$BERTH_VM_DIR` alone when set;
/// otherwise, in order,
/// `target/vm` beside a berth built in `target/{debug,release}` (what `scripts/vm-image`
/// writes), `/usr/local/share/berth/vm`, `/usr/share/berth/vm`.
pub fn image_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("BERTH_VM_DIR") {
        // An explicit directory is the only one (no surprise fallback to another image).
        return vec![PathBuf::from(d)];
    }
    // The executable's path (argv[0] too: a berth sealed against CVE-2019-5736 runs from a
    // memfd, whose /proc/self/exe names no directory).
    let exes = std::env::current_exe().ok().into_iter().chain(
        std::env::args_os()
            .next()
            .map(PathBuf::from)
            .filter(|p| p.components().count() > 1)
            .and_then(|p| std::fs::canonicalize(p).ok()),
    );
    for exe in exes {
        // target/debug/berth, target/debug/deps/test-binary, target/release/berth
        for up in exe.ancestors().skip(1).take(3) {
            if !dirs.contains(&up.join("vm")) {
                dirs.push(up.join("vm"));
            }
        }
    }
    dirs.push("/usr/local/share/berth/vm".into());
    dirs.push("/usr/share/berth/vm".into());
    dirs
}

impl Assets {
    /// Finds everything, or says what to install.
    pub fn locate() -> Result<Assets> {
        let qemu = std::env::var_os("BERTH_VM_QEMU")
            .map(PathBuf::from)
            .or_else(|| on_path("qemu-system-x86_64"))
            .filter(|p| p.is_file())
            .ok_or_else(|| {
                Error::Missing("qemu-system-x86_64 not found: install the Debian package qemu-system-x86".into())
            })?;
        let virtiofsd = std::env::var_os("BERTH_VM_VIRTIOFSD")
            .map(PathBuf::from)
            .or_else(|| first_existing(["/usr/lib/qemu/virtiofsd".into(), "/usr/libexec/virtiofsd".into()]))
            .or_else(|| on_path("virtiofsd"))
            .filter(|p| p.is_file())
            .ok_or_else(|| {
                Error::Missing(
                    "virtiofsd not found (/usr/lib/qemu/virtiofsd): install the Debian package qemu-system-common"
                        .into(),
                )
            })?;
        let dirs = image_dirs();
        let kernel = first_existing(dirs.iter().map(|d| d.join("vmlinuz"))).ok_or_else(|| {
            Error::Missing(format!(
                "guest kernel vmlinuz not found in {}: run scripts/vm-image, which extracts it from the Debian \
                 package linux-image-cloud-amd64 (or set BERTH_VM_DIR)",
                show(&dirs)
            ))
        })?;
        let initrd = kernel.with_file_name("initramfs.cpio");
        if !initrd.is_file() {
            return Err(Error::Missing(format!(
                "guest initramfs {} not found: run scripts/vm-image (needs busybox-static and the berth-vm-agent build)",
                initrd.display()
            )));
        }
        Ok(Assets { qemu, virtiofsd, kernel, initrd })
    }
}

fn show(dirs: &[PathBuf]) -> String {
    dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// The accelerator QEMU runs the guest with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation.
    Kvm,
    /// Software emulation.
    Tcg,
}

/// Decides the accelerator once per process (cached; `BERTH_VM_ACCEL=kvm|tcg` overrides):
/// KVM only when `/dev/kvm` opens **and** the CPU advertises vmx or svm. A host that has
/// `/dev/kvm` without them (a PVM host, as the development VMs are) fails with KVM at the
/// first MSR write or crawls in the instruction emulator, so it gets TCG, said in the log.
pub fn accel() -> Accel {
    static ACCEL: OnceLock<Accel> = OnceLock::new();
    *ACCEL.get_or_init(|| {
        match std::env::var("BERTH_VM_ACCEL").as_deref() {
            Ok("kvm") => return Accel::Kvm,
            Ok("tcg") => return Accel::Tcg,
            _ => {}
        }
        let opens = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
        let flags = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| c.lines().find(|l| l.starts_with("flags")).map(|l| l.to_string()))
            .unwrap_or_default();
        let virt = flags.split_whitespace().any(|f| f == "vmx" || f == "svm");
        if opens && virt {
            Accel::Kvm
        } else {
            log::info!(
                "vm: using TCG software emulation (slow: seconds per boot): {}",
                if opens { "/dev/kvm exists but the CPU has no vmx/svm" } else { "/dev/kvm is not usable" }
            );
            Accel::Tcg
        }
    })
}

/// The host TSC frequency in kHz, which a microvm guest under TCG must be told
/// (`tsc_early_khz`): its own calibration hangs without the PIT (5 boots in 6).
pub fn tsc_khz() -> u64 {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("cpu MHz"))
                .and_then(|l| l.split(':').nth(1))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .map(|mhz| (mhz * 1000.0) as u64)
        .unwrap_or(2_000_000)
}

/// What the guest gets from `linux.resources`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmSize {
    /// Guest RAM in MiB.
    pub memory_mib: u64,
    /// vCPUs.
    pub vcpus: u32,
}

/// Guest RAM beyond the container's limit: the guest kernel, the unpacked initramfs, the
/// agent and berth-linux's setup (measured: about 60 MiB used after boot).
pub const GUEST_OVERHEAD_MIB: u64 = 128;
/// Guest RAM without a memory limit.
pub const DEFAULT_MEMORY_MIB: u64 = 512;
/// Host memory of QEMU and virtiofsd beyond the guest's RAM (TCG's translation cache is
/// capped at 64 MiB on the command line), added to the host cgroup's limit.
pub const HOST_OVERHEAD_MIB: u64 = 192;

/// Maps the spec: memory limit + [`GUEST_OVERHEAD_MIB`] → guest RAM (the container's own
/// limit is enforced again inside the guest by its cgroup); CPU quota/period rounded up, or
/// the number of CPUs in `cpus`, → vCPUs (1 without either; never more than the host has).
pub fn vm_size(spec: &Spec) -> VmSize {
    let res = spec.linux().as_ref().and_then(|l| l.resources().as_ref());
    let limit = res.and_then(|r| r.memory().as_ref()).and_then(|m| m.limit()).filter(|l| *l > 0);
    let memory_mib = match limit {
        Some(l) => (l as u64).div_ceil(1 << 20) + GUEST_OVERHEAD_MIB,
        None => DEFAULT_MEMORY_MIB,
    };
    let host_cpus = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
    let cpu = res.and_then(|r| r.cpu().as_ref());
    let from_quota = cpu.and_then(|c| match (c.quota(), c.period()) {
        (Some(q), p) if q > 0 => Some((q as u64).div_ceil(p.filter(|p| *p > 0).unwrap_or(100_000)) as u32),
        _ => None,
    });
    let from_cpus = cpu.and_then(|c| c.cpus().as_deref()).map(count_cpus).filter(|n| *n > 0);
    let vcpus = from_quota.or(from_cpus).unwrap_or(1).clamp(1, host_cpus.max(1));
    VmSize { memory_mib, vcpus }
}

/// Counts a cpuset list ("0-3,6").
fn count_cpus(list: &str) -> u32 {
    list.split(',')
        .filter_map(|part| {
            let part = part.trim();
            match part.split_once('-') {
                Some((a, b)) => Some(b.parse::<u32>().ok()?.checked_sub(a.parse::<u32>().ok()?)? + 1),
                None => part.parse::<u32>().ok().map(|_| 1),
            }
        })
        .sum()
}

/// Paths of one VM's sockets and logs (in the container's state directory).
#[derive(Debug, Clone)]
pub struct VmPaths {
    /// The directory.
    pub dir: PathBuf,
}

impl VmPaths {
    /// Under the container's state directory.
    pub fn new(state_dir: &Path) -> VmPaths {
        VmPaths { dir: state_dir.join("vm") }
    }
    /// The agent's channel (the supervisor listens, QEMU connects).
    pub fn agent(&self) -> PathBuf {
        self.dir.join("agent.sock")
    }
    /// virtiofsd's vhost-user socket.
    pub fn fs(&self) -> PathBuf {
        self.dir.join("fs.sock")
    }
    /// The supervisor's control socket (exec, signal --all).
    pub fn ctl(&self) -> PathBuf {
        self.dir.join("ctl.sock")
    }
    /// The guest's serial console.
    pub fn console(&self) -> PathBuf {
        self.dir.join("console.log")
    }
    /// QEMU's and virtiofsd's own messages.
    pub fn log(&self) -> PathBuf {
        self.dir.join("vmm.log")
    }
    /// Why the VM ended, when it was not the container's own exit.
    pub fn failure(&self) -> PathBuf {
        self.dir.join("failure")
    }
}

/// QEMU's arguments (after the program name). Everything is chosen for a fast, small boot:
/// microvm (no PCI, no firmware: the kernel is loaded directly), no default devices, one
/// serial console for the kernel's messages, the rootfs over vhost-user-fs (which needs
/// shared memfd guest RAM and modern virtio-mmio), the agent over virtio-serial.
pub fn qemu_args(assets: &Assets, paths: &VmPaths, size: VmSize, accel: Accel) -> Vec<String> {
    let (accel_arg, cpu) = match accel {
        Accel::Kvm => ("kvm", "host"),
        // The translation cache defaults to 1 GiB in system mode: 64 MiB keeps the host
        // memory per VM small at little cost for one short-lived workload.
        Accel::Tcg => ("tcg,tb-size=64", "max"),
    };
    // Each of these saves boot time that TCG makes long: no i8042 probe, no crypto self-tests,
    // no TSC/timer sanity checks (the RTC, `rtc=on` below, spares two one-second CMOS
    // time-outs).
    let mut cmdline = String::from(
        "console=ttyS0 quiet panic=-1 reboot=t pci=off nomodeset i8042.noaux i8042.nomux i8042.nopnp \
         i8042.dumbkbd cryptomgr.notests tsc=reliable no_timer_check",
    );
    if accel == Accel::Tcg {
        cmdline.push_str(&format!(" tsc_early_khz={}", tsc_khz()));
    }
    let m = size.memory_mib;
    vec![
        "-M".into(),
        "microvm,memory-backend=mem,isa-serial=on,rtc=on,pit=off,pic=off".into(),
        "-accel".into(),
        accel_arg.into(),
        "-cpu".into(),
        cpu.into(),
        "-m".into(),
        format!("{m}M"),
        "-smp".into(),
        size.vcpus.to_string(),
        "-object".into(),
        format!("memory-backend-memfd,id=mem,size={m}M,share=on"),
        "-global".into(),
        "virtio-mmio.force-legacy=false".into(),
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-nographic".into(),
        "-no-reboot".into(),
        "-kernel".into(),
        assets.kernel.display().to_string(),
        "-initrd".into(),
        assets.initrd.display().to_string(),
        "-append".into(),
        cmdline,
        "-serial".into(),
        format!("file:{}", paths.console().display()),
        "-chardev".into(),
        format!("socket,id=fs,path={}", paths.fs().display()),
        "-device".into(),
        "vhost-user-fs-device,chardev=fs,tag=rootfs".into(),
        "-device".into(),
        "virtio-serial-device".into(),
        "-chardev".into(),
        format!("socket,id=agent,path={}", paths.agent().display()),
        "-device".into(),
        "virtserialport,chardev=agent,name=berth.agent".into(),
    ]
}

/// virtiofsd's arguments: the rootfs shared read-write (a read-only `root` is enforced by
/// berth-linux in the guest, as on the host), no caching in the guest so that host and
/// guest see each other's writes at once.
pub fn virtiofsd_args(paths: &VmPaths, rootfs: &Path) -> Vec<String> {
    vec![
        format!("--socket-path={}", paths.fs().display()),
        "-o".into(),
        format!("source={}", rootfs.display()),
        "-o".into(),
        "cache=none".into(),
        "-o".into(),
        "sandbox=namespace".into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn memory_limit_and_cpu_quota_size_the_vm() {
        let s = spec(
            r#"{"ociVersion":"1.0.2","linux":{"resources":{"memory":{"limit":67108864},"cpu":{"quota":150000,"period":100000}}}}"#,
        );
        let size = vm_size(&s);
        assert_eq!(size.memory_mib, 64 + GUEST_OVERHEAD_MIB);
        let host = std::thread::available_parallelism().unwrap().get() as u32;
        assert_eq!(size.vcpus, 2.min(host));
        let s = spec(r#"{"ociVersion":"1.0.2","linux":{"resources":{"cpu":{"cpus":"0-1,3"}}}}"#);
        assert_eq!(vm_size(&s).vcpus, 3.min(host));
        let s = spec(r#"{"ociVersion":"1.0.2"}"#);
        assert_eq!(vm_size(&s), VmSize { memory_mib: DEFAULT_MEMORY_MIB, vcpus: 1 });
    }

    #[test]
    fn qemu_command_line_has_what_virtiofs_and_tcg_need() {
        let assets = Assets {
            qemu: "/q".into(),
            virtiofsd: "/v".into(),
            kernel: "/k/vmlinuz".into(),
            initrd: "/k/initramfs.cpio".into(),
        };
        let paths = VmPaths::new(Path::new("/run/berth/c1"));
        let a = qemu_args(&assets, &paths, VmSize { memory_mib: 192, vcpus: 1 }, Accel::Tcg).join(" ");
        for needed in [
            "microvm,memory-backend=mem",
            "memory-backend-memfd,id=mem,size=192M,share=on",
            "virtio-mmio.force-legacy=false",
            "tsc_early_khz=",
            "-no-reboot",
            "path=/run/berth/c1/vm/agent.sock",
            "name=berth.agent",
        ] {
            assert!(a.contains(needed), "{needed} missing from {a}");
        }
        let k = qemu_args(&assets, &paths, VmSize { memory_mib: 192, vcpus: 1 }, Accel::Kvm).join(" ");
        assert!(!k.contains("tsc_early_khz") && k.contains("-accel kvm"));
    }
}
