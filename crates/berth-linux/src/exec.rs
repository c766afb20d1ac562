//! `exec`: a new process inside a running container.
//!
//! The parent (single-threaded `berth exec`) opens a pidfd of the container's init, verified
//! against the start time recorded at create, joins the init's pid (and time) namespace for
//! its children, and clones the new process straight into the container's cgroup v2
//! directory. The child joins every other namespace of the init in one
//! `setns(pidfd, flags)` call, applies the same security as the init (rlimits, capabilities,
//! no_new_privs, the container's seccomp filter) and execs. Protocol: parent writes the v1
//! cgroup.procs files and sends Go; the child execs (the parent sees EOF) or reports an
//! error.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use berth_core::state::ContainerStatus;
use berth_sys::process::{clone3, Forked, CLONE_CLEAR_SIGHAND, CLONE_PIDFD};
use oci_spec::runtime::{LinuxCapabilities, LinuxNamespaceType, Process};
use rustix::fs::{Mode, OFlags};

use crate::error::{Context, Error, Result};
use crate::plan::ProcessPlan;
use crate::state::ContainerState;
use crate::sync::{Channel, Msg};

/// Command-line overrides of `exec` (when no `--process` file is given).
#[derive(Debug, Clone, Default)]
pub struct ExecArgs {
    /// Command and arguments.
    pub args: Vec<String>,
    /// `-e K=V`, appended to the container's environment.
    pub env: Vec<String>,
    /// `--cwd`.
    pub cwd: Option<String>,
    /// `-u UID[:GID]`.
    pub user: Option<(u32, Option<u32>)>,
    /// `--additional-gids`.
    pub additional_gids: Vec<u32>,
    /// `--cap`, added to the bounding, effective, permitted and ambient sets; unknown names
    /// are skipped with a warning, as runc does.
    pub caps: Vec<String>,
    /// `--apparmor`: `process.apparmorProfile` of the exec process.
    pub apparmor: Option<String>,
    /// `--process-label`: `process.selinuxLabel` of the exec process.
    pub process_label: Option<String>,
    /// `--no-new-privs`.
    pub no_new_privs: bool,
    /// `-t`.
    pub tty: bool,
}

/// Options of `exec`.
#[derive(Debug, Default)]
pub struct ExecOptions {
    /// State root.
    pub root: PathBuf,
    /// Container id.
    pub id: String,
    /// `--process FILE`.
    pub process_file: Option<PathBuf>,
    /// The content of `process_file`, when the caller read it already (the CLI reads it
    /// before closing inherited descriptors, so that `/dev/fd/N` works).
    pub process_json: Option<Vec<u8>>,
    /// The process, given directly (embedding library); takes precedence over the file.
    pub process: Option<Process>,
    /// Descriptors for the process's stdio; `None` inherits the caller's.
    pub stdio: Option<crate::init::Stdio>,
    /// Overrides when there is no process file.
    pub args: ExecArgs,
    /// `--console-socket`.
    pub console_socket: Option<PathBuf>,
    /// `-d`.
    pub detach: bool,
    /// `--pid-file`.
    pub pid_file: Option<PathBuf>,
    /// `--preserve-fds`.
    pub preserve_fds: u32,
    /// `--ignore-paused`: exec into a paused container; the process waits, frozen, until
    /// `resume`.
    pub ignore_paused: bool,
    /// `--cgroup [CONTROLLER[,CONTROLLER...]:]PATH`, each an existing sub-cgroup of the
    /// container's cgroup to run the process in.
    pub sub_cgroups: Vec<String>,
}

/// One id of an `exec` flag: decimal digits only, in `0..=berth_spec::MAX_ID`. 4294967295 is
/// `(uid_t)-1`, which set*id reads as "unchanged": it would leave the process root.
fn parse_id(flag: &str, arg: &str, what: &str, v: &str) -> Result<u32> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Invalid(format!("{flag} {arg:?}: {what} must be a decimal number")));
    }
    let problem = |n: &str| format!("{flag} {arg:?}: {what} {n} is out of range (0 to {})", berth_spec::MAX_ID);
    let n: u64 = v.parse().map_err(|_| Error::Invalid(problem(v)))?;
    match u32::try_from(n) {
        Ok(id) if id <= berth_spec::MAX_ID => Ok(id),
        _ => Err(Error::Invalid(problem(&n.to_string()))),
    }
}

