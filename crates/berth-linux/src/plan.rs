//! The setup plan: everything the container's init will do, computed by the parent from the
//! validated spec *before* the container process exists.
//!
//! Doing the parsing, validation and string building up front means the child only executes
//! syscalls in order, errors that depend on input surface before any namespace exists, and
//! the same plan can be reused for `exec` (which shares the process part).

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use berth_sys::process::CStringArray;
use oci_spec::runtime::{LinuxDeviceType, LinuxNamespaceType, PosixRlimitType, Process, Spec};
use rustix::fs::{Mode, OFlags};
use rustix::process::Resource;
use rustix::thread::LinkNameSpaceType;

use crate::error::{Error, Result};
use crate::mountopts::{self, MountOptions};

/// How a mount is performed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    /// A bind mount of a host path; `dir` says whether the source is a directory.
    Bind {
        /// Source is a directory.
        dir: bool,
    },
    /// A new filesystem instance (`proc`, `tmpfs`, `sysfs`, ...).
    Fs,
    /// `type: cgroup`/`cgroup2`: the container's cgroups, per [`CgroupMountPlan`].
    Cgroup,
}

/// One entry of `mounts`, ready to execute.
#[derive(Debug, Clone)]
pub struct MountPlan {
    /// Index in `mounts` (for messages).
    pub index: usize,
    /// Container path.
    pub destination: String,
    /// Host source path (absolute) for binds, the `source` string otherwise.
    pub source: String,
    /// Filesystem type.
    pub fstype: String,
    /// Parsed options.
    pub opts: MountOptions,
    /// How to mount.
    pub kind: MountKind,
    /// Idmapped mount: (uid_map, gid_map, recursive), from the mount's `uidMappings`/
    /// `gidMappings` (or the container's with a bare `idmap` option).
    pub idmap: Option<(String, String, bool)>,
}

impl MountPlan {
    /// Whether a bind source lies inside the container's rootfs.
    pub fn source_in_rootfs(&self, rootfs: &Path) -> bool {
        Path::new(&self.source).starts_with(rootfs)
    }
}

/// One hierarchy to expose under a `cgroup` mount.
#[derive(Debug, Clone)]
pub struct CgroupMountPlan {
    /// Directory name under the mount point (`memory`, `cpu,cpuacct`, `unified`, `systemd`).
    pub name: String,
    /// The container's cgroup directory on the host in this hierarchy (bind source).
    pub host_dir: PathBuf,
    /// Filesystem type for a fresh mount inside a cgroup namespace (`cgroup`/`cgroup2`).
    pub fstype: String,
    /// Mount data for a fresh mount (`memory`, `name=systemd`, ...).
    pub data: String,
}

/// A device node to create in the container's /dev.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePlan {
    /// Container path (absolute, under /dev).
    pub path: String,
    /// `S_IFCHR`, `S_IFBLK` or `S_IFIFO`.
    pub kind: u32,
    /// Major number.
    pub major: u64,
    /// Minor number.
    pub minor: u64,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// Capability sets as bit masks (bit N = capability number N).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapPlan {
    /// Bounding set.
    pub bounding: u64,
    /// Effective set.
    pub effective: u64,
    /// Permitted set.
    pub permitted: u64,
    /// Inheritable set.
    pub inheritable: u64,
    /// Ambient set.
    pub ambient: u64,
}

