//! VM isolation (`org.berth.isolation=vm`, docs/vm-isolation.md): the create, exec and
//! kill paths of a container that runs inside a VM, and `ps` and stats, which ask the guest.
//! Everything else (start, state, pause, resume, delete) is the native code unchanged,
//! because the VM supervisor stands where a native container's init stands: its pid is in
//! `state.json`, it holds `exec.fifo`, it is in the container's cgroups (with QEMU and
//! virtiofsd), signals to it reach the guest's init, and it exits with the guest init's
//! status.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::SystemTime;

use berth_core::state::ContainerStatus;
use berth_sys::process::{clone3, Forked, CLONE_CLEAR_SIGHAND, CLONE_PIDFD};
use oci_spec::runtime::{LinuxDeviceCgroupBuilder, LinuxDeviceType, Process, Spec};
use rustix::fs::{Mode, OFlags};

use crate::container::{CreateOptions, Guard, LaunchMode, Launched};
use crate::error::{Context, Error, Result};
use crate::state::{self, ContainerState, EXEC_FIFO};

/// Whether the container (by its spec) runs in a VM.
pub fn is_vm(spec: &Spec) -> bool {
    berth_vm::requested(spec).unwrap_or(false)
}

/// The spec's resources as the host cgroup holding the VM gets them: the memory limit grows
/// by what the guest kernel and the VMM need on top of the container's own limit (which the
/// guest's cgroup enforces exactly); the pids limit counts container processes, which only
/// the guest sees; device rules confine what QEMU opens (KVM allowed).
fn host_spec(spec: &Spec) -> Spec {
    let mut s = spec.clone();
    let Some(mut linux) = s.linux().clone() else { return s };
    if let Some(mut res) = linux.resources().clone() {
        let extra = ((berth_vm::host::GUEST_OVERHEAD_MIB + berth_vm::host::HOST_OVERHEAD_MIB) << 20) as i64;
        if let Some(mut mem) = *res.memory() {
            mem.set_limit(mem.limit().filter(|l| *l > 0).map(|l| l + extra));
            mem.set_swap(mem.swap().filter(|l| *l > 0).map(|l| l + extra));
            res.set_memory(Some(mem));
        }
        res.set_pids(None);
        let mut devices = res.devices().clone().unwrap_or_default();
        if let Ok(kvm) = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(10)
            .minor(232)
            .access("rwm")
            .build()
        {
            devices.push(kvm);
        }
        res.set_devices(Some(devices));
        linux.set_resources(Some(res));
    }
    s.set_linux(Some(linux));
    s
}

