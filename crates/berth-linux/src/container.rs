//! Container lifecycle operations behind the CLI: create, start, run, kill, delete, state,
//! list. Each runs in a short-lived, single-threaded `berth` process.
//!
//! Create is one `clone3` carrying every new namespace plus `CLONE_PIDFD` and, where a cgroup
//! v2 directory exists, `CLONE_INTO_CGROUP`. The init is a direct child of the caller (so a
//! caller's subreaper reaps it) and the parent/child protocol is: parent sends Go (cgroups
//! joined, id maps written) → child sends Ready → create returns. `start` wakes the init
//! through the exec fifo. Any failure before Ready runs [`Guard`]'s cleanup: the init is
//! killed and reaped, its cgroups removed, its state directory deleted; mounts die with the
//! init's mount namespace, so no host mount can be left.

use std::fs;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use berth_core::state::{ContainerStatus, HookState};
use berth_sys::process::{clone3, Forked, CLONE_CLEAR_SIGHAND, CLONE_PIDFD};
use oci_spec::runtime::Spec;
use rustix::fs::{Mode, OFlags};
use rustix::process::{Pid, Signal};

use crate::error::{Context, Error, Result};
use crate::plan::{self, BuildOptions, Plan};
use crate::state::{self, ContainerState, EXEC_FIFO};
use crate::sync::{Channel, Msg};

/// What `create`/`run` should do after setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchMode {
    /// `create`: leave the init waiting on the exec fifo.
    Create,
    /// `run -d`: start and return.
    RunDetached,
    /// `run`: start, forward signals, wait, delete, return the exit status.
    RunForeground,
}

/// Options of `create` and `run`.
#[derive(Debug, Default)]
pub struct CreateOptions {
    /// State root (`--root`).
    pub root: PathBuf,
    /// Container id.
    pub id: String,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// `--pid-file`.
    pub pid_file: Option<PathBuf>,
    /// `--console-socket`.
    pub console_socket: Option<PathBuf>,
    /// `--no-pivot`.
    pub no_pivot: bool,
    /// `--preserve-fds`.
    pub preserve_fds: u32,
    /// The spec; `None` reads `<bundle>/config.json`. A given spec is validated the same way.
    pub spec: Option<Spec>,
    /// Descriptors for the init's stdio; `None` inherits the caller's.
    pub stdio: Option<crate::init::Stdio>,
    /// `create` with a terminal and no console socket returns the PTY master instead of
    /// failing (for the embedding library; the CLI needs a console socket to detach).
    pub keep_master: bool,
    /// `--rootless` (detected by default).
    pub rootless: crate::rootless::Rootless,
    /// `--no-new-keyring`: the init keeps its creator's session keyring instead of joining a
    /// new one of its own (`_ses.<id>`), and so do exec processes.
    pub no_new_keyring: bool,
    /// `run --keep`: a foreground run leaves the container `stopped`, its cgroups included,
    /// for `delete` instead of removing it when the process exits.
    pub keep: bool,
    /// `run --no-subreaper`: a foreground run does not become a child subreaper, so orphans
    /// of a container without its own pid namespace go to the caller's subreaper.
    pub no_subreaper: bool,
}

/// What [`launch`] produced.
#[derive(Debug)]
pub enum Launched {
    /// `create`: the init waits for `start`. The pidfd is valid in the calling process (the
    /// init is its child).
    Created {
        /// Host pid of the init.
        pid: i32,
        /// pidfd of the init.
        pidfd: OwnedFd,
        /// The PTY master when the process has a terminal and no console socket was given.
        master: Option<OwnedFd>,
        /// The state just saved, so a long-lived caller (a monitor, the shim) can start and
        /// delete the container without reading it back from disk.
        state: Box<ContainerState>,
    },
    /// `run -d`: started and left running.
    Detached,
    /// `run`: the init exited with this status and the container was deleted.
    Exited(i32),
}

/// Cleanup of a partially created container. Disarmed on success.
pub(crate) struct Guard<'a> {
    root: &'a Path,
    id: &'a str,
    dir_created: bool,
    /// The cgroup directories this create made (not a pre-existing cgroup's).
    pub(crate) cgroup: Option<berth_cgroups::Created>,
    pub(crate) child: Option<(i32, OwnedFd)>,
    /// The rootfs of a container without a mount namespace of its own, whose mounts are in
    /// ours.
    shared_mounts: Option<PathBuf>,
    /// The resctrl group this create set up.
    rdt: Option<crate::resctrl::RdtGroup>,
}

impl Guard<'_> {
    pub(crate) fn disarm(mut self) {
        self.dir_created = false;
        self.cgroup = None;
        self.child = None;
        self.shared_mounts = None;
        self.rdt = None;
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if let Some((pid, pidfd)) = self.child.take() {
            let _ = rustix::process::pidfd_send_signal(&pidfd, Signal::KILL);
            if let Some(p) = Pid::from_raw(pid) {
                let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty());
            }
        }
        if let Some(rootfs) = self.shared_mounts.take() {
            if let Err(e) = crate::rootfs::unmount_under_rootfs(&rootfs) {
                log::warn!("cleaning up the mounts of {}: {e}", self.id);
            }
        }
        if let Some(created) = self.cgroup.take() {
            if let Err(e) = created.remove() {
                log::warn!("cleaning up cgroups of {}: {e}", self.id);
            }
        }
        if let Some(g) = self.rdt.take() {
            g.remove();
        }
        if self.dir_created {
            let _ = fs::remove_dir_all(state::dir(self.root, self.id));
        }
    }
}