/// One rlimit.
#[derive(Debug, Clone)]
pub struct RlimitPlan {
    /// Spec name (`RLIMIT_NOFILE`) for messages.
    pub name: String,
    /// Resource.
    pub resource: Resource,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// The user process: what to exec and with which credentials.
#[derive(Debug, Clone)]
pub struct ProcessPlan {
    /// argv.
    pub args: CStringArray,
    /// args[0] as given.
    pub arg0: String,
    /// envp.
    pub env: CStringArray,
    /// `PATH` from the process environment (for the executable lookup).
    pub path_env: String,
    /// Whether `HOME` is set in `env`.
    pub has_home: bool,
    /// Working directory (container path).
    pub cwd: String,
    /// uid / gid inside the container.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Supplementary gids.
    pub additional_gids: Vec<u32>,
    /// umask.
    pub umask: Option<u32>,
    /// rlimits.
    pub rlimits: Vec<RlimitPlan>,
    /// `noNewPrivileges`.
    pub no_new_privs: bool,
    /// Capabilities; `None` keeps the creator's (runc does the same when the spec has none).
    pub caps: Option<CapPlan>,
    /// `oomScoreAdj`.
    pub oom_score_adj: Option<i32>,
    /// `terminal`.
    pub terminal: bool,
    /// `consoleSize` (rows, cols).
    pub console_size: Option<(u16, u16)>,
    /// Descriptors 3..3+N pass through to the process.
    pub preserve_fds: u32,
    /// `scheduler`.
    pub scheduler: Option<crate::procattr::SchedPlan>,
    /// `ioPriority`.
    pub io_priority: Option<crate::procattr::IoPrioPlan>,
    /// `execCPUAffinity`; only an exec'd process has it (the runtime spec: not applicable to
    /// the container's init).
    pub cpu_affinity: Option<crate::procattr::AffinityPlan>,
    /// `apparmorProfile` (non-empty).
    pub apparmor_profile: Option<String>,
    /// `selinuxLabel` (non-empty; the plan checked that SELinux is enabled).
    pub selinux_label: Option<String>,
    /// The container's `linux.memoryPolicy` (see [`container_settings`]).
    pub mem_policy: Option<crate::procattr::MemPolicyPlan>,
    /// The container's `linux.personality` persona (see [`container_settings`]).
    pub personality: Option<libc::c_ulong>,
    /// The session keyring the process joins; `None` keeps its creator's (`--no-new-keyring`).
    pub session_keyring: Option<SessionKeyring>,
}

/// A container's own session keyring, as runc makes it: keyrings are not namespaced, so
/// without one the container would share the session keyring of whoever started berth.
#[derive(Debug, Clone)]
pub struct SessionKeyring {
    /// `_ses.<id>`: the init creates it, exec processes join it by this name.
    pub name: std::ffi::CString,
    /// Permission bits the creator adds so that later processes may find it by name: search
    /// for its owner (`KEY_USR_SEARCH`), or for everyone with a user namespace
    /// (`KEY_OTH_SEARCH`), as runc sets them. `None` for an exec process, which only joins.
    pub add_perm: Option<u32>,
}

impl SessionKeyring {
    /// The keyring of container `id`; `creator` for the init.
    pub fn of(id: &str, creator: bool, userns: bool) -> Result<SessionKeyring> {
        let name = std::ffi::CString::new(format!("_ses.{id}"))
            .map_err(|_| Error::Invalid(format!("container id {id:?}: NUL byte")))?;
        let add_perm = creator.then_some(if userns { 0x0000_0008 } else { 0x0008_0000 });
        Ok(SessionKeyring { name, add_perm })
    }
}

/// The environment as runc's init builds it (`os.Setenv` per entry): a later entry for a key
/// replaces the earlier one in place, so each key appears once, with its last value, where it
/// first appeared. execve would otherwise pass both and `getenv` return the first.
pub fn dedup_env(env: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(env.len());
    let mut at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for e in env {
        let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k).to_string();
        match at.get(&key) {
            Some(&i) => out[i] = e,
            None => {
                at.insert(key, out.len());
                out.push(e);
            }
        }
    }
    out
}

/// A namespace the container joins (`linux.namespaces[i].path`). The parent opens the file
/// and checks its type while building the plan, before any cgroup, clone or mount exists; the
/// joins then use this descriptor, so what is joined is exactly what was checked. (A `mount`
/// entry naming a network namespace once let the container's mounts and pivot_root happen in
/// the caller's own mount namespace.)
#[derive(Debug)]
pub struct JoinedNs {
    /// The path as the spec gives it (for messages).
    pub path: PathBuf,
    /// The opened namespace file.
    pub fd: OwnedFd,
    /// Its type, which `setns` is told so that the kernel checks it again.
    pub kind: LinkNameSpaceType,
}

impl JoinedNs {
    /// `setns(fd, CLONE_NEW<kind>)`.
    pub fn enter(&self) -> Result<()> {
        rustix::thread::move_into_link_name_space(self.fd.as_fd(), Some(self.kind)).map_err(|e| {
            Error::io(format!("joining {} namespace {}", kind_name(self.kind as u64), self.path.display()), e)
        })
    }
}