/// `create`/`run` of a VM container, from the point where the state directory is reserved
/// (held by `guard`) and the spec validated.
pub(crate) fn launch(
    opts: &CreateOptions,
    mode: LaunchMode,
    bundle: &Path,
    spec: Spec,
    mut guard: Guard<'_>,
) -> Result<Launched> {
    let vm_err = |e: berth_vm::Error| Error::Invalid(e.to_string());
    let root_path = spec.root().as_ref().map(|r| r.path().clone()).unwrap_or_else(|| "rootfs".into());
    let rootfs = bundle.join(root_path);
    let rootfs =
        std::fs::canonicalize(&rootfs).map_err(|e| Error::Invalid(format!("root.path {}: {e}", rootfs.display())))?;
    let guest_spec = berth_vm::guest_spec(&spec, &rootfs).map_err(vm_err)?;
    let assets = berth_vm::host::Assets::locate().map_err(vm_err)?;
    let rootless = opts.rootless.decide();
    if rootless {
        return Err(Error::Invalid(format!(
            "annotations[\"{}\"]: VM isolation needs root (cgroups for QEMU, virtiofsd's sandbox)",
            berth_vm::ISOLATION_ANNOTATION
        )));
    }
    let terminal = spec.process().as_ref().is_some_and(|p| p.terminal().unwrap_or(false));
    let detaches = mode == LaunchMode::RunDetached || (mode == LaunchMode::Create && !opts.keep_master);
    if terminal && opts.console_socket.is_none() && detaches {
        return Err(Error::Invalid(
            "process.terminal is true but no --console-socket was given (needed to detach with a terminal)".into(),
        ));
    }
    let size = berth_vm::host::vm_size(&spec);
    let host = host_spec(&spec);
    let mut st = ContainerState {
        id: opts.id.clone(),
        pid: 0,
        start_time: 0,
        bundle: bundle.to_path_buf(),
        rootfs: rootfs.clone(),
        created: berth_core::time::format_rfc3339_nanos(SystemTime::now()),
        owner: crate::container::user_name(rustix::process::geteuid().as_raw()),
        annotations: spec.annotations().clone().unwrap_or_default().into_iter().collect(),
        cgroup: crate::container::resolve_cgroup(&host, &opts.id, false)?,
        own_pidns: true,
        creating: true,
        intel_rdt: None,
        no_new_keyring: opts.no_new_keyring,
        spec,
    };
    st.save(&opts.root)?;
    let cg = match crate::container::create_cgroup(&host, st.cgroup.take(), false)? {
        Some((cg, created)) => {
            guard.cgroup = Some(created);
            Some(cg)
        }
        None => None,
    };
    let dir = state::dir(&opts.root, &opts.id);
    let fifo = if mode == LaunchMode::Create {
        let p = dir.join(EXEC_FIFO);
        let c = crate::paths::cstr("exec fifo", &p.to_string_lossy())?;
        rustix::fs::mknodat(rustix::fs::CWD, c.as_c_str(), rustix::fs::FileType::Fifo, Mode::from_raw_mode(0o600), 0)
            .ctx(|| format!("creating {}", p.display()))?;
        Some(
            rustix::fs::open(&p, OFlags::RDWR | OFlags::CLOEXEC | OFlags::NONBLOCK, Mode::empty())
                .ctx(|| format!("opening {}", p.display()))?,
        )
    } else {
        None
    };
    // The container's terminal on the host: a PTY whose slave the supervisor relays to the
    // guest's PTY; the master goes where a native container's would.
    let (master, slave) = if terminal {
        let size =
            st.spec.process().as_ref().and_then(|p| p.console_size()).map(|b| (b.height() as u16, b.width() as u16));
        let (m, s) = crate::tty::host_pty(size, opts.console_socket.as_deref())?;
        (m, Some(s))
    } else {
        (None, None)
    };
    let forward = if mode == LaunchMode::RunForeground { Some(crate::signals::Forwarder::block()?) } else { None };
    let (report_r, report_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).ctx(|| "pipe".to_string())?;
    let (placed_r, placed_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).ctx(|| "pipe".to_string())?;
    let stdio = match &opts.stdio {
        Some(s) => [
            s.stdin.as_ref().and_then(|f| f.try_clone().ok()),
            s.stdout.as_ref().and_then(|f| f.try_clone().ok()),
            s.stderr.as_ref().and_then(|f| f.try_clone().ok()),
        ],
        None => [None, None, None],
    };
    let cfg = berth_vm::supervisor::Config {
        id: opts.id.clone(),
        state_dir: dir.clone(),
        rootfs,
        guest_spec,
        size,
        assets,
        start_now: mode != LaunchMode::Create,
        exec_fifo: fifo,
        stdio,
        tty: slave,
        report: report_w,
        placed: Some(placed_r),
    };
    let unified = match cg.as_ref().and_then(|c| c.unified_dir()) {
        Some(d) => Some(
            rustix::fs::open(d, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                .ctx(|| format!("opening {}", d.display()))?,
        ),
        None => None,
    };
    let (pid, pidfd) = match clone3(CLONE_PIDFD | CLONE_CLEAR_SIGHAND, unified.as_ref().map(|f| f.as_fd()))
        .ctx(|| "clone3".to_string())?
    {
        Forked::Child(_) => {
            drop(report_r);
            drop(placed_w);
            drop(unified);
            drop(master);
            berth_vm::supervisor::supervise(cfg)
        }
        Forked::Parent { pid, pidfd } => (pid, pidfd.ok_or_else(|| Error::Init("clone3 returned no pidfd".into()))?),
    };
    drop(cfg);
    guard.child = Some((pid, pidfd));
    if let Some(cg) = &cg {
        cg.add_pid(pid, unified.is_some()).map_err(|e| Error::Cgroup(e.to_string()))?;
    }
    // Placed: the supervisor may start QEMU and virtiofsd (an error above drops the pipe,
    // and the guard kills the supervisor).
    let _ = rustix::io::write(&placed_w, b"1");
    drop(placed_w);
    st.pid = pid;
    st.start_time = state::proc_stat(pid).map(|s| s.1).unwrap_or(0);
    st.cgroup = cg.clone();
    st.save(&opts.root)?;
    let report = read_report(report_r)?;
    if let Some(e) = report.error {
        return Err(Error::Init(e));
    }
    log::debug!("container {}: VM up, guest kernel {}", opts.id, report.kernel);
    st.creating = false;
    st.save(&opts.root)?;
    if let Some(p) = &opts.pid_file {
        crate::container::write_pid_file(p, pid)?;
    }
    if mode == LaunchMode::Create {
        let (pid, pidfd) = guard.child.take().ok_or_else(|| Error::Init("lost the supervisor".into()))?;
        guard.disarm();
        return Ok(Launched::Created { pid, pidfd, master, state: Box::new(st) });
    }
    let hooks = st.spec.hooks().clone().unwrap_or_default();
    if let Err(e) = crate::hooks::run_all(
        "poststart",
        hooks.poststart().as_deref().unwrap_or_default(),
        &crate::container::hook_state(&st, ContainerStatus::Running),
    ) {
        if let Some((pid, fd)) = guard.child.take() {
            let _ = rustix::process::pidfd_send_signal(&fd, rustix::process::Signal::KILL);
            let _ =
                rustix::process::waitpid(rustix::process::Pid::from_raw(pid), rustix::process::WaitOptions::empty());
        }
        guard.disarm();
        if let Err(d) = crate::container::destroy(&opts.root, &st) {
            log::warn!("removing container {}: {d}", st.id);
        }
        return Err(e);
    }
    if mode == LaunchMode::RunDetached {
        guard.disarm();
        return Ok(Launched::Detached);
    }
    let (_, pidfd) = guard.child.take().ok_or_else(|| Error::Init("lost the supervisor".into()))?;
    guard.disarm();
    let code = match forward {
        Some(f) => f.wait(pid, &pidfd, master, false)?,
        None => 0,
    };
    if !opts.keep {
        crate::container::destroy(&opts.root, &st)?;
    }
    Ok(Launched::Exited(code))
}

fn read_report(fd: OwnedFd) -> Result<berth_vm::supervisor::Report> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match rustix::io::read(&fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                data.extend_from_slice(&buf[..n]);
                if data.ends_with(b"\n") {
                    break;
                }
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(Error::io("reading the VM supervisor's report", e)),
        }
    }
    if data.is_empty() {
        return Err(Error::Init("the VM supervisor exited during setup".into()));
    }
    serde_json::from_slice(&data).map_err(|e| Error::Init(format!("the VM supervisor's report: {e}")))
}