/// The name of `uid` in the host's /etc/passwd (runc shows it as the container's owner), or
/// `#uid` when it has none.
pub(crate) fn user_name(uid: u32) -> String {
    fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| format!("#{uid}"))
}

fn ensure_root(root: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .ctx(|| format!("creating state root {}", root.display()))
}

/// Loads and validates `<bundle>/config.json`, logging runc-style warnings.
pub fn load_spec(bundle: &Path) -> Result<Spec> {
    let loaded = berth_spec::load_bundle(bundle).map_err(|e| match e {
        // An I/O error already names the file; a content error is located inside it.
        berth_spec::SpecError::Io { .. } => Error::Invalid(e.to_string()),
        _ => Error::Invalid(format!("{}: {e}", bundle.join("config.json").display())),
    })?;
    for w in &loaded.warnings {
        log::warn!("{w}");
    }
    Ok(loaded.spec)
}

/// `linux.resources` with the device rules runc 1.1 applies: deny all, the spec's rules, its
/// fixed allow list ([`berth_cgroups::runc_device_rules`]). Nothing comes from `linux.devices`.
fn effective_resources(spec: &Spec) -> Option<oci_spec::runtime::LinuxResources> {
    let linux = spec.linux().as_ref()?;
    let mut res = linux.resources().clone().unwrap_or_default();
    res.set_devices(Some(berth_cgroups::runc_device_rules(res.devices().as_deref().unwrap_or_default())));
    Some(res)
}

/// Creates the container's cgroups. An unprivileged caller usually cannot (cgroups are not
/// delegated to it), so rootless containers run without them, with a warning when the spec
/// asked for limits that therefore do not apply (runc behaves the same).
pub(crate) fn resolve_cgroup(spec: &Spec, id: &str, rootless: bool) -> Result<Option<berth_cgroups::Cgroup>> {
    let linux = spec.linux().as_ref().ok_or_else(|| Error::Invalid("linux: must be set".into()))?;
    let path = linux.cgroups_path().as_ref().and_then(|p| p.to_str());
    if !rootless {
        return berth_cgroups::Cgroup::resolve(path, id).map(Some).map_err(|e| Error::Cgroup(e.to_string()));
    }
    // Rootless, as runc: only a cgroup2 subtree delegated to the caller, never v1.
    let cg = berth_cgroups::Cgroup::resolve_delegated(path, id).unwrap_or_else(|e| {
        log::debug!("rootless: no delegated cgroup: {e}");
        None
    });
    let (_, dropped) = berth_cgroups::without_unavailable(cg.as_ref(), &linux.resources().clone().unwrap_or_default());
    if !dropped.is_empty() {
        log::warn!(
            "rootless: {} cannot be applied and {} ignored: {}",
            dropped.join(", "),
            if dropped.len() == 1 { "is" } else { "are" },
            if cg.is_some() {
                "the cgroup2 subtree delegated to this user lacks the controllers"
            } else {
                "no cgroup2 subtree is delegated to this user (cgroup v1 has no delegation)"
            }
        );
    }
    Ok(cg)
}

/// Creates the cgroup [`resolve_cgroup`] found.
pub(crate) fn create_cgroup(
    spec: &Spec,
    cg: Option<berth_cgroups::Cgroup>,
    rootless: bool,
) -> Result<Option<(berth_cgroups::Cgroup, berth_cgroups::Created)>> {
    let Some(cg) = cg else { return Ok(None) };
    let linux = spec.linux().as_ref().ok_or_else(|| Error::Invalid("linux: must be set".into()))?;
    let attempt = || {
        // runc 1.1 warns and carries on (1.2 refuses): the container shares its limits, and
        // `kill --all`, `pause` and `delete` would act on the other processes too.
        if let Ok(pids) = cg.pids() {
            if !pids.is_empty() {
                log::warn!("container's cgroup is not empty: {} process(es) found", pids.len());
            }
        }
        let resources = match effective_resources(spec) {
            Some(r) if cg.is_delegated() => Some(berth_cgroups::without_unavailable(Some(&cg), &r).0),
            other => other,
        };
        let created = cg.create(resources.as_ref())?;
        Ok::<_, berth_cgroups::CgroupError>((cg.clone(), created))
    };
    match attempt() {
        Ok(cg) => Ok(Some(cg)),
        // Not a permission problem: running without cgroups would hide it.
        Err(e @ berth_cgroups::CgroupError::Frozen { .. }) => Err(Error::Cgroup(e.to_string())),
        Err(e) if rootless => {
            if linux.resources().is_some() {
                log::warn!("rootless: cgroups are not available ({e}); linux.resources is ignored");
            }
            Ok(None)
        }
        Err(e) => Err(Error::Cgroup(e.to_string())),
    }
}