/// Parses `-u`: `UID` or `UID:GID`, both decimal. Anything else is an error: `1` must be
/// uid 1, never silently 0 (crun CVE-2026-30892).
pub fn parse_user(s: &str) -> Result<(u32, Option<u32>)> {
    match s.split_once(':') {
        None => Ok((parse_id("--user", s, "uid", s)?, None)),
        Some((u, g)) => Ok((parse_id("--user", s, "uid", u)?, Some(parse_id("--user", s, "gid", g)?))),
    }
}

/// Parses `--additional-gids`: decimal gids separated by commas.
pub fn parse_additional_gids(s: &str) -> Result<Vec<u32>> {
    s.split(',').map(|g| parse_id("--additional-gids", s, "gid", g)).collect()
}

/// Builds the exec process from the container's process and the command-line overrides, as
/// runc's exec does: `-e` is appended to the spec's environment (the plan keeps the last value
/// of a key), `-g` to its additional gids, `--cap` to four of its capability sets.
pub fn process_from_args(base: &Process, a: &ExecArgs) -> Result<Process> {
    if a.args.is_empty() {
        return Err(Error::Invalid("process args cannot be empty (give a command or --process)".into()));
    }
    let mut p = base.clone();
    p.set_args(Some(a.args.clone()));
    p.set_terminal(Some(a.tty));
    p.set_console_size(None);
    let mut env = base.env().clone().unwrap_or_default();
    env.extend(a.env.iter().cloned());
    p.set_env(Some(env));
    if let Some(c) = &a.cwd {
        p.set_cwd(PathBuf::from(c));
    }
    let mut user = base.user().clone();
    if let Some((uid, gid)) = a.user {
        user.set_uid(uid);
        if let Some(g) = gid {
            user.set_gid(g);
        }
    }
    if !a.additional_gids.is_empty() {
        let mut gids = a.additional_gids.clone();
        gids.extend(user.additional_gids().iter().flatten().copied());
        user.set_additional_gids(Some(gids));
    }
    p.set_user(user);
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(ap) = &a.apparmor {
        p.set_apparmor_profile(Some(ap.clone()));
    }
    if let Some(l) = &a.process_label {
        p.set_selinux_label(Some(l.clone()));
    }
    if !a.caps.is_empty() {
        let mut caps = base.capabilities().clone().unwrap_or_else(|| {
            let mut c = LinuxCapabilities::default();
            c.set_bounding(Some(Default::default()))
                .set_effective(Some(Default::default()))
                .set_permitted(Some(Default::default()))
                .set_inheritable(Some(Default::default()))
                .set_ambient(Some(Default::default()));
            c
        });
        let mut unknown = Vec::new();
        for name in &a.caps {
            // Exact names only, as runc (and the spec parser) read them.
            let Some(cap) = berth_spec::capability_number(name)
                .and_then(|_| serde_json::from_value::<oci_spec::runtime::Capability>(name.clone().into()).ok())
            else {
                unknown.push(name.as_str());
                continue;
            };
            // Never the inheritable set: that was CVE-2022-29162.
            for set in
                [caps.bounding().clone(), caps.effective().clone(), caps.permitted().clone(), caps.ambient().clone()]
                    .iter()
                    .enumerate()
            {
                let mut s = set.1.clone().unwrap_or_default();
                s.insert(cap);
                match set.0 {
                    0 => caps.set_bounding(Some(s)),
                    1 => caps.set_effective(Some(s)),
                    2 => caps.set_permitted(Some(s)),
                    _ => caps.set_ambient(Some(s)),
                };
            }
        }
        if !unknown.is_empty() {
            log::warn!("--cap: ignoring unknown or unavailable capabilities: [{}]", unknown.join(" "));
        }
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}

/// A started exec process (it is a child of the caller).
#[derive(Debug)]
pub struct Spawned {
    /// Host pid.
    pub pid: i32,
    /// pidfd.
    pub pidfd: OwnedFd,
    /// The PTY master when the process has a terminal and no console socket was given.
    pub master: Option<OwnedFd>,
}

/// Runs `exec` as the CLI does: start the process and, unless detached, forward signals and
/// wait. Returns the process's exit status (0 when detached).
pub fn exec(opts: &ExecOptions) -> Result<i32> {
    let forward = if opts.detach { None } else { Some(crate::signals::Forwarder::block()?) };
    let sp = spawn(opts)?;
    match forward {
        None => Ok(0),
        Some(f) => f.wait(sp.pid, &sp.pidfd, sp.master, false),
    }
}

/// Starts an exec process and returns without waiting for it.
pub fn spawn(opts: &ExecOptions) -> Result<Spawned> {
    let st = ContainerState::load(&opts.root, &opts.id)?;
    // runc's texts, which tools and tests look for.
    let status = st.status(&opts.root);
    match status {
        ContainerStatus::Running | ContainerStatus::Created => {}
        ContainerStatus::Paused if opts.ignore_paused => {}
        ContainerStatus::Paused => {
            return Err(Error::WrongState(format!(
                "cannot exec in a paused container (use --ignore-paused to override): {}",
                opts.id
            )))
        }
        s => {
            return Err(Error::WrongState(format!(
                "cannot exec in a {} container: {}",
                if s == ContainerStatus::Stopped { "stopped".to_string() } else { s.to_string() },
                opts.id
            )))
        }
    }
    let sub_cgroup = if opts.sub_cgroups.is_empty() {
        None
    } else {
        let cg = st.cgroup.as_ref().ok_or_else(|| {
            Error::WrongState(format!("--cgroup: container {} has no cgroup (rootless without delegation)", opts.id))
        })?;
        let paths = berth_cgroups::parse_sub_cgroups(&opts.sub_cgroups).map_err(|e| Error::Invalid(e.to_string()))?;
        Some(cg.sub_cgroup(&paths).map_err(|e| Error::Invalid(e.to_string()))?)
    };
    let base = st.spec.process().clone().unwrap_or_default();
    let mut process = match (&opts.process, &opts.process_file) {
        (Some(p), _) => p.clone(),
        (None, Some(f)) => {
            let data = match &opts.process_json {
                Some(d) => d.clone(),
                None => std::fs::read(f).ctx(|| format!("reading --process {}", f.display()))?,
            };
            let (p, warnings) =
                berth_spec::parse_process(&data).map_err(|e| Error::Invalid(format!("--process: {e}")))?;
            for w in warnings {
                log::warn!("{w}");
            }
            p
        }
        (None, None) => process_from_args(&base, &opts.args)?,
    };
    if process.cwd().as_os_str().is_empty() {
        process.set_cwd(base.cwd().clone());
    }
    berth_spec::validate_process(&process, true).map_err(|e| Error::Invalid(e.to_string()))?;
    if crate::vm::is_vm(&st.spec) {
        return crate::vm::spawn_exec(&st, &process, opts);
    }
    let mut plan = crate::plan::process_plan(&process, opts.preserve_fds, &[])?;
    if !st.no_new_keyring {
        let userns = st
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::User));
        plan.session_keyring = Some(crate::plan::SessionKeyring::of(&opts.id, false, userns)?);
    }
    crate::plan::container_settings(&mut plan, &st.spec)?;
    if plan.terminal && opts.console_socket.is_none() && opts.detach {
        return Err(Error::Invalid("exec: -t with -d needs --console-socket".into()));
    }
    let seccomp = match st.spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(sc) => Some(
            berth_seccomp::compile_cached(sc, &opts.root.join(".cache").join("seccomp"))
                .map_err(|e| Error::Invalid(format!("linux.seccomp: {e}")))?,
        ),
        None => None,
    };
    let refreeze = if status == ContainerStatus::Paused { st.cgroup.as_ref() } else { None };
    run(&st, sub_cgroup.as_ref().or(st.cgroup.as_ref()), refreeze, &plan, seccomp.as_ref(), opts)
}