/// The spec's name of a namespace type given as its `CLONE_NEW*` bit.
fn kind_name(bits: u64) -> &'static str {
    match bits as i32 {
        libc::CLONE_NEWNS => "mount",
        libc::CLONE_NEWNET => "network",
        libc::CLONE_NEWPID => "pid",
        libc::CLONE_NEWIPC => "ipc",
        libc::CLONE_NEWUTS => "uts",
        libc::CLONE_NEWUSER => "user",
        libc::CLONE_NEWCGROUP => "cgroup",
        0x80 => "time",
        _ => "unknown",
    }
}

fn link_kind(t: LinuxNamespaceType) -> LinkNameSpaceType {
    match t {
        LinuxNamespaceType::Mount => LinkNameSpaceType::Mount,
        LinuxNamespaceType::Network => LinkNameSpaceType::Network,
        LinuxNamespaceType::Pid => LinkNameSpaceType::ProcessID,
        LinuxNamespaceType::Ipc => LinkNameSpaceType::InterProcessCommunication,
        LinuxNamespaceType::Uts => LinkNameSpaceType::HostNameAndNISDomainName,
        LinuxNamespaceType::User => LinkNameSpaceType::User,
        LinuxNamespaceType::Cgroup => LinkNameSpaceType::ControlGroup,
        LinuxNamespaceType::Time => LinkNameSpaceType::Time,
    }
}

/// Opens `linux.namespaces[i].path` and checks that it is a namespace of type `t`.
fn open_namespace(i: usize, t: LinuxNamespaceType, path: &Path) -> Result<JoinedNs> {
    let at = format!("linux.namespaces[{i}].path");
    let kind = link_kind(t);
    let want = kind_name(kind as u64);
    let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).map_err(|e| {
        Error::Invalid(format!("{at}: cannot open {} ({want} namespace): {}", path.display(), std::io::Error::from(e)))
    })?;
    match berth_sys::namespace_type(fd.as_fd()) {
        Ok(bits) if bits == kind as u64 => Ok(JoinedNs { path: path.to_path_buf(), fd, kind }),
        Ok(bits) => {
            Err(Error::Invalid(format!("{at}: {} is a {} namespace, not {want}", path.display(), kind_name(bits))))
        }
        Err(_) => Err(Error::Invalid(format!(
            "{at}: {} is not a namespace file (expected a {want} namespace)",
            path.display()
        ))),
    }
}