/// Runs `create` or `run`.
pub fn launch(opts: &CreateOptions, mode: LaunchMode) -> Result<Launched> {
    berth_core::state::validate_id(&opts.id).map_err(Error::Invalid)?;
    ensure_root(&opts.root)?;
    let bundle =
        fs::canonicalize(&opts.bundle).map_err(|e| Error::Invalid(format!("bundle {}: {e}", opts.bundle.display())))?;
    let dir = state::dir(&opts.root, &opts.id);
    match fs::DirBuilder::new().mode(0o711).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(Error::Exists(opts.id.clone())),
        Err(e) => return Err(Error::io(format!("creating {}", dir.display()), e)),
    }
    let mut guard = Guard {
        root: &opts.root,
        id: &opts.id,
        dir_created: true,
        cgroup: None,
        child: None,
        shared_mounts: None,
        rdt: None,
    };
    let spec = match &opts.spec {
        None => load_spec(&bundle)?,
        Some(spec) => {
            let mut warnings = Vec::new();
            berth_spec::validate_with_warnings(spec, &mut warnings).map_err(|e| Error::Invalid(e.to_string()))?;
            for w in &warnings {
                log::warn!("{w}");
            }
            spec.clone()
        }
    };
    // VM isolation (docs/vm-isolation.md): the same operations, the container in a VM.
    if berth_vm::requested(&spec).map_err(|e| Error::Invalid(e.to_string()))? {
        return crate::vm::launch(opts, mode, &bundle, spec, guard);
    }
    let (listen_fds, extra_env) = listen_fds();
    let mut plan = plan::build(
        &opts.id,
        &bundle,
        &spec,
        BuildOptions {
            no_pivot: opts.no_pivot,
            preserve_fds: opts.preserve_fds + listen_fds,
            extra_env,
            no_new_keyring: opts.no_new_keyring,
        },
    )?;
    if !plan.own_mntns {
        guard.shared_mounts = Some(plan.rootfs.clone());
    }
    let detaches = mode == LaunchMode::RunDetached || (mode == LaunchMode::Create && !opts.keep_master);
    if plan.process.terminal && opts.console_socket.is_none() && detaches {
        return Err(Error::Invalid(
            "process.terminal is true but no --console-socket was given (needed to detach with a terminal)".into(),
        ));
    }

    let rootless = opts.rootless.decide();
    // Root of a user namespace that is not in the spec (rootless podman's): device nodes
    // cannot be made there either.
    plan.ambient_userns = crate::rootless::in_user_namespace();
    // The state is on disk, marked `creating`, before anything it names exists (the cgroups,
    // then the init): a berth killed at any later point leaves a record that `delete -f`
    // cleans up from. It is written again with the init's pid, and once more when ready.
    let mut st = ContainerState {
        id: opts.id.clone(),
        pid: 0,
        start_time: 0,
        bundle: bundle.clone(),
        rootfs: plan.rootfs.clone(),
        created: berth_core::time::format_rfc3339_nanos(SystemTime::now()),
        owner: user_name(rustix::process::geteuid().as_raw()),
        annotations: spec.annotations().clone().unwrap_or_default().into_iter().collect(),
        cgroup: resolve_cgroup(&spec, &opts.id, rootless)?,
        own_pidns: plan.own_pidns(),
        creating: true,
        intel_rdt: None,
        no_new_keyring: opts.no_new_keyring,
        spec,
    };
    st.save(&opts.root)?;
    let spec = &st.spec;
    let linux = spec.linux().as_ref().ok_or_else(|| Error::Invalid("linux: must be set".into()))?;
    let cg = match create_cgroup(spec, st.cgroup.take(), rootless)? {
        Some((cg, created)) => {
            guard.cgroup = Some(created);
            plan.cgroup_mounts = crate::cgroupfs::mount_plan(&cg);
            Some(cg)
        }
        None => None,
    };
    if let Some(rdt) = linux.intel_rdt() {
        guard.rdt = Some(crate::resctrl::prepare(rdt, &opts.id)?);
    }
    if let Some(sc) = linux.seccomp() {
        let cache = opts.root.join(".cache").join("seccomp");
        plan.seccomp =
            Some(berth_seccomp::compile_cached(sc, &cache).map_err(|e| Error::Invalid(format!("linux.seccomp: {e}")))?);
    }

    for mp in &plan.mounts {
        if let Some((u, g, _)) = &mp.idmap {
            let tree = crate::userns::mapped_userns(u, g)
                .and_then(|ns| crate::rootfs::bind_tree(mp, Some(&ns)))
                .map_err(|e| Error::Invalid(format!("mounts[{}] ({}): idmap: {e}", mp.index, mp.destination)))?;
            plan.bind_trees.push((mp.index, tree));
        } else if !rootless
            && plan.in_userns()
            && matches!(mp.kind, plan::MountKind::Bind { .. })
            && !mp.source_in_rootfs(&plan.rootfs)
        {
            // The init resolves paths as the container's root, which is an unprivileged user
            // to host files: a source only host root can reach must be opened here, before
            // the user namespace. (Sources inside the rootfs are left to the init: they may
            // lie under the container's own earlier mounts. A rootless caller has no more
            // access than its init, and may not clone mounts of the host's namespace.)
            let tree = crate::rootfs::bind_tree(mp, None)
                .map_err(|e| Error::Invalid(format!("mounts[{}] ({}): {e}", mp.index, mp.destination)))?;
            plan.bind_trees.push((mp.index, tree));
        }
    }
    let fifo = if mode == LaunchMode::Create {
        let p = dir.join(EXEC_FIFO);
        let c = crate::paths::cstr("exec fifo", &p.to_string_lossy())?;
        rustix::fs::mknodat(rustix::fs::CWD, c.as_c_str(), rustix::fs::FileType::Fifo, Mode::from_raw_mode(0o600), 0)
            .ctx(|| format!("creating {}", p.display()))?;
        Some(
            rustix::fs::open(&p, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
                .ctx(|| format!("opening {}", p.display()))?,
        )
    } else {
        None
    };
    let (console_parent, console_child) =
        crate::tty::console_endpoints(opts.console_socket.as_deref(), plan.process.terminal)?;
    plan.console_socket = console_child;
    let switches_ns = plan.join_pid.is_some() || plan.join_time.is_some() || plan.time_offsets.is_some();
    let home_ns = switches_ns.then(ChildrenNs::save);
    prepare_parent_namespaces(&plan)?;
    let forward = if mode == LaunchMode::RunForeground {
        if !opts.no_subreaper {
            // As runc's `run`: orphans of the container (one without a pid namespace of its
            // own) come to us and are reaped while we wait, instead of piling up as zombies
            // under a PID 1 that may not reap.
            rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
                .ctx(|| "becoming a child subreaper".to_string())?;
        }
        Some(crate::signals::Forwarder::block()?)
    } else {
        None
    };

    let (parent_chan, child_chan) = Channel::pair().ctx(|| "creating the setup channel".to_string())?;
    let unified = match cg.as_ref().and_then(|c| c.unified_dir()) {
        Some(d) => Some(
            rustix::fs::open(d, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                .ctx(|| format!("opening {}", d.display()))?,
        ),
        None => None,
    };
    let flags = plan.clone_flags | CLONE_PIDFD | CLONE_CLEAR_SIGHAND;
    let forked = clone3(flags, unified.as_ref().map(|f| f.as_fd())).ctx(|| "clone3".to_string())?;
    let (mut pid, pidfd) = match forked {
        Forked::Child(child) => {
            // The init keeps only what it uses: no parent-side descriptor (least of all a
            // host directory like the cgroup dir, cf. CVE-2024-21626) survives into it.
            drop(parent_chan);
            drop(unified);
            drop(console_parent);
            crate::init::run(&child, &plan, &child_chan, fifo, opts.stdio.as_ref())
        }
        Forked::Parent { pid, pidfd } => (pid, pidfd.ok_or_else(|| Error::Init("clone3 returned no pidfd".into()))?),
    };
    drop(home_ns);
    drop(child_chan);
    drop(fifo);
    drop(plan.console_socket.take());
    guard.child = Some((pid, pidfd));

    log::debug!("container {}: init {pid} cloned (flags {:#x})", opts.id, plan.clone_flags);
    if let Some(cg) = &cg {
        cg.add_pid(pid, unified.is_some()).map_err(|e| Error::Cgroup(e.to_string()))?;
    }
    if let Some(g) = &guard.rdt {
        g.add_task(pid)?;
    }
    if plan.new_userns {
        write_id_maps(pid, &plan, rootless)?;
    }
    st.pid = pid;
    st.start_time = state::proc_stat(pid).map(|s| s.1).unwrap_or(0);
    st.cgroup = cg.clone();
    st.save(&opts.root)?;
    st.intel_rdt = guard.rdt.clone();
    let go_state = if plan.create_container_hooks.is_empty() && plan.start_container_hooks.is_empty() {
        String::new()
    } else {
        String::from_utf8_lossy(&hook_state(&st, ContainerStatus::Creating)).into_owned()
    };
    parent_chan
        .send(&Msg::Go(go_state), None)
        .ctx(|| "signalling the container init".to_string())
        .map_err(|e| init_error(&parent_chan, e))?;
    loop {
        match parent_chan.recv().ctx(|| "waiting for the container init".to_string())? {
            Some((Msg::Ready, _)) => break,
            Some((Msg::InitPid(init), _)) => {
                // The child forked the real init into a new pid namespace and exits: reap it
                // and follow the init instead.
                let (old, _) = guard.child.take().ok_or_else(|| Error::Init("lost the init".into()))?;
                let _ = rustix::process::waitpid(Pid::from_raw(old), rustix::process::WaitOptions::empty());
                let p = Pid::from_raw(init).ok_or_else(|| Error::Init(format!("bad init pid {init}")))?;
                let fd = rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty())
                    .ctx(|| "opening a pidfd for the init".to_string())?;
                guard.child = Some((init, fd));
                pid = init;
                st.pid = init;
                st.start_time = state::proc_stat(init).map(|s| s.1).unwrap_or(0);
                st.save(&opts.root)?;
                let go = String::from_utf8_lossy(&hook_state(&st, ContainerStatus::Creating)).into_owned();
                parent_chan.send(&Msg::Go(go), None).ctx(|| "signalling the container init".to_string())?;
            }
            Some((Msg::Hooks, _)) => {
                let json = hook_state(&st, ContainerStatus::Creating);
                let hooks = st.spec.hooks().clone().unwrap_or_default();
                #[allow(deprecated)]
                let res = crate::hooks::run_all("prestart", hooks.prestart().as_deref().unwrap_or_default(), &json)
                    .and_then(|()| {
                        crate::hooks::run_all(
                            "createRuntime",
                            hooks.create_runtime().as_deref().unwrap_or_default(),
                            &json,
                        )
                    });
                match res {
                    Ok(()) => parent_chan
                        .send(&Msg::HooksDone, None)
                        .ctx(|| "resuming the init".to_string())
                        .map_err(|e| init_error(&parent_chan, e))?,
                    Err(e) => {
                        let _ = parent_chan.send(&Msg::Abort(e.to_string()), None);
                        return Err(e);
                    }
                }
            }
            Some((Msg::SeccompListener(n), _)) => {
                let sc = st.spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
                let sc = sc.ok_or_else(|| Error::Init("seccomp listener without a seccomp profile".into()))?;
                let (_, init) = guard.child.as_ref().ok_or_else(|| Error::Init("lost the init".into()))?;
                let fd = crate::notify::take_listener(init.as_fd(), n, &parent_chan)?;
                let state = oci_state(&st, ContainerStatus::Creating);
                berth_seccomp::send_to_listener(sc, &state, pid, fd.as_fd())
                    .map_err(|e| Error::Invalid(format!("linux.seccomp.listenerPath: {e}")))?;
                drop(fd);
                parent_chan
                    .send(&Msg::ListenerTaken, None)
                    .ctx(|| "resuming the container init".to_string())
                    .map_err(|e| init_error(&parent_chan, e))?;
            }
            Some((Msg::Error(m), _)) => return Err(Error::Init(m)),
            Some((other, _)) => return Err(Error::Init(format!("unexpected message from the init: {other:?}"))),
            None => {
                return Err(Error::Init(
                    parent_chan.failure().unwrap_or_else(|| "container init exited during setup".into()),
                ));
            }
        }
    }
    let mut master = None;
    if let Some(a) = console_parent {
        let (_, m) = crate::tty::recv_fd(a.as_fd()).ctx(|| "receiving the PTY master".to_string())?;
        master = Some(m);
    }
    st.creating = false;
    st.save(&opts.root)?;
    if let Some(p) = &opts.pid_file {
        write_pid_file(p, pid)?;
    }
    if mode == LaunchMode::Create {
        let (pid, pidfd) = guard.child.take().ok_or_else(|| Error::Init("lost the init".into()))?;
        guard.disarm();
        return Ok(Launched::Created { pid, pidfd, master, state: Box::new(st) });
    }
    // EOF means the init exec'd (the channel is close-on-exec); an error means a
    // startContainer hook or the exec itself failed: report it, run poststop, clean up.
    parent_chan
        .send(&Msg::Start, None)
        .ctx(|| "starting the container".to_string())
        .map_err(|e| init_error(&parent_chan, e))?;
    let hooks = st.spec.hooks().clone().unwrap_or_default();
    // EOF with a failure left in the shared page: the init could not even send it (its
    // seccomp filter refused), so its execve failed just the same.
    let started = match parent_chan.recv().ctx(|| "waiting for the container process to start".to_string())? {
        None => parent_chan.failure().map(|m| Some((Msg::Error(m), None))).unwrap_or(None),
        other => other,
    };
    match started {
        None => {}
        Some((Msg::Error(m), _)) => {
            crate::hooks::run_all_warn(
                "poststop",
                hooks.poststop().as_deref().unwrap_or_default(),
                &hook_state(&st, ContainerStatus::Stopped),
            );
            return Err(Error::Init(m));
        }
        Some((other, _)) => return Err(Error::Init(format!("unexpected message from the init: {other:?}"))),
    }
    if let Err(e) = crate::hooks::run_all(
        "poststart",
        hooks.poststart().as_deref().unwrap_or_default(),
        &hook_state(&st, ContainerStatus::Running),
    ) {
        // A failed run leaves nothing, as every other failure of run: stop the container,
        // reap its init (our child), then undo create (poststop hooks included).
        stop(&opts.root, &st);
        if let Some((pid, _)) = guard.child.take() {
            let _ = rustix::process::waitpid(Pid::from_raw(pid), rustix::process::WaitOptions::empty());
        }
        guard.disarm();
        if let Err(d) = destroy(&opts.root, &st) {
            log::warn!("removing container {}: {d}", st.id);
        }
        return Err(e);
    }
    if mode == LaunchMode::RunDetached {
        guard.disarm();
        return Ok(Launched::Detached);
    }
    // Foreground: from here the container is complete; the guard's job passes to delete().
    let (_, pidfd) = guard.child.take().ok_or_else(|| Error::Init("lost the init".into()))?;
    guard.disarm();
    let code = match forward {
        Some(f) => f.wait(pid, &pidfd, master, !opts.no_subreaper)?,
        None => 0,
    };
    if !opts.keep {
        destroy(&opts.root, &st)?;
    }
    Ok(Launched::Exited(code))
}