/// `exec` into a VM container: a stand-in process (our child, so the caller waits for and
/// signals it as for a native exec) asks the supervisor to run `process` in the guest.
pub(crate) fn spawn_exec(
    st: &ContainerState,
    process: &Process,
    opts: &crate::exec::ExecOptions,
) -> Result<crate::exec::Spawned> {
    let ctl = berth_vm::host::VmPaths::new(&state::dir(&opts.root, &opts.id)).ctl();
    let terminal = process.terminal().unwrap_or(false);
    let mut process = process.clone();
    if process.env().is_none() {
        process.set_env(st.spec.process().as_ref().and_then(|p| p.env().clone()));
    }
    let json = serde_json::to_value(&process).map_err(|e| Error::Invalid(e.to_string()))?;
    let (master, slave) = if terminal {
        let size = process.console_size().map(|b| (b.height() as u16, b.width() as u16));
        let (m, s) = crate::tty::host_pty(size, opts.console_socket.as_deref())?;
        (m, Some(s))
    } else {
        (None, None)
    };
    let (report_r, report_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).ctx(|| "pipe".to_string())?;
    match clone3(CLONE_PIDFD | CLONE_CLEAR_SIGHAND, None).ctx(|| "clone3".to_string())? {
        Forked::Child(_) => {
            drop(report_r);
            drop(master);
            let own = [rustix::stdio::stdin(), rustix::stdio::stdout(), rustix::stdio::stderr()];
            let given = opts.stdio.as_ref();
            let pick = |i: usize| {
                given.and_then(|s| [&s.stdin, &s.stdout, &s.stderr][i].as_ref().map(|f| f.as_fd())).unwrap_or(own[i])
            };
            let fds = match &slave {
                Some(s) => vec![s.as_fd()],
                None => vec![pick(0), pick(1), pick(2)],
            };
            match berth_vm::standin::start(&ctl, json, &fds) {
                Ok(conn) => {
                    drop(fds);
                    drop(slave);
                    let _ = rustix::io::write(&report_w, b"\n");
                    drop(report_w);
                    berth_vm::standin::wait(conn)
                }
                Err(e) => {
                    let _ = rustix::io::write(&report_w, format!("{e}\n").as_bytes());
                    berth_sys::process::exit_immediately(1)
                }
            }
        }
        Forked::Parent { pid, pidfd } => {
            drop(report_w);
            drop(slave);
            let pidfd = pidfd.ok_or_else(|| Error::Init("clone3 returned no pidfd".into()))?;
            let mut data = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = rustix::io::read(&report_r, &mut buf) {
                if n == 0 {
                    break;
                }
                data.extend_from_slice(&buf[..n]);
                if data.ends_with(b"\n") {
                    break;
                }
            }
            let msg = String::from_utf8_lossy(&data).trim().to_string();
            if data.is_empty() || !msg.is_empty() {
                let _ = rustix::process::waitpid(
                    rustix::process::Pid::from_raw(pid),
                    rustix::process::WaitOptions::empty(),
                );
                let msg = if msg.is_empty() { "the exec stand-in exited".to_string() } else { msg };
                return Err(Error::Init(format!("exec in the VM: {msg}")));
            }
            if let Some(p) = &opts.pid_file {
                crate::container::write_pid_file(p, pid)?;
            }
            Ok(crate::exec::Spawned { pid, pidfd, master })
        }
    }
}