/// The full setup plan of a container init.
#[derive(Debug)]
pub struct Plan {
    /// Container id.
    pub id: String,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Absolute host path of the rootfs.
    pub rootfs: PathBuf,
    /// `root.readonly`.
    pub readonly_root: bool,
    /// `linux.rootfsPropagation`.
    pub rootfs_propagation: Option<libc::c_ulong>,
    /// chroot instead of pivot_root.
    pub no_pivot: bool,
    /// The container has a mount namespace of its own (new or joined). Without one it shares
    /// its caller's: mounts are made there under the rootfs (and removed on delete), nothing
    /// else in it is changed, and the process is confined with chroot.
    pub own_mntns: bool,
    /// Namespaces created by clone (CLONE_NEW* bits).
    pub clone_flags: u64,
    /// Namespaces joined by path in the child.
    pub join: Vec<JoinedNs>,
    /// pid namespace to join (done by the parent before clone: it applies to children).
    pub join_pid: Option<JoinedNs>,
    /// time namespace to join (parent, before clone).
    pub join_time: Option<JoinedNs>,
    /// A new time namespace with offsets (parent unshares and writes them before clone).
    pub time_offsets: Option<String>,
    /// A new cgroup namespace, unshared by the child after it was moved into its cgroups.
    pub unshare_cgroupns: bool,
    /// A new user namespace (the child waits for its id maps).
    pub new_userns: bool,
    /// berth itself runs in a user namespace that is not the host's (rootless podman's), so
    /// the container is in it too without the spec listing one.
    pub ambient_userns: bool,
    /// An existing user namespace to join. The child joins it first and then unshares
    /// `unshare_after_user`, so the new namespaces are owned by it (a clone from the parent
    /// would make them owned by the host's user namespace).
    pub join_user: Option<JoinedNs>,
    /// Namespaces the child creates with unshare after joining `join_user`.
    pub unshare_after_user: u64,
    /// With `join_user` and a new pid namespace: the child unshares it and forks the real
    /// init (with CLONE_PARENT, so it is still the caller's child).
    pub fork_for_pidns: bool,
    /// uid_map / gid_map contents written by the parent.
    pub uid_map: String,
    /// See `uid_map`.
    pub gid_map: String,
    /// Mounts in spec order.
    pub mounts: Vec<MountPlan>,
    /// Hierarchies for `cgroup` mounts.
    pub cgroup_mounts: Vec<CgroupMountPlan>,
    /// Devices to create in /dev.
    pub devices: Vec<DevicePlan>,
    /// Whether to populate /dev (false when /dev is bind-mounted).
    pub populate_dev: bool,
    /// `linux.maskedPaths`.
    pub masked: Vec<String>,
    /// `linux.readonlyPaths`.
    pub readonly: Vec<String>,
    /// `hostname`.
    pub hostname: Option<String>,
    /// `domainname`.
    pub domainname: Option<String>,
    /// `linux.sysctl` as (/proc/sys relative path, value).
    pub sysctl: Vec<(String, String)>,
    /// `linux.mountLabel` (non-empty), passed to the mounts runc 1.1 labels.
    pub mount_label: Option<String>,
    /// The user process.
    pub process: ProcessPlan,
    /// A connected `--console-socket` to send the PTY master to.
    pub console_socket: Option<OwnedFd>,
    /// Spec has prestart/createRuntime hooks (the parent runs them: one extra round trip).
    pub runtime_hooks: bool,
    /// createContainer hooks (run by the init in the container's namespaces, before
    /// pivot_root).
    pub create_container_hooks: Vec<oci_spec::runtime::Hook>,
    /// startContainer hooks (run by the init after start, before the user process).
    pub start_container_hooks: Vec<oci_spec::runtime::Hook>,
    /// The compiled `linux.seccomp` filter (compiled in the parent, installed by the child).
    pub seccomp: Option<berth_seccomp::CompiledFilter>,
    /// Detached trees for bind mounts, by index in `mounts`, made by the parent in the
    /// host's user namespace; the init only attaches them. Idmapped binds always (setting
    /// the mapping needs the host's privileges), and with a user namespace every bind whose
    /// source lies outside the rootfs (the init could not reach what only host root can).
    pub bind_trees: Vec<(usize, OwnedFd)>,
}

impl Plan {
    /// The init runs in a user namespace (created, joined, or berth's own): device nodes must
    /// be bound from the host since mknod is not permitted there.
    pub fn in_userns(&self) -> bool {
        self.new_userns || self.join_user.is_some() || self.ambient_userns
    }

    /// The container gets a network namespace of its own (created, not joined): the init
    /// brings its lo up.
    pub fn new_netns(&self) -> bool {
        (self.clone_flags | self.unshare_after_user) & libc::CLONE_NEWNET as u64 != 0
    }

    /// The container has its own pid namespace.
    pub fn own_pidns(&self) -> bool {
        self.clone_flags & libc::CLONE_NEWPID as u64 != 0 || self.fork_for_pidns
    }
}