/// A send to the init failed (EPIPE): the init has exited, and the error it queued on the
/// channel before exiting says why, which is what the user needs rather than "Broken pipe".
fn init_error(chan: &Channel, send_err: Error) -> Error {
    match chan.recv() {
        Ok(Some((Msg::Error(m), _))) => Error::Init(m),
        _ => send_err,
    }
}

/// The caller's `pid_for_children` and `time_for_children` namespaces, put back when dropped.
/// Creating a container or an exec process switches them (setns of a pid or time namespace
/// only affects later children); a long-lived caller — a shim, a monitor — must not create
/// its next container inside the previous one's namespaces.
pub(crate) struct ChildrenNs {
    pid: Option<OwnedFd>,
    time: Option<OwnedFd>,
}

impl ChildrenNs {
    /// Saves the current ones.
    pub(crate) fn save() -> ChildrenNs {
        let open = |p: &str| rustix::fs::open(p, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok();
        ChildrenNs { pid: open("/proc/self/ns/pid_for_children"), time: open("/proc/self/ns/time_for_children") }
    }
}

impl Drop for ChildrenNs {
    fn drop(&mut self) {
        use rustix::thread::LinkNameSpaceType as T;
        for (fd, kind) in [(&self.pid, T::ProcessID), (&self.time, T::Time)] {
            let Some(fd) = fd else { continue };
            match rustix::thread::move_into_link_name_space(fd.as_fd(), Some(kind)) {
                Ok(()) => {}
                // Root of a user namespace (rootless podman's) may not return to a namespace
                // the host's user namespace owns. Only a long-lived caller would notice, by
                // creating its next container inside this one's pid namespace; berth's own
                // long-lived callers fork a process per container.
                Err(rustix::io::Errno::PERM) => {
                    log::debug!("returning to the caller's namespaces for children: not permitted here")
                }
                Err(e) => log::warn!("returning to the caller's namespaces for children: {e}"),
            }
        }
    }
}

/// Joins the pid and time namespaces that apply to children (setns of those affects only
/// processes created afterwards), and creates a time namespace with offsets.
fn prepare_parent_namespaces(plan: &Plan) -> Result<()> {
    for ns in plan.join_pid.iter().chain(&plan.join_time) {
        ns.enter()?;
    }
    if let Some(offsets) = &plan.time_offsets {
        berth_sys::process::unshare_namespaces(berth_sys::process::CLONE_NEWTIME)
            .ctx(|| "creating the time namespace".to_string())?;
        fs::write("/proc/self/timens_offsets", offsets)
            .ctx(|| "linux.timeOffsets: writing timens_offsets".to_string())?;
    }
    Ok(())
}

fn write_id_maps(pid: i32, plan: &Plan, rootless: bool) -> Result<()> {
    if rootless {
        // An unprivileged writer may only map its own gid, and only after giving up
        // setgroups in the new namespace (otherwise dropping groups could grant access).
        let sg = format!("/proc/{pid}/setgroups");
        fs::write(&sg, "deny").ctx(|| format!("writing {sg}"))?;
    }
    let uid_path = format!("/proc/{pid}/uid_map");
    fs::write(&uid_path, &plan.uid_map).ctx(|| format!("linux.uidMappings: writing {uid_path}"))?;
    let gid_path = format!("/proc/{pid}/gid_map");
    fs::write(&gid_path, &plan.gid_map).ctx(|| format!("linux.gidMappings: writing {gid_path}"))
}

fn listen_fds() -> (u32, Vec<String>) {
    let n: u32 = std::env::var("LISTEN_FDS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let pid_ok =
        std::env::var("LISTEN_PID").ok().and_then(|v| v.parse::<u32>().ok()).is_none_or(|p| p == std::process::id());
    if n == 0 || !pid_ok {
        return (0, Vec::new());
    }
    (n, vec![format!("LISTEN_FDS={n}"), "LISTEN_PID=1".to_string()])
}

pub(crate) fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().ctx(|| "getcwd".to_string())?.join(path)
    };
    berth_core::state::write_atomic(&abs, pid.to_string().as_bytes(), 0o644)
        .ctx(|| format!("writing pid file {}", abs.display()))
}