fn ns_flags(st: &ContainerState) -> (u32, u32) {
    // (joined by the child via setns(pidfd), joined by the parent for its children)
    let mut child = 0u32;
    let mut parent = 0u32;
    for ns in st.spec.linux().as_ref().and_then(|l| l.namespaces().as_ref()).into_iter().flatten() {
        let bit = ns.typ() as u32;
        match ns.typ() {
            LinuxNamespaceType::Pid | LinuxNamespaceType::Time => parent |= bit,
            _ => child |= bit,
        }
    }
    (child, parent)
}

fn run(
    st: &ContainerState,
    cg: Option<&berth_cgroups::Cgroup>,
    refreeze: Option<&berth_cgroups::Cgroup>,
    plan: &ProcessPlan,
    seccomp: Option<&berth_seccomp::CompiledFilter>,
    opts: &ExecOptions,
) -> Result<Spawned> {
    let init = crate::container::open_init(st)?;
    let (child_ns, parent_ns) = ns_flags(st);
    let home_ns = (parent_ns != 0).then(crate::container::ChildrenNs::save);
    if parent_ns != 0 {
        rustix::thread::move_into_thread_name_spaces(
            init.as_fd(),
            rustix::thread::ThreadNameSpaceType::from_bits_retain(parent_ns),
        )
        .ctx(|| "joining the container's pid namespace".to_string())?;
    }
    // A container without a mount namespace of its own is confined by its init's root (a
    // chroot in the caller's namespace): the exec process enters that root, taken from the
    // init (checked alive through the pidfd after opening, so the pid was not reused).
    let shared_root = if crate::container::has_mount_namespace(&st.spec) {
        None
    } else {
        let p = format!("/proc/{}/root", st.pid);
        let fd = rustix::fs::open(&p, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .ctx(|| format!("opening the container's root {p}"))?;
        // A pidfd polls readable once its process has exited.
        let mut fds = [rustix::event::PollFd::new(&init, rustix::event::PollFlags::IN)];
        let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
        if rustix::event::poll(&mut fds, Some(&zero)).unwrap_or(1) != 0 {
            return Err(Error::WrongState(format!("container {} is not running", st.id)));
        }
        Some(fd)
    };
    let (console_parent, console_child) = crate::tty::console_endpoints(opts.console_socket.as_deref(), plan.terminal)?;
    let unified = match cg.and_then(|c| c.unified_dir()) {
        Some(d) => Some(
            rustix::fs::open(d, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                .ctx(|| format!("opening {}", d.display()))?,
        ),
        None => None,
    };
    let (pchan, cchan) = Channel::pair().ctx(|| "creating the setup channel".to_string())?;
    // The child inherits execCPUAffinity.initial from the moment it exists.
    let initial = crate::procattr::InitialAffinity::enter(plan.cpu_affinity.as_ref())?;
    let forked =
        clone3(CLONE_PIDFD | CLONE_CLEAR_SIGHAND, unified.as_ref().map(|f| f.as_fd())).ctx(|| "clone3".to_string());
    match &forked {
        Ok(Forked::Child(_)) => {}
        Ok(Forked::Parent { pid, .. }) => initial.leave(Some(*pid)),
        Err(_) => initial.leave(None),
    }
    let (pid, pidfd) = match forked? {
        Forked::Child(new) => {
            drop(pchan);
            drop(unified);
            drop(console_parent);
            child(
                &new,
                &init,
                child_ns,
                shared_root.as_ref(),
                plan,
                seccomp,
                &cchan,
                console_child.as_ref(),
                opts.stdio.as_ref(),
            )
        }
        Forked::Parent { pid, pidfd } => (pid, pidfd.ok_or_else(|| Error::Init("clone3 returned no pidfd".into()))?),
    };
    drop(home_ns);
    drop(cchan);
    drop(console_child);
    let kill_child = |e: Error| -> Error {
        let _ = rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::KILL);
        let _ = rustix::process::waitpid(rustix::process::Pid::from_raw(pid), rustix::process::WaitOptions::empty());
        e
    };
    if let Some(cg) = cg {
        cg.add_pid(pid, unified.is_some()).map_err(|e| kill_child(Error::Cgroup(e.to_string())))?;
    }
    if let Some(g) = &st.intel_rdt {
        g.add_task(pid).map_err(kill_child)?;
    }
    if let Some(frozen) = refreeze {
        // `--ignore-paused`: the new process must stop like the others. On a hybrid host the
        // cgroup2 freezer traps it at once, and that trap can swallow the v1 freezer's wake-up
        // on attach, leaving v1 FREEZING (and the container no longer reported paused);
        // freezing the container again stops it in both, as `pause` does.
        frozen.freeze().map_err(|e| kill_child(Error::Cgroup(format!("re-freezing the paused container: {e}"))))?;
    }
    pchan.send(&Msg::Go(String::new()), None).ctx(|| "signalling the exec process".to_string()).map_err(kill_child)?;
    loop {
        match pchan.recv() {
            // EOF: exec'd, unless the child left a failure it could not send (its seccomp
            // filter refused even that).
            Ok(None) => match pchan.failure() {
                Some(m) => return Err(kill_child(Error::Init(m))),
                None => break,
            },
            Ok(Some((Msg::SeccompListener(n), _))) => {
                let fd = crate::notify::take_listener(pidfd.as_fd(), n, &pchan).map_err(kill_child)?;
                if let Some(sc) = st.spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
                    let state = crate::container::oci_state(st, ContainerStatus::Running);
                    berth_seccomp::send_to_listener(sc, &state, pid, fd.as_fd())
                        .map_err(|e| kill_child(Error::Invalid(format!("linux.seccomp.listenerPath: {e}"))))?;
                }
                drop(fd);
                pchan
                    .send(&Msg::ListenerTaken, None)
                    .ctx(|| "resuming the exec process".to_string())
                    .map_err(kill_child)?;
            }
            Ok(Some((Msg::Error(m), _))) => return Err(kill_child(Error::Init(m))),
            Ok(Some((other, _))) => return Err(kill_child(Error::Init(format!("unexpected message {other:?}")))),
            Err(e) => return Err(kill_child(Error::io("waiting for the exec process", e))),
        }
    }
    // Past this point the process runs; a failure must not leave it behind.
    if let Some(p) = &opts.pid_file {
        crate::container::write_pid_file(p, pid).map_err(kill_child)?;
    }
    let master = match console_parent {
        Some(a) => {
            Some(crate::tty::recv_fd(a.as_fd()).ctx(|| "receiving the PTY master".to_string()).map_err(kill_child)?.1)
        }
        None => None,
    };
    Ok(Spawned { pid, pidfd, master })
}