/// Default devices every container gets (runc's list), mode 0666, owned by root.
pub fn default_devices() -> Vec<DevicePlan> {
    [
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ]
    .iter()
    .map(|&(p, major, minor)| DevicePlan {
        path: p.into(),
        kind: libc::S_IFCHR,
        major,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

/// Maps a spec rlimit type to (spec name, resource).
pub fn rlimit_resource(t: PosixRlimitType) -> Option<(&'static str, Resource)> {
    use PosixRlimitType as T;
    Some(match t {
        T::RlimitCpu => ("RLIMIT_CPU", Resource::Cpu),
        T::RlimitFsize => ("RLIMIT_FSIZE", Resource::Fsize),
        T::RlimitData => ("RLIMIT_DATA", Resource::Data),
        T::RlimitStack => ("RLIMIT_STACK", Resource::Stack),
        T::RlimitCore => ("RLIMIT_CORE", Resource::Core),
        T::RlimitRss => ("RLIMIT_RSS", Resource::Rss),
        T::RlimitNproc => ("RLIMIT_NPROC", Resource::Nproc),
        T::RlimitNofile => ("RLIMIT_NOFILE", Resource::Nofile),
        T::RlimitMemlock => ("RLIMIT_MEMLOCK", Resource::Memlock),
        T::RlimitAs => ("RLIMIT_AS", Resource::As),
        T::RlimitLocks => ("RLIMIT_LOCKS", Resource::Locks),
        T::RlimitSigpending => ("RLIMIT_SIGPENDING", Resource::Sigpending),
        T::RlimitMsgqueue => ("RLIMIT_MSGQUEUE", Resource::Msgqueue),
        T::RlimitNice => ("RLIMIT_NICE", Resource::Nice),
        T::RlimitRtprio => ("RLIMIT_RTPRIO", Resource::Rtprio),
        T::RlimitRttime => ("RLIMIT_RTTIME", Resource::Rttime),
        #[allow(unreachable_patterns)]
        _ => return None,
    })
}

fn cap_mask<'a, I>(field: &str, caps: Option<I>) -> Result<u64>
where
    I: IntoIterator<Item = &'a oci_spec::runtime::Capability>,
{
    let mut mask = 0u64;
    for c in caps.into_iter().flatten() {
        let n = berth_spec::capability_to_number(*c);
        if n <= crate::caps::last_cap() {
            mask |= 1u64 << n;
        } else {
            log::warn!("{field}: {c} is unknown to this kernel: ignored");
        }
    }
    Ok(mask)
}

/// Builds the process part of a plan from `process` (used by create and exec).
pub fn process_plan(process: &Process, preserve_fds: u32, extra_env: &[String]) -> Result<ProcessPlan> {
    let args: Vec<String> = process.args().clone().unwrap_or_default();
    let arg0 = args.first().cloned().ok_or_else(|| Error::Invalid("process.args: must not be empty".into()))?;
    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    env.extend(extra_env.iter().cloned());
    let env = dedup_env(env);
    let path_env = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH=").map(str::to_string))
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string());
    let has_home = env.iter().any(|e| e.starts_with("HOME="));
    let args = CStringArray::new(&args).map_err(|_| Error::Invalid("process.args: contains a NUL byte".into()))?;
    let envc = CStringArray::new(&env).map_err(|_| Error::Invalid("process.env: contains a NUL byte".into()))?;
    let user = process.user();
    let mut rlimits = Vec::new();
    for (i, r) in process.rlimits().iter().flatten().enumerate() {
        let (name, resource) = rlimit_resource(r.typ())
            .ok_or_else(|| Error::Invalid(format!("process.rlimits[{i}].type: unsupported rlimit")))?;
        rlimits.push(RlimitPlan { name: name.into(), resource, soft: r.soft(), hard: r.hard() });
    }
    let caps = match process.capabilities() {
        None => None,
        Some(c) => Some(CapPlan {
            bounding: cap_mask("process.capabilities.bounding", c.bounding().as_ref())?,
            effective: cap_mask("process.capabilities.effective", c.effective().as_ref())?,
            permitted: cap_mask("process.capabilities.permitted", c.permitted().as_ref())?,
            inheritable: cap_mask("process.capabilities.inheritable", c.inheritable().as_ref())?,
            ambient: cap_mask("process.capabilities.ambient", c.ambient().as_ref())?,
        }),
    };
    if let Some(c) = &caps {
        if c.ambient & !(c.permitted & c.inheritable) != 0 {
            log::debug!(
                "process.capabilities.ambient: skipping capabilities that are not both permitted and inheritable (as runc does)"
            );
        }
    }
    let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    let selinux_label = non_empty(process.selinux_label());
    // runc 1.1 refuses a label without SELinux before anything starts, with these words.
    crate::lsm::check_selinux_label(selinux_label.as_deref())?;
    let cpu_affinity = match process.exec_cpu_affinity() {
        Some(a) => crate::procattr::affinity_plan(a, "process.execCPUAffinity")?,
        None => None,
    };
    let console_size = process
        .console_size()
        .map(|b| (u16::try_from(b.height()).unwrap_or(u16::MAX), u16::try_from(b.width()).unwrap_or(u16::MAX)));
    Ok(ProcessPlan {
        args,
        arg0,
        env: envc,
        path_env,
        has_home,
        cwd: process.cwd().to_string_lossy().into_owned(),
        uid: user.uid(),
        gid: user.gid(),
        additional_gids: user.additional_gids().clone().unwrap_or_default(),
        umask: user.umask(),
        rlimits,
        no_new_privs: process.no_new_privileges().unwrap_or(false),
        caps,
        oom_score_adj: process.oom_score_adj(),
        terminal: process.terminal().unwrap_or(false),
        console_size,
        preserve_fds,
        scheduler: process.scheduler().as_ref().map(crate::procattr::sched_plan),
        io_priority: process.io_priority().as_ref().map(crate::procattr::io_prio_plan),
        cpu_affinity,
        apparmor_profile: non_empty(process.apparmor_profile()),
        selinux_label,
        mem_policy: None,
        personality: None,
        session_keyring: None,
    })
}

/// The container-wide settings every process of the container gets, init and exec alike:
/// `linux.memoryPolicy` and `linux.personality` (runc applies both in its init for either).
pub fn container_settings(p: &mut ProcessPlan, spec: &Spec) -> Result<()> {
    if let Some(linux) = spec.linux() {
        p.mem_policy = linux.memory_policy().as_ref().map(crate::procattr::mem_policy_plan).transpose()?;
        p.personality = crate::procattr::personality_of(linux);
    }
    Ok(())
}

/// Options of [`build`] that come from the command line rather than the spec.
#[derive(Debug, Default)]
pub struct BuildOptions {
    /// `--no-pivot`.
    pub no_pivot: bool,
    /// `--preserve-fds` plus LISTEN_FDS.
    pub preserve_fds: u32,
    /// Extra environment (LISTEN_FDS=...).
    pub extra_env: Vec<String>,
    /// `--no-new-keyring`: the init keeps its creator's session keyring.
    pub no_new_keyring: bool,
}

/// Builds the plan for container `id` from a validated `spec` in `bundle`.
pub fn build(id: &str, bundle: &Path, spec: &Spec, opts: BuildOptions) -> Result<Plan> {
    let root = spec.root().as_ref().ok_or_else(|| Error::Invalid("root: must be set".into()))?;
    let rootfs = bundle.join(root.path());
    let rootfs = std::fs::canonicalize(&rootfs)
        .map_err(|e| Error::Invalid(format!("root.path: rootfs {} does not exist: {e}", rootfs.display())))?;
    if !rootfs.is_dir() {
        return Err(Error::Invalid(format!("root.path: rootfs {} is not a directory", rootfs.display())));
    }
    let process = spec.process().as_ref().ok_or_else(|| Error::Invalid("process: must be set".into()))?;
    let linux = spec.linux().as_ref().ok_or_else(|| Error::Invalid("linux: must be set on Linux".into()))?;

    let mut clone_flags = 0u64;
    let mut join = Vec::new();
    let (mut join_pid, mut join_time) = (None, None);
    let mut new_userns = false;
    let mut join_user = None;
    let mut unshare_cgroupns = false;
    let mut has_mntns = false;
    for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
        let bit = ns.typ() as u64;
        if ns.typ() == LinuxNamespaceType::Mount {
            has_mntns = true;
        }
        match ns.path() {
            Some(p) if !p.as_os_str().is_empty() => {
                let joined = open_namespace(i, ns.typ(), p)?;
                match ns.typ() {
                    LinuxNamespaceType::Pid => join_pid = Some(joined),
                    LinuxNamespaceType::Time => join_time = Some(joined),
                    LinuxNamespaceType::User => join_user = Some(joined),
                    _ => join.push(joined),
                }
            }
            _ => match ns.typ() {
                LinuxNamespaceType::Cgroup => unshare_cgroupns = true,
                LinuxNamespaceType::User => {
                    new_userns = true;
                    clone_flags |= bit;
                }
                _ => clone_flags |= bit,
            },
        }
    }

    let (mut unshare_after_user, mut fork_for_pidns) = (0, false);
    if join_user.is_some() {
        let pid = libc::CLONE_NEWPID as u64;
        fork_for_pidns = clone_flags & pid != 0;
        unshare_after_user = clone_flags & !pid & !berth_sys::process::CLONE_NEWTIME;
        if clone_flags & berth_sys::process::CLONE_NEWTIME != 0 {
            return Err(Error::Invalid(
                "linux.namespaces: a new time namespace together with a joined user namespace is not supported".into(),
            ));
        }
        clone_flags = 0;
    }
    let time_offsets = if clone_flags & berth_sys::process::CLONE_NEWTIME != 0 {
        linux.time_offsets().as_ref().filter(|m| !m.is_empty()).map(|m| {
            m.iter()
                .map(|(clock, off)| format!("{clock} {} {}\n", off.secs().unwrap_or(0), off.nanosecs().unwrap_or(0)))
                .collect::<String>()
        })
    } else {
        None
    };
    if time_offsets.is_some() {
        clone_flags &= !berth_sys::process::CLONE_NEWTIME;
    }
    let map = |m: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>| -> String {
        m.into_iter().flatten().map(|x| format!("{} {} {}\n", x.container_id(), x.host_id(), x.size())).collect()
    };
    let uid_map = map(linux.uid_mappings().as_ref());
    let gid_map = map(linux.gid_mappings().as_ref());

    let mount_label = linux.mount_label().clone().filter(|l| !l.is_empty());
    let mut mounts = Vec::new();
    let mut populate_dev = true;
    for (index, m) in spec.mounts().iter().flatten().enumerate() {
        let destination = m.destination().to_string_lossy().into_owned();
        let destination = if destination.starts_with('/') { destination } else { format!("/{destination}") };
        let opts = mountopts::parse(m.options().as_deref().unwrap_or_default());
        let fstype = m.typ().clone().unwrap_or_default();
        let raw_source = m.source().as_ref().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let is_bind = opts.is_bind() || fstype == "bind";
        let kind = if is_bind {
            MountKind::Bind { dir: false }
        } else if fstype == "cgroup" || fstype == "cgroup2" {
            MountKind::Cgroup
        } else {
            MountKind::Fs
        };
        let (source, kind) = if let MountKind::Bind { .. } = kind {
            let p = Path::new(&raw_source);
            let abs = if p.is_absolute() { p.to_path_buf() } else { bundle.join(p) };
            let md = std::fs::metadata(&abs).map_err(|e| {
                Error::Invalid(format!("mounts[{index}].source: bind source {} is not accessible: {e}", abs.display()))
            })?;
            // Cleaned as runc does: a bind at `/dev/` is a /dev of the host's (or the
            // caller's) in which berth must create nothing.
            if crate::paths::clean(&destination) == "/dev" {
                populate_dev = false;
            }
            (abs.to_string_lossy().into_owned(), MountKind::Bind { dir: md.is_dir() })
        } else {
            (raw_source, kind)
        };
        let mut opts = opts;
        if is_bind {
            opts.flags |= libc::MS_BIND;
        }
        let idmap = if m.uid_mappings().is_some() || m.gid_mappings().is_some() || opts.idmap.is_some() {
            if !is_bind {
                return Err(Error::Invalid(format!(
                    "mounts[{index}]: idmapped mounts are supported for bind mounts only"
                )));
            }
            // An idmapped mount presents a file owned by on-disk id X as the id its user
            // namespace maps X to (map_id_down), so the OCI pair is written as is,
            // "containerID hostID size": containerID is the id on disk, hostID the id the
            // mount presents. That is runc's reading (tests/integration/idmap.bats: a file
            // owned by 0 under {0 -> 100000} shows as 100000 without a user namespace).
            let u = map(m.uid_mappings().as_ref().or(linux.uid_mappings().as_ref()));
            let g = map(m.gid_mappings().as_ref().or(linux.gid_mappings().as_ref()));
            if u.is_empty() || g.is_empty() {
                return Err(Error::Invalid(format!(
                    "mounts[{index}]: an idmapped mount needs uidMappings and gidMappings (on the mount or in linux)"
                )));
            }
            Some((u, g, opts.idmap == Some(true) || opts.is_recursive()))
        } else {
            None
        };
        if kind == MountKind::Fs && crate::lsm::labels_fs(&fstype) {
            opts.data = crate::lsm::with_mount_label(&opts.data, mount_label.as_deref());
        }
        mounts.push(MountPlan { index, destination, source, fstype, opts, kind, idmap });
    }

    let mut devices = default_devices();
    for (i, d) in linux.devices().iter().flatten().enumerate() {
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
            LinuxDeviceType::B => libc::S_IFBLK,
            LinuxDeviceType::P => libc::S_IFIFO,
            LinuxDeviceType::A => {
                return Err(Error::Invalid(format!("linux.devices[{i}].type: \"a\" is not a device type")))
            }
        };
        let path = d.path().to_string_lossy().into_owned();
        devices.retain(|x| x.path != path);
        // A FIFO has no device number: whatever the spec says is ignored.
        let number = |n: i64| if kind == libc::S_IFIFO { 0 } else { u64::try_from(n).unwrap_or(0) };
        devices.push(DevicePlan {
            path,
            kind,
            major: number(d.major()),
            minor: number(d.minor()),
            mode: d.file_mode().unwrap_or(0o666) & 0o7777,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        });
    }

    let sysctl = linux.sysctl().iter().flatten().map(|(k, v)| (k.replace('.', "/"), v.clone())).collect();

    let mut extra_env = opts.extra_env;
    if let Some(p) = process.env() {
        extra_env.retain(|e| !p.contains(e));
    }
    let mut process_plan = process_plan(process, opts.preserve_fds, &extra_env)?;
    container_settings(&mut process_plan, spec)?;
    // The runtime spec: "not applicable to the container's init process" (runc ignores it
    // there too); an exec takes the container's process.execCPUAffinity.
    process_plan.cpu_affinity = None;
    if !opts.no_new_keyring {
        process_plan.session_keyring = Some(SessionKeyring::of(id, true, new_userns || join_user.is_some())?);
    }
    let hooks = spec.hooks().as_ref();
    #[allow(deprecated)]
    let runtime_hooks = hooks.is_some_and(|h| {
        h.prestart().as_ref().is_some_and(|v| !v.is_empty())
            || h.create_runtime().as_ref().is_some_and(|v| !v.is_empty())
    });
    let create_container_hooks = hooks.and_then(|h| h.create_container().clone()).unwrap_or_default();
    let start_container_hooks = hooks.and_then(|h| h.start_container().clone()).unwrap_or_default();

    Ok(Plan {
        id: id.to_string(),
        bundle: bundle.to_path_buf(),
        rootfs,
        readonly_root: root.readonly().unwrap_or(false),
        rootfs_propagation: linux.rootfs_propagation().as_deref().and_then(mountopts::rootfs_propagation),
        no_pivot: opts.no_pivot,
        own_mntns: has_mntns,
        clone_flags,
        join,
        join_pid,
        join_time,
        join_user,
        unshare_after_user,
        fork_for_pidns,
        time_offsets,
        unshare_cgroupns,
        new_userns,
        ambient_userns: false,
        uid_map,
        gid_map,
        mounts,
        cgroup_mounts: Vec::new(),
        devices,
        populate_dev,
        masked: linux.masked_paths().clone().unwrap_or_default(),
        readonly: linux.readonly_paths().clone().unwrap_or_default(),
        hostname: spec.hostname().clone().filter(|h| !h.is_empty()),
        domainname: spec.domainname().clone().filter(|h| !h.is_empty()),
        sysctl,
        mount_label,
        process: process_plan,
        console_socket: None,
        runtime_hooks,
        create_container_hooks,
        start_container_hooks,
        seccomp: None,
        bind_trees: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_keeps_the_last_value_in_the_first_place() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            dedup_env(v(&["PATH=/bin", "FOO=a", "BAR=1", "FOO=b", "FOO=c", "NOEQ", "NOEQ", "E="])),
            v(&["PATH=/bin", "FOO=c", "BAR=1", "NOEQ", "E="])
        );
    }
}