/// The state JSON hooks receive on stdin.
pub fn hook_state(st: &ContainerState, status: ContainerStatus) -> Vec<u8> {
    let ann = st.annotations.clone();
    let hs = HookState {
        oci_version: st.spec.version(),
        id: &st.id,
        status,
        pid: if status == ContainerStatus::Stopped { 0 } else { st.pid },
        bundle: &st.bundle,
        annotations: &ann,
    };
    serde_json::to_vec(&hs).unwrap_or_default()
}

/// The runtime-spec `State` (for the seccomp listener).
pub(crate) fn oci_state(st: &ContainerState, status: ContainerStatus) -> oci_spec::runtime::State {
    let mut s = oci_spec::runtime::State::default();
    s.set_version(st.spec.version().clone());
    s.set_id(st.id.clone());
    s.set_status(match status {
        ContainerStatus::Creating => oci_spec::runtime::ContainerState::Creating,
        ContainerStatus::Created => oci_spec::runtime::ContainerState::Created,
        ContainerStatus::Running | ContainerStatus::Paused => oci_spec::runtime::ContainerState::Running,
        ContainerStatus::Stopped => oci_spec::runtime::ContainerState::Stopped,
    });
    s.set_pid(Some(st.pid));
    s.set_bundle(st.bundle.clone());
    if !st.annotations.is_empty() {
        s.set_annotations(Some(st.annotations.clone().into_iter().collect()));
    }
    s
}