#[allow(clippy::too_many_arguments)]
fn child(
    new: &berth_sys::process::Child,
    init: &OwnedFd,
    ns: u32,
    root: Option<&OwnedFd>,
    plan: &ProcessPlan,
    seccomp: Option<&berth_seccomp::CompiledFilter>,
    chan: &Channel,
    console: Option<&OwnedFd>,
    stdio: Option<&crate::init::Stdio>,
) -> ! {
    // As for the init (init::run): keep only what this process uses.
    log::set_max_level(log::LevelFilter::Off);
    let mut keep = vec![init.as_raw_fd(), chan.fd().as_raw_fd()];
    keep.extend(root.map(|f| f.as_raw_fd()));
    keep.extend(console.map(|f| f.as_raw_fd()));
    keep.extend(stdio.into_iter().flat_map(crate::init::Stdio::fds));
    keep.extend((3..3 + plan.preserve_fds).filter_map(|fd| i32::try_from(fd).ok()));
    if let Err(e) = new.close_all_except(&keep) {
        let _ = chan.fail(&format!("closing inherited descriptors: {e}"));
        berth_sys::process::exit_immediately(127);
    }
    let res = (|| -> Result<std::convert::Infallible> {
        if let (Some(s), false) = (stdio, plan.terminal) {
            s.apply()?;
        }
        if ns != 0 {
            rustix::thread::move_into_thread_name_spaces(
                init.as_fd(),
                rustix::thread::ThreadNameSpaceType::from_bits_retain(ns),
            )
            .ctx(|| "joining the container's namespaces".to_string())?;
        }
        if let Some(r) = root {
            rustix::process::fchdir(r).ctx(|| "entering the container's root".to_string())?;
            rustix::process::chroot(".").ctx(|| "chroot to the container's root".to_string())?;
            rustix::process::chdir("/").ctx(|| "chdir /".to_string())?;
        }
        if let Some(adj) = plan.oom_score_adj {
            std::fs::write("/proc/self/oom_score_adj", adj.to_string())
                .map_err(|e| Error::Invalid(format!("process.oomScoreAdj: cannot set {adj}: {e}")))?;
        }
        if plan.terminal {
            let sock = console.ok_or_else(|| Error::Invalid("process.terminal: no console socket".into()))?;
            let (master, slave, name) = crate::tty::open_pty(plan.console_size)?;
            crate::tty::make_controlling(&slave)?;
            crate::tty::send_fd(sock.as_fd(), name.as_bytes(), master.as_fd())
                .ctx(|| "sending the PTY master".to_string())?;
        }
        match chan.recv().ctx(|| "waiting for the runtime".to_string())? {
            Some((Msg::Go(_), _)) => {}
            other => return Err(Error::Init(format!("unexpected message from the runtime: {other:?}"))),
        }
        crate::init::exec_process(plan, seccomp, chan, || Ok(()))
    })();
    let msg = match res {
        Ok(never) => match never {},
        Err(e) => e.to_string(),
    };
    let _ = chan.fail(&msg);
    berth_sys::process::exit_immediately(127)
}