/// `kill --all`: through the supervisor, to every process of the container in the guest.
pub(crate) fn signal_all(root: &Path, id: &str, signal: i32) -> Result<()> {
    let ctl = berth_vm::host::VmPaths::new(&state::dir(root, id)).ctl();
    berth_vm::standin::signal_all(&ctl, signal).map_err(|e| Error::Init(format!("kill --all in the VM: {e}")))
}

/// SIGKILL for a VM container: asks its supervisor to stop the VM and exit with 137, then
/// thaws it if the container is paused (the request waits in the socket meanwhile). False
/// when the supervisor cannot be reached (still booting: its control socket does not exist
/// yet), for the caller to SIGKILL the supervisor instead.
pub(crate) fn post_kill(root: &Path, st: &ContainerState) -> bool {
    let ctl = berth_vm::host::VmPaths::new(&state::dir(root, &st.id)).ctl();
    if berth_vm::ctl::post(&ctl, &berth_vm::ctl::CtlRequest::Kill).is_err() {
        return false;
    }
    if let Some(cg) = &st.cgroup {
        if matches!(cg.freezer_state(), Ok(berth_cgroups::FreezerState::Freezing | berth_cgroups::FreezerState::Frozen))
        {
            let _ = cg.thaw();
        }
    }
    true
}

/// How long `ps` and stats wait for the guest's answer. The agent answers in milliseconds;
/// this bounds a wedged VM (whose supervisor gives up on the agent after
/// `BERTH_VM_AGENT_TIMEOUT`, and then exits) without making the caller hang.
pub const GUEST_QUERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The control socket of a VM container whose guest can answer now; else why not (a
/// stopped container has no VM; a paused one's is frozen with its supervisor).
fn guest_ctl(root: &Path, st: &ContainerState, what: &str) -> Result<std::path::PathBuf> {
    let frozen = st.cgroup.as_ref().is_some_and(|cg| {
        matches!(cg.freezer_state(), Ok(berth_cgroups::FreezerState::Freezing | berth_cgroups::FreezerState::Frozen))
    });
    match st.status(root) {
        ContainerStatus::Stopped => {
            return Err(Error::WrongState(format!(
                "container {} is stopped: its VM is gone, so there are no {what} to report",
                st.id
            )))
        }
        _ if frozen => {
            return Err(Error::WrongState(format!(
                "container {} is paused: its VM is frozen and cannot report its {what} until it is resumed",
                st.id
            )))
        }
        _ => {}
    }
    Ok(berth_vm::host::VmPaths::new(&state::dir(root, &st.id)).ctl())
}

/// The processes of a VM container, as its guest sees them (`ps`, `list_pids`, the shim's
/// `Pids`): asked of the guest agent through the supervisor, within
/// [`GUEST_QUERY_TIMEOUT`]. Sorted by pid.
pub fn processes(root: &Path, st: &ContainerState) -> Result<Vec<berth_vm::proto::GuestProcess>> {
    let ctl = guest_ctl(root, st, "processes")?;
    let mut p = berth_vm::ctl::processes(&ctl, GUEST_QUERY_TIMEOUT)
        .map_err(|e| Error::Init(format!("listing the processes of container {} in its VM: {e}", st.id)))?;
    p.sort_by_key(|p| p.pid);
    Ok(p)
}

/// The statistics of a VM container: its cgroup's in the guest (memory used inside the
/// guest, CPU, pids), read there by berth-cgroups. The host cgroup, which holds and limits
/// the whole VM (QEMU's own memory and threads included), is not what this reports.
pub fn stats(root: &Path, st: &ContainerState) -> Result<berth_cgroups::Stats> {
    let ctl = guest_ctl(root, st, "statistics")?;
    berth_vm::ctl::stats(&ctl, GUEST_QUERY_TIMEOUT)
        .map_err(|e| Error::Init(format!("reading the statistics of container {} in its VM: {e}", st.id)))
}