/// `start`: lets a created container's init exec the user process.
pub fn start(root: &Path, id: &str) -> Result<()> {
    start_created(root, &ContainerState::load(root, id)?)
}

/// `start` for a caller that holds the container's state (from [`Launched::Created`]).
pub fn start_created(root: &Path, st: &ContainerState) -> Result<()> {
    let id = &st.id;
    // runc's texts.
    match st.status(root) {
        ContainerStatus::Created => {}
        ContainerStatus::Stopped => {
            return Err(Error::WrongState(format!("cannot start a container that has stopped ({id})")))
        }
        ContainerStatus::Running => {
            return Err(Error::WrongState(format!("cannot start an already running container ({id})")))
        }
        s => return Err(Error::WrongState(format!("cannot start a container in the {s} state ({id})"))),
    }
    let fifo = state::dir(root, id).join(EXEC_FIFO);
    let f = match rustix::fs::open(&fifo, OFlags::WRONLY | OFlags::NONBLOCK | OFlags::CLOEXEC, Mode::empty()) {
        Ok(f) => f,
        Err(rustix::io::Errno::NXIO) => {
            return Err(Error::WrongState(format!("cannot start container {id}: its init is not running")))
        }
        Err(e) => return Err(Error::io(format!("opening {}", fifo.display()), e)),
    };
    let _ = fs::remove_file(&fifo);
    rustix::io::write(&f, b"0").ctx(|| "signalling the init".to_string())?;
    let hooks = st.spec.hooks().clone().unwrap_or_default();
    crate::hooks::run_all(
        "poststart",
        hooks.poststart().as_deref().unwrap_or_default(),
        &hook_state(st, ContainerStatus::Running),
    )
    .inspect_err(|_| {
        // runtime-spec (PR 1262) and runc: a failing poststart hook stops the container. It
        // is left stopped, for `delete` to remove (running poststop), as after any exit: the
        // caller (a shim, a monitor) owns the container's removal.
        stop(root, st)
    })
}