/// `ps`: host pids of every process in the container's cgroup; for a VM container, the
/// guest's pids of the container's processes (see [`crate::vm::processes`]).
pub fn pids(root: &Path, id: &str) -> Result<Vec<i32>> {
    pids_of(root, &ContainerState::load(root, id)?)
}

/// [`pids`] of a container whose state the caller has loaded already.
pub fn pids_of(root: &Path, st: &ContainerState) -> Result<Vec<i32>> {
    if crate::vm::is_vm(&st.spec) {
        return Ok(crate::vm::processes(root, st)?.into_iter().map(|p| p.pid).collect());
    }
    let cg = st
        .cgroup
        .as_ref()
        .ok_or_else(|| Error::WrongState(format!("container {} has no cgroup (rootless without delegation)", st.id)))?;
    let mut p = cg.pids().map_err(|e| Error::Cgroup(e.to_string()))?;
    p.sort_unstable();
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_parsing_is_exact() {
        assert_eq!(parse_user("1").unwrap(), (1, None));
        assert_eq!(parse_user("0").unwrap(), (0, None));
        assert_eq!(parse_user("1000:100").unwrap(), (1000, Some(100)));
        for bad in ["", "a", "1:", ":1", "-1", "1:x", "4294967296", "1 ", " 1", "+1", "0x1", "1:2:3"] {
            assert!(parse_user(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ids_are_limited_to_0_through_2147483647() {
        assert_eq!(parse_user("2147483647:2147483647").unwrap(), (2_147_483_647, Some(2_147_483_647)));
        let range = "is out of range (0 to 2147483647)";
        for (arg, want) in [
            ("4294967295", format!("--user \"4294967295\": uid 4294967295 {range}")),
            ("2147483648", format!("--user \"2147483648\": uid 2147483648 {range}")),
            ("0:4294967295", format!("--user \"0:4294967295\": gid 4294967295 {range}")),
            (
                "99999999999999999999999",
                format!("--user \"99999999999999999999999\": uid 99999999999999999999999 {range}"),
            ),
        ] {
            assert_eq!(parse_user(arg).unwrap_err().to_string(), want);
        }
        assert_eq!(parse_additional_gids("0,5,2147483647").unwrap(), [0, 5, 2_147_483_647]);
        assert_eq!(
            parse_additional_gids("5,4294967295").unwrap_err().to_string(),
            format!("--additional-gids \"5,4294967295\": gid 4294967295 {range}")
        );
        for bad in ["", "1,", ",1", "+1", "1 ", "x", "-1", "1,,2"] {
            assert!(parse_additional_gids(bad).is_err(), "{bad:?} accepted");
        }
    }
}