/// Stops a container whose poststart hook failed: SIGKILL to its init and, when it shares
/// the host's pid namespace (where the init's death takes nothing else down), to everything
/// in its cgroups; returns once the init is dead.
fn stop(root: &Path, st: &ContainerState) {
    if !st.own_pidns {
        if let Some(cg) = &st.cgroup {
            let _ = cg.signal_all(libc::SIGKILL);
        }
    }
    if let Err(e) = kill_and_wait(root, st) {
        log::warn!("stopping container {}: {e}", st.id);
    }
}

/// `kill`: signals the init, or every process of the container with `all`. Any signal 0 to
/// 64: 0 only probes that the init is alive (`kill ID 0`), real-time ones included (a systemd
/// image stops on SIGRTMIN+3). A stopped container answers "container not running" (runc's
/// words, which containerd's shim reads as "already finished"), except with `all`, which
/// signals whatever is left in its cgroup, as runc does after the init exited.
pub fn kill(root: &Path, id: &str, signal: i32, all: bool) -> Result<()> {
    let st = ContainerState::load(root, id)?;
    let status = st.status(root);
    if !(0..=berth_sys::signal::SIGMAX).contains(&signal) {
        return Err(Error::Invalid(format!(
            "signal {signal}: not a valid signal (0 to {})",
            berth_sys::signal::SIGMAX
        )));
    }
    let not_running = || Error::WrongState(format!("cannot kill container {id}: container not running"));
    if all && crate::vm::is_vm(&st.spec) {
        crate::vm::signal_all(root, id, signal)?;
    } else if all {
        match &st.cgroup {
            Some(cg) => cg.signal_all(signal).map_err(|e| Error::Cgroup(e.to_string()))?,
            // Without cgroups (rootless without delegation) nothing is left to find once the
            // init is gone (runc succeeds there too).
            None if status == ContainerStatus::Stopped => {}
            None => {
                return Err(Error::WrongState(format!(
                    "container {} has no cgroup (rootless without delegation)",
                    st.id
                )))
            }
        }
    } else {
        if status == ContainerStatus::Stopped {
            return Err(not_running());
        }
        if signal == libc::SIGKILL && crate::vm::is_vm(&st.spec) && crate::vm::post_kill(root, &st) {
            return Ok(());
        }
        let pidfd = open_init(&st).map_err(|_| not_running())?;
        match berth_sys::signal::pidfd_send(pidfd.as_fd(), signal) {
            Ok(()) => {}
            // Exited between the check and the signal.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                return Err(Error::WrongState(format!(
                    "cannot kill container {id}: container not running: no such process"
                )))
            }
            Err(e) => return Err(Error::io(format!("signalling the init of {id}"), e)),
        }
    }
    if status == ContainerStatus::Paused && signal == libc::SIGKILL {
        if let Some(cg) = &st.cgroup {
            let _ = cg.thaw();
        }
    }
    Ok(())
}

/// A pidfd for the init, after checking it is still the process recorded at create.
pub(crate) fn open_init(st: &ContainerState) -> Result<OwnedFd> {
    let pid = Pid::from_raw(st.pid).ok_or_else(|| Error::WrongState("container has no init".into()))?;
    let fd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        .map_err(|_| Error::WrongState(format!("container {} is not running", st.id)))?;
    // Checked after pidfd_open: if the pid was recycled before this point the start time
    // differs; after it, the pidfd pins the right process.
    if !st.init_alive() {
        return Err(Error::WrongState(format!("container {} is not running", st.id)));
    }
    Ok(fd)
}

/// `delete`.
pub fn delete(root: &Path, id: &str, force: bool) -> Result<()> {
    let st = match ContainerState::load(root, id) {
        Ok(st) => st,
        Err(Error::NotFound(_)) if force => {
            // runc -f on a half-created container removes whatever directory is left, and
            // on a container that does not exist at all succeeds (containerd's shim relies
            // on that when it cleans up after a failed create).
            let d = state::dir(root, id);
            if d.exists() {
                fs::remove_dir_all(&d).ctx(|| format!("removing {}", d.display()))?;
            }
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    match st.status(root) {
        ContainerStatus::Stopped => {}
        ContainerStatus::Creating if !force => {
            return Err(Error::WrongState(format!(
                "cannot delete container {id} that is being created (its creator is still running); use --force"
            )))
        }
        ContainerStatus::Created | ContainerStatus::Creating => kill_and_wait(root, &st)?,
        s if force => {
            // Half-frozen counts too (a freeze still in progress, or one that could not
            // complete): a frozen init cannot die.
            let freezing = st.cgroup.as_ref().is_some_and(|c| {
                matches!(
                    c.freezer_state(),
                    Ok(berth_cgroups::FreezerState::Freezing | berth_cgroups::FreezerState::Frozen)
                )
            });
            if (s == ContainerStatus::Paused || freezing) && !crate::vm::is_vm(&st.spec) {
                // A frozen init cannot die: queue the SIGKILL through a pidfd verified
                // against the recorded start time, then thaw so it is delivered.
                if let (Some(cg), Ok(fd)) = (&st.cgroup, open_init(&st)) {
                    let _ = rustix::process::pidfd_send_signal(&fd, Signal::KILL);
                    let _ = cg.thaw();
                }
            }
            kill_and_wait(root, &st)?
        }
        s => return Err(Error::WrongState(format!("cannot delete container {id} that is not stopped: {s}"))),
    }
    destroy(root, &st)
}

fn kill_and_wait(root: &Path, st: &ContainerState) -> Result<()> {
    let Ok(fd) = open_init(st) else { return Ok(()) };
    if !(crate::vm::is_vm(&st.spec) && crate::vm::post_kill(root, st)) {
        let _ = rustix::process::pidfd_send_signal(&fd, Signal::KILL);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
    let ts = rustix::event::Timespec { tv_sec: 10, tv_nsec: 0 };
    while Instant::now() < deadline {
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(n) if n > 0 => return Ok(()),
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(Error::io("waiting for the init to die", e)),
        }
    }
    Err(Error::WrongState(format!("init of {} did not die within 10s of SIGKILL", st.id)))
}

/// Removes everything a stopped container holds: leftover processes (when it shares the
/// host pid namespace), cgroups, poststop hooks, the state directory.
pub fn destroy(root: &Path, st: &ContainerState) -> Result<()> {
    if !has_mount_namespace(&st.spec) {
        crate::rootfs::unmount_under_rootfs(&st.rootfs)?;
    }
    if let Some(cg) = &st.cgroup {
        // A create that was killed may have left an init the record does not name yet (it
        // dies of its parent-death signal, but perhaps not before we get here).
        // (A VM's QEMU and virtiofsd die with their supervisor, but asynchronously.)
        if !st.own_pidns || st.creating || crate::vm::is_vm(&st.spec) {
            let _ = cg.signal_all(libc::SIGKILL);
        }
        cg.destroy().map_err(|e| Error::Cgroup(e.to_string()))?;
    }
    if let Some(g) = &st.intel_rdt {
        g.remove();
    }
    let hooks = st.spec.hooks().clone().unwrap_or_default();
    crate::hooks::run_all_warn(
        "poststop",
        hooks.poststop().as_deref().unwrap_or_default(),
        &hook_state(st, ContainerStatus::Stopped),
    );
    let d = state::dir(root, &st.id);
    fs::remove_dir_all(&d).ctx(|| format!("removing {}", d.display()))
}

/// Whether the spec gives the container a mount namespace of its own (new or joined).
pub(crate) fn has_mount_namespace(spec: &Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Mount))
}

/// `state`.
pub fn state_json(root: &Path, id: &str) -> Result<String> {
    let st = ContainerState::load(root, id)?;
    serde_json::to_string_pretty(&st.oci(root)).map_err(|e| Error::Invalid(e.to_string()))
}

/// `list`: the OCI state of every container.
pub fn list(root: &Path) -> Result<Vec<berth_core::state::OciState>> {
    let mut out = Vec::new();
    for id in state::list_ids(root)? {
        match ContainerState::load(root, &id) {
            Ok(st) => out.push(st.oci(root)),
            Err(e) => log::warn!("skipping {id}: {e}"),
        }
    }
    Ok(out)
}

/// Writes `bytes` to stdout and flushes (helper for the CLI).
pub fn print(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes).and_then(|()| out.flush()).ctx(|| "writing to stdout".to_string())
}
