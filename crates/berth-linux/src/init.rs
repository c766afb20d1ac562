//! The container's init: what runs in the cloned child until it execs the user process.
//!
//! The child is a copy of a single-threaded parent (berth forks only from single-threaded
//! processes), so ordinary Rust is safe here. Every failure is sent to the parent as text and
//! the child exits; a panic is caught and reported the same way. `pdeathsig` ties the child
//! to its parent until setup is confirmed, so a crashed `berth create` leaves no half-built
//! container behind.

use std::convert::Infallible;
use std::os::fd::{AsRawFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};

use berth_sys::process::{exit_immediately, CStringArray, Child};
use rustix::fs::{self as rfs, Mode, OFlags};
use rustix::process::Signal;
use rustix::thread::{CapabilitySet, CapabilitySets};

use crate::error::{Context, Error, Result};
use crate::plan::{Plan, ProcessPlan};
use crate::rootfs;
use crate::sync::{Channel, Msg};

/// Descriptors to install as a process's stdin, stdout and stderr (`None`: inherit).
#[derive(Debug, Default)]
pub struct Stdio {
    /// stdin.
    pub stdin: Option<OwnedFd>,
    /// stdout.
    pub stdout: Option<OwnedFd>,
    /// stderr.
    pub stderr: Option<OwnedFd>,
}

impl Stdio {
    /// dup2s the given descriptors onto 0, 1 and 2 (without close-on-exec).
    pub fn apply(&self) -> Result<()> {
        if let Some(f) = &self.stdin {
            rustix::stdio::dup2_stdin(f).ctx(|| "dup2 stdin".to_string())?;
        }
        if let Some(f) = &self.stdout {
            rustix::stdio::dup2_stdout(f).ctx(|| "dup2 stdout".to_string())?;
        }
        if let Some(f) = &self.stderr {
            rustix::stdio::dup2_stderr(f).ctx(|| "dup2 stderr".to_string())?;
        }
        Ok(())
    }
}

impl Stdio {
    pub(crate) fn fds(&self) -> impl Iterator<Item = std::os::fd::RawFd> + '_ {
        [&self.stdin, &self.stdout, &self.stderr].into_iter().flatten().map(|f| f.as_raw_fd())
    }
}

/// Entry point of the child after clone. Never returns.
pub fn run(child: &Child, plan: &Plan, chan: &Channel, fifo: Option<OwnedFd>, stdio: Option<&Stdio>) -> ! {
    // The creator may be a long-lived process (a grouped shim, a monitor) with many
    // descriptors: keep exactly what the init uses, so none of them is visible in the
    // container and none counts against its RLIMIT_NOFILE. Nothing logs from here on: the
    // logger's descriptor (if any) is gone.
    log::set_max_level(log::LevelFilter::Off);
    let mut keep: Vec<std::os::fd::RawFd> = vec![chan.fd().as_raw_fd()];
    keep.extend(fifo.as_ref().map(|f| f.as_raw_fd()));
    keep.extend(plan.console_socket.as_ref().map(|f| f.as_raw_fd()));
    keep.extend(plan.bind_trees.iter().map(|(_, f)| f.as_raw_fd()));
    keep.extend(plan.join.iter().chain(&plan.join_user).map(|ns| ns.fd.as_raw_fd()));
    keep.extend(stdio.into_iter().flat_map(Stdio::fds));
    keep.extend((3..3 + plan.process.preserve_fds).filter_map(|fd| i32::try_from(fd).ok()));
    if let Err(e) = child.close_all_except(&keep) {
        let _ = chan.fail(&format!("closing inherited descriptors: {e}"));
        exit_immediately(1);
    }
    let outcome = catch_unwind(AssertUnwindSafe(|| main(plan, chan, fifo, stdio)));
    let msg = match outcome {
        Ok(Ok(never)) => match never {},
        Ok(Err(e)) => e.to_string(),
        Err(_) => "internal error: container init panicked".to_string(),
    };
    if chan.fail(&msg).is_err() {
        // Nobody is listening any more (`create` returned and another process started us
        // through the exec fifo): the container's stderr is where the error can be seen.
        let _ = rustix::io::write(rustix::stdio::stderr(), format!("berth: {msg}\n").as_bytes());
    }
    exit_immediately(1)
}

/// Ties this process to its creator: SIGKILL when the creating `berth` dies (a crashed
/// create takes its half-built init with it). A creator that died before the signal was set
/// cannot deliver it: then its end of the setup channel is closed already. (getppid cannot
/// tell: in a new pid namespace the parent is outside and reads as 0.)
fn die_with_creator(chan: &Channel) -> Result<()> {
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL)).ctx(|| "setting pdeathsig".to_string())?;
    let fd = chan.fd();
    let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::RDHUP)];
    let now = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
    if rustix::event::poll(&mut fds, Some(&now)).is_ok_and(|n| n > 0)
        && fds[0].revents().intersects(rustix::event::PollFlags::RDHUP | rustix::event::PollFlags::HUP)
    {
        exit_immediately(1);
    }
    Ok(())
}

fn wait_go(chan: &Channel) -> Result<String> {
    match chan.recv().ctx(|| "waiting for the runtime".to_string())? {
        Some((Msg::Go(state), _)) => Ok(state),
        Some((Msg::Abort(m), _)) => Err(Error::Init(m)),
        other => Err(Error::Init(format!("unexpected message from the runtime: {other:?}"))),
    }
}

fn main(plan: &Plan, chan: &Channel, fifo: Option<OwnedFd>, stdio: Option<&Stdio>) -> Result<Infallible> {
    if let (Some(s), false) = (stdio, plan.process.terminal) {
        s.apply()?;
    }
    die_with_creator(chan)?;
    // Files and nodes we create get exactly the modes we ask for; the user's umask is
    // applied just before exec.
    rustix::process::umask(Mode::empty());
    let mut state = None;
    if plan.new_userns || plan.unshare_cgroupns || !plan.create_container_hooks.is_empty() {
        state = Some(wait_go(chan)?);
    }
    if plan.new_userns {
        // Become root of the new namespace so files we create are owned by the mapped root.
        rustix::thread::set_thread_res_gid(rustix::fs::Gid::ROOT, rustix::fs::Gid::ROOT, rustix::fs::Gid::ROOT)
            .ctx(|| "setresgid(0) in the user namespace (is gid 0 mapped?)".to_string())?;
        rustix::thread::set_thread_res_uid(rustix::fs::Uid::ROOT, rustix::fs::Uid::ROOT, rustix::fs::Uid::ROOT)
            .ctx(|| "setresuid(0) in the user namespace (is uid 0 mapped?)".to_string())?;
    }
    if let Some(user) = &plan.join_user {
        // The user namespace first: it gives us the capabilities to join or create the others
        // as its root. Cgroups must be joined before we possibly fork the real init below.
        if state.is_none() {
            state = Some(wait_go(chan)?);
        }
        user.enter()?;
        rustix::thread::set_thread_res_gid(rustix::fs::Gid::ROOT, rustix::fs::Gid::ROOT, rustix::fs::Gid::ROOT)
            .ctx(|| format!("setresgid(0) in user namespace {} (is gid 0 mapped?)", user.path.display()))?;
        rustix::thread::set_thread_res_uid(rustix::fs::Uid::ROOT, rustix::fs::Uid::ROOT, rustix::fs::Uid::ROOT)
            .ctx(|| format!("setresuid(0) in user namespace {} (is uid 0 mapped?)", user.path.display()))?;
    }
    for ns in &plan.join {
        // The descriptors the parent opened and type-checked (plan::open_namespace).
        ns.enter()?;
    }
    if plan.unshare_after_user != 0 {
        berth_sys::process::unshare_namespaces(plan.unshare_after_user)
            .ctx(|| "creating namespaces in the joined user namespace".to_string())?;
    }
    if plan.fork_for_pidns {
        // unshare(CLONE_NEWPID) only applies to children: fork the real init into it. With
        // CLONE_PARENT it is the runtime's child, like an init cloned directly.
        berth_sys::process::unshare_namespaces(libc::CLONE_NEWPID as u64)
            .ctx(|| "creating the pid namespace".to_string())?;
        let flags = berth_sys::process::CLONE_PARENT | berth_sys::process::CLONE_CLEAR_SIGHAND;
        match berth_sys::process::clone3(flags, None).ctx(|| "forking the init into its pid namespace".to_string())? {
            berth_sys::process::Forked::Parent { pid, .. } => {
                let _ = chan.send(&Msg::InitPid(pid), None);
                exit_immediately(0)
            }
            berth_sys::process::Forked::Child(_) => {
                // pdeathsig is not inherited; the runtime sends the state again with our pid.
                die_with_creator(chan)?;
                state = Some(wait_go(chan)?);
            }
        }
    }
    if plan.unshare_cgroupns {
        berth_sys::process::unshare_namespaces(libc::CLONE_NEWCGROUP as u64)
            .ctx(|| "creating the cgroup namespace".to_string())?;
    }
    if plan.new_netns() {
        // Every namespace is in place: lo is up before any hook or the process runs (runc).
        crate::net::loopback_up()?;
    }
    if let Some(adj) = plan.process.oom_score_adj {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string()).map_err(|e| {
            Error::Invalid(format!(
                "process.oomScoreAdj: cannot set {adj}: {e}{}",
                if adj < 0 { " (lowering it needs CAP_SYS_RESOURCE)" } else { "" }
            ))
        })?;
    }
    let (root, ro_later) = rootfs::prepare(plan)?;
    if !plan.process.cwd.is_empty() && plan.process.cwd != "/" {
        root.mkdir_all(&plan.process.cwd, 0o755).map_err(|e| Error::Invalid(format!("process.cwd: {e}")))?;
    }
    if plan.runtime_hooks {
        // The hooks run with the init in its cgroups (runc's order), and the runtime's Go,
        // which says so, must be read before HooksDone or the two would cross.
        if state.is_none() {
            state = Some(wait_go(chan)?);
        }
        chan.send(&Msg::Hooks, None).ctx(|| "requesting hooks".to_string())?;
        match chan.recv().ctx(|| "waiting for hooks".to_string())? {
            Some((Msg::HooksDone, _)) => {}
            Some((Msg::Abort(m), _)) => return Err(Error::Init(m)),
            other => return Err(Error::Init(format!("unexpected message from the runtime: {other:?}"))),
        }
    }
    if !plan.create_container_hooks.is_empty() {
        let json = state.as_deref().unwrap_or_default();
        // As runc: from the rootfs as the container sees it (its mounts included), with the
        // process's environment, which runc's init holds by then (HOME not looked up yet).
        rustix::process::fchdir(root.fd()).ctx(|| "chdir to the rootfs for createContainer hooks".to_string())?;
        let env = hook_env(&plan.process, false);
        crate::hooks::run_all_with("createContainer", &plan.create_container_hooks, json.as_bytes(), Some(&env))?;
    }
    rootfs::enter(&root, plan)?;
    drop(root);
    if plan.process.terminal {
        crate::tty::setup_console(plan)?;
    }
    // Before finish(): the default spec makes /proc/sys read-only, so runc writes sysctls
    // before applying readonlyPaths, and so do we.
    rootfs::write_sysctls(plan)?;
    rootfs::finish(plan, ro_later)?;
    if let Some(h) = &plan.hostname {
        rustix::system::sethostname(h.as_bytes()).ctx(|| "hostname: sethostname".to_string())?;
    }
    if let Some(d) = &plan.domainname {
        rustix::system::setdomainname(d.as_bytes()).ctx(|| "domainname: setdomainname".to_string())?;
    }
    let state = match state {
        Some(s) => s,
        None => wait_go(chan)?,
    };
    // From here on a parent crash must not kill the container: `create` returns as soon as it
    // reads Ready. If the parent dies before that, sending Ready fails and we exit.
    rustix::process::set_parent_process_death_signal(None).ctx(|| "clearing pdeathsig".to_string())?;
    exec_process(&plan.process, plan.seccomp.as_ref(), chan, || {
        chan.send(&Msg::Ready, None).ctx(|| "reporting ready".to_string())?;
        match &fifo {
            Some(f) => {
                // Blocks until `berth start` writes to the fifo; we hold it O_RDWR so the
                // read cannot see EOF first.
                let mut b = [0u8; 1];
                loop {
                    match rustix::io::read(f, &mut b) {
                        Ok(_) => break,
                        Err(rustix::io::Errno::INTR) => continue,
                        Err(e) => return Err(Error::io("waiting for start", e)),
                    }
                }
                Ok(())
            }
            None => match chan.recv().ctx(|| "waiting for start".to_string())? {
                Some((Msg::Start, _)) => Ok(()),
                Some((Msg::Abort(m), _)) => Err(Error::Init(m)),
                None => Err(Error::Init("runtime went away before start".into())),
                Some((other, _)) => Err(Error::Init(format!("unexpected message {other:?}"))),
            },
        }?;
        if !plan.start_container_hooks.is_empty() {
            let json = with_status(&state, "created");
            // The environment the process is about to get, HOME included (runc's init runs
            // them with exactly that).
            let env = hook_env(&plan.process, true);
            crate::hooks::run_all_with("startContainer", &plan.start_container_hooks, &json, Some(&env))?;
        }
        Ok(())
    })
}

/// The container process's environment for the hooks the init runs: `process.env` (with
/// LISTEN_FDS), and `with_home` the HOME [`finish_as_user`] adds when it is not set.
fn hook_env(p: &ProcessPlan, with_home: bool) -> Vec<String> {
    let mut env: Vec<String> = p.env.items().iter().map(|c| c.to_string_lossy().into_owned()).collect();
    if with_home && !p.has_home {
        env.push(format!("HOME={}", home_of(p.uid).unwrap_or_else(|| "/".to_string())));
    }
    env
}

/// The state JSON with its `status` replaced.
fn with_status(state: &str, status: &str) -> Vec<u8> {
    match serde_json::from_str::<serde_json::Value>(state) {
        Ok(mut v) => {
            v["status"] = serde_json::Value::String(status.to_string());
            serde_json::to_vec(&v).unwrap_or_default()
        }
        Err(_) => state.as_bytes().to_vec(),
    }
}

/// Turns the process being set up (the init, or an exec child) into the container's
/// process: the settings shared by init and exec, then `ready`, then execve.
///
/// The order is the point, and each phase says why it stands where it does:
///
/// 1. [`privileged_work`]: what needs root's privileges in the container (the scheduling
///    policy, the I/O priority and the LSM exec labels among it).
/// 2. [`drop_privileges`]: groups, uid/gid, capabilities.
/// 3. [`finish_as_user`]: the checks that must see the user's permissions, then what needs
///    no privilege (memory policy, personality, an exec's final CPU affinity).
/// 4. `ready`: report and wait for start (the init); see below for the one exception.
/// 5. [`seal`]: close-on-exec for everything not passed on, then the seccomp filter, so that
///    a profile only has to allow what the workload needs: after the filter, berth makes
///    no syscall but `execve` (docs/seccomp.md).
/// 6. execve.
pub fn exec_process(
    p: &ProcessPlan,
    seccomp: Option<&berth_seccomp::CompiledFilter>,
    chan: &Channel,
    ready: impl FnOnce() -> Result<()>,
) -> Result<Infallible> {
    let cwd_denied = privileged_work(p)?;
    // Without no_new_privs, loading the filter needs CAP_SYS_ADMIN, so it survives the drop
    // in the effective set; execve recomputes the sets and takes it away (docs/seccomp.md).
    let keep_admin = seccomp.is_some() && !p.no_new_privs;
    drop_privileges(p, keep_admin)?;
    let exe = finish_as_user(p, cwd_denied)?;
    // A listener must reach the agent through the parent, and a `create`'s parent exits at
    // Ready: with SCMP_ACT_NOTIFY rules the filter goes on before Ready (as in runc), and the
    // syscalls after it are the agent's to answer.
    let listener_first = seccomp.is_some_and(berth_seccomp::CompiledFilter::needs_listener);
    let mut _listener = None;
    if listener_first {
        _listener = seal(p, seccomp, chan)?;
    }
    ready()?;
    if !listener_first {
        _listener = seal(p, seccomp, chan)?;
    }
    let err = berth_sys::process::execve(&exe.path, &p.args, exe.env.as_ref().unwrap_or(&p.env));
    // Everything was checked before the filter, so a refusal now is most likely the filter's.
    let hint = if seccomp.is_some() && err.raw_os_error() == Some(libc::EPERM) {
        " (linux.seccomp must allow execve: nothing else runs after the filter)"
    } else {
        ""
    };
    Err(Error::Invalid(format!("exec {:?}: {err}{hint}", p.arg0)))
}

/// Phase 1, while the process still has root's privileges in the container: raising
/// rlimits, the scheduling policy and I/O priority, the LSM labels for the execve, handing
/// the stdio pipes and the terminal to the user, and entering the cwd (a directory only root
/// may enter must still work for another user, runc PR #2086). Returns whether the cwd was
/// refused for lack of permission, to be retried as the user (who may have access root
/// lacks, e.g. on a root-squashing NFS volume).
fn privileged_work(p: &ProcessPlan) -> Result<bool> {
    // A session of its own, as runc's nsexec gives every init and exec process: the caller's
    // terminal signals go to berth, which forwards them. (With a terminal, taking it as the
    // controlling tty already did this.)
    // (EPERM: already a process group leader, i.e. that session's leader.)
    match rustix::process::setsid() {
        Ok(_) | Err(rustix::io::Errno::PERM) => {}
        Err(e) => return Err(Error::io("setsid", e)),
    }
    // As root, before the user change: the keyring belongs to the container's root (runc).
    join_session_keyring(p)?;
    set_rlimits(p)?;
    // Real-time and deadline policies and a lower nice value need CAP_SYS_NICE.
    if let Some(s) = &p.scheduler {
        crate::procattr::apply_scheduler(s)?;
    }
    // The real-time I/O class needs CAP_SYS_ADMIN (CAP_SYS_NICE on newer kernels).
    if let Some(io) = &p.io_priority {
        crate::procattr::apply_io_priority(io)?;
    }
    // Before no_new_privs, under which the LSMs refuse most label transitions (as runc).
    if let Some(profile) = &p.apparmor_profile {
        crate::lsm::apply_apparmor(profile)?;
    }
    if let Some(label) = &p.selinux_label {
        crate::lsm::apply_selinux(label)?;
    }
    hand_stdio_to_user(p);
    match chdir_verified(cwd_of(p)) {
        Ok(()) => Ok(false),
        Err(CwdError::Denied(_)) => Ok(true),
        Err(CwdError::Other(e)) => Err(e),
    }
}

/// Phase 2: bounding set, groups, gid, uid, then the capability sets (and ambient). After
/// this the process has the user's credentials. With `keep_admin`, CAP_SYS_ADMIN stays
/// effective for the filter (see [`exec_process`]).
fn drop_privileges(p: &ProcessPlan, keep_admin: bool) -> Result<()> {
    let admin = CapabilitySet::SYS_ADMIN.bits();
    let caps = match &p.caps {
        Some(c) => Some(*c),
        // No capabilities in the spec: the process keeps what it has, as runc does, which for
        // a non-root user the uid change takes away. To keep CAP_SYS_ADMIN for the filter,
        // keep the permitted set across the change and let execve apply that rule instead.
        None if keep_admin && p.uid != 0 => {
            let now = rustix::thread::capabilities(None).ctx(|| "capget".to_string())?;
            Some(crate::plan::CapPlan {
                bounding: u64::MAX,
                effective: now.permitted.bits(),
                permitted: now.permitted.bits(),
                inheritable: now.inheritable.bits(),
                ambient: 0,
            })
        }
        None => None,
    };
    if let Some(c) = &caps {
        let last = crate::caps::last_cap_in_child();
        for n in 0..=last.min(63) {
            if c.bounding & (1u64 << n) == 0 {
                let one = CapabilitySet::from_bits_retain(1u64 << n);
                match rustix::thread::remove_capability_from_bounding_set(one) {
                    Ok(()) | Err(rustix::io::Errno::INVAL) => {}
                    Err(e) => return Err(Error::io(format!("dropping capability {n} from the bounding set"), e)),
                }
            }
        }
        rustix::thread::set_keep_capabilities(true).ctx(|| "PR_SET_KEEPCAPS".to_string())?;
    }
    let groups: Vec<rustix::fs::Gid> = p.additional_gids.iter().map(|g| rustix::fs::Gid::from_raw(*g)).collect();
    match rustix::thread::set_thread_groups(&groups) {
        Ok(()) => {}
        // In a user namespace set up by an unprivileged user setgroups is denied; with no
        // groups requested there is nothing to do (the kernel shows inherited ones as the
        // overflow gid and they cannot be dropped there).
        Err(rustix::io::Errno::PERM) if groups.is_empty() && setgroups_denied() => {}
        Err(e) => return Err(Error::io("process.user.additionalGids: setgroups", e)),
    }
    let gid = rustix::fs::Gid::from_raw(p.gid);
    rustix::thread::set_thread_res_gid(gid, gid, gid).ctx(|| format!("process.user.gid: setresgid({})", p.gid))?;
    let uid = rustix::fs::Uid::from_raw(p.uid);
    rustix::thread::set_thread_res_uid(uid, uid, uid).ctx(|| format!("process.user.uid: setresuid({})", p.uid))?;
    if let Some(c) = &caps {
        rustix::thread::set_keep_capabilities(false).ctx(|| "PR_SET_KEEPCAPS".to_string())?;
        let extra = if keep_admin { admin } else { 0 };
        let sets = CapabilitySets {
            effective: CapabilitySet::from_bits_retain(c.effective | extra),
            permitted: CapabilitySet::from_bits_retain(c.permitted | extra),
            inheritable: CapabilitySet::from_bits_retain(c.inheritable),
        };
        rustix::thread::set_capabilities(None, sets).ctx(|| "process.capabilities: capset".to_string())?;
        rustix::thread::clear_ambient_capability_set().ctx(|| "clearing ambient capabilities".to_string())?;
        // The kernel only lets a capability into the ambient set if it is both permitted and
        // inheritable. runc's default spec lists ambient caps without inheritable ones (since
        // the CVE-2022-29162 fix) and runc skips them silently; do the same.
        // (The plan logs the skipped ones: the init does not log.)
        let raisable = c.ambient & c.permitted & c.inheritable;
        for n in 0..64 {
            if raisable & (1u64 << n) != 0 {
                rustix::thread::configure_capability_in_ambient_set(CapabilitySet::from_bits_retain(1u64 << n), true)
                    .ctx(|| format!("process.capabilities.ambient: raising capability {n}"))?;
            }
        }
    }
    Ok(())
}

/// What execve needs, resolved as the user.
struct Exe {
    path: std::ffi::CString,
    env: Option<CStringArray>,
}

/// Phase 3, as the user: the cwd if root was refused it, the executable lookup (so a
/// missing or non-executable binary fails `create`, checked with the user's permissions),
/// HOME from the container's /etc/passwd, no_new_privs, signal dispositions, umask, the
/// memory policy, the personality and an exec's final CPU affinity. All of it before the
/// filter, which need not allow any of it.
fn finish_as_user(p: &ProcessPlan, cwd_denied: bool) -> Result<Exe> {
    if cwd_denied {
        chdir_verified(cwd_of(p)).map_err(CwdError::into_error)?;
    }
    let path = lookup(p)?;
    let env = if p.has_home {
        None
    } else {
        let home = home_of(p.uid).unwrap_or_else(|| "/".to_string());
        let mut items: Vec<String> = p.env.items().iter().map(|c| c.to_string_lossy().into_owned()).collect();
        items.push(format!("HOME={home}"));
        Some(CStringArray::new(&items).map_err(|_| Error::Invalid("process.env: NUL byte".into()))?)
    };
    if p.no_new_privs {
        rustix::thread::set_no_new_privs(true).ctx(|| "setting no_new_privs".to_string())?;
    }
    berth_sys::signal::reset_all().ctx(|| "resetting signal dispositions".to_string())?;
    rustix::process::umask(Mode::from_raw_mode(p.umask.unwrap_or(0o022)));
    // Needs no privilege; set late, so that the runtime's own setup is not held to it.
    if let Some(mp) = &p.mem_policy {
        crate::procattr::apply_mem_policy(mp)?;
    }
    // Needs no privilege; before the filter, which may allow only some personas.
    if let Some(persona) = p.personality {
        crate::procattr::apply_personality(persona)?;
    }
    // After the cgroups were joined (the exec's Go says so), last, as the runtime spec's
    // "after the transition to the container's cgroup".
    if let Some(a) = &p.cpu_affinity {
        crate::procattr::apply_final(a)?;
    }
    Ok(Exe { path, env })
}

/// Phase 5: every descriptor not meant for the process becomes close-on-exec, including any
/// a caller leaked into the runtime (CVE-2024-21626), preserved ones are kept open; then the
/// seccomp filter. Returns the listener (held open until execve closes it).
fn seal(p: &ProcessPlan, seccomp: Option<&berth_seccomp::CompiledFilter>, chan: &Channel) -> Result<Option<OwnedFd>> {
    let first = 3 + p.preserve_fds;
    berth_sys::cloexec_range(first, u32::MAX).ctx(|| "close_range".to_string())?;
    for fd in 3..first {
        berth_sys::keep_on_exec(fd as i32).ctx(|| format!("--preserve-fds: descriptor {fd}"))?;
    }
    match seccomp {
        Some(f) => crate::notify::install(f, chan),
        None => Ok(None),
    }
}

/// Joins (the init: creates) the container's session keyring, as runc does unless
/// `--no-new-keyring`. A kernel without keyrings (ENOSYS) is tolerated, as in runc: the
/// protection is best-effort there.
fn join_session_keyring(p: &ProcessPlan) -> Result<()> {
    let Some(k) = &p.session_keyring else { return Ok(()) };
    let serial = match berth_sys::keyring::join_session_keyring(&k.name) {
        Ok(s) => s,
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => return Ok(()),
        Err(e) => return Err(Error::io(format!("unable to join session keyring {:?}", k.name), e)),
    };
    if let Some(add) = k.add_perm {
        let perm = berth_sys::keyring::permissions(serial)
            .ctx(|| format!("unable to mod keyring permissions of {:?}", k.name))?;
        berth_sys::keyring::set_permissions(serial, perm | add)
            .ctx(|| format!("unable to mod keyring permissions of {:?}", k.name))?;
    }
    Ok(())
}

fn set_rlimits(p: &ProcessPlan) -> Result<()> {
    for r in &p.rlimits {
        let lim = rustix::process::Rlimit {
            current: Some(r.soft).filter(|v| *v != u64::MAX),
            maximum: Some(r.hard).filter(|v| *v != u64::MAX),
        };
        rustix::process::setrlimit(r.resource, lim).map_err(|e| {
            let cur = rustix::process::getrlimit(r.resource).maximum.map_or("unlimited".to_string(), |v| v.to_string());
            Error::Invalid(format!(
                "process.rlimits {}: cannot set soft={} hard={}: {e}{}",
                r.name,
                r.soft,
                r.hard,
                if e == rustix::io::Errno::PERM {
                    format!(" (raising the hard limit above the current {cur} needs CAP_SYS_RESOURCE, which this host's capability bounding set lacks)")
                } else {
                    String::new()
                }
            ))
        })?;
    }
    Ok(())
}

fn cwd_of(p: &ProcessPlan) -> &str {
    if p.cwd.is_empty() {
        "/"
    } else {
        p.cwd.as_str()
    }
}

/// Gives the process user its stdio where that is safe, as runc's fixStdioPermissions does:
/// the pipes and sockets (so that a process that is not root can reopen them as
/// `/dev/stdout`), and the terminal berth made for it (so that it owns its tty; its group
/// stays the one devpts gave it, `tty` with runc's default `gid=5`). Only those: pipes and
/// sockets exist for this process tree alone, and the terminal was allocated from the
/// container's own devpts. A regular file, a directory or another device (a host terminal,
/// /dev/null) is the host's and keeps its owner and mode (runc changes all but /dev/null).
/// Only the uid changes, and failures are ignored (an owner not mapped into a user
/// namespace, a read-only mount): the process can still use the descriptors it was given.
fn hand_stdio_to_user(p: &ProcessPlan) {
    for fd in [rustix::stdio::stdin(), rustix::stdio::stdout(), rustix::stdio::stderr()] {
        let Ok(st) = rfs::fstat(fd) else { continue };
        let ours = match st.st_mode & libc::S_IFMT {
            libc::S_IFIFO | libc::S_IFSOCK => true,
            // UNIX98 PTY slaves (majors 136-143): with a terminal, stdio is the slave
            // tty::open_pty took from the container's ptmx.
            libc::S_IFCHR => p.terminal && (136..=143).contains(&rustix::fs::major(st.st_rdev)),
            _ => false,
        };
        if ours && st.st_uid != p.uid {
            let _ = rfs::fchown(fd, Some(rustix::fs::Uid::from_raw(p.uid)), None);
        }
    }
}

/// Why the cwd could not be entered: for lack of permission (retried as the user), or not.
enum CwdError {
    Denied(Error),
    Other(Error),
}

impl CwdError {
    fn into_error(self) -> Error {
        match self {
            CwdError::Denied(e) | CwdError::Other(e) => e,
        }
    }
}

/// chdir to the process cwd, resolved inside the root without magic links, then check with
/// getcwd that we are really inside the root (CVE-2024-21626: `cwd=/proc/self/fd/N` pointing
/// at a leaked host directory).
fn chdir_verified(cwd: &str) -> std::result::Result<(), CwdError> {
    let fail = |what: &str, e: rustix::io::Errno| {
        let err = Error::Invalid(format!("process.cwd {cwd:?}: {what}{}", std::io::Error::from(e)));
        if e == rustix::io::Errno::ACCESS || e == rustix::io::Errno::PERM {
            CwdError::Denied(err)
        } else {
            CwdError::Other(err)
        }
    };
    let root = rfs::open("/", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| CwdError::Other(Error::io("opening /", e)))?;
    let fd = rfs::openat2(
        &root,
        crate::paths::rel(cwd),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        rfs::ResolveFlags::IN_ROOT | rfs::ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| fail("", e))?;
    rustix::process::fchdir(&fd).map_err(|e| fail("chdir: ", e))?;
    let got = rustix::process::getcwd(Vec::new()).map_err(|e| fail("getcwd: ", e))?;
    if !got.to_bytes().starts_with(b"/") {
        return Err(CwdError::Other(Error::Invalid(format!(
            "process.cwd {cwd:?}: resolves outside the container root"
        ))));
    }
    Ok(())
}

fn setgroups_denied() -> bool {
    std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny")
}

/// Finds the executable like execvp would, but before `ready`, so a missing binary fails
/// `create` instead of `start` (runc does the same). The messages are Go's `exec.LookPath`
/// ones, as runc prints them: Docker and podman turn "executable file not found" and "no such
/// file or directory" into exit status 127 and "permission denied" into 126.
fn lookup(p: &ProcessPlan) -> Result<std::ffi::CString> {
    let executable = |st: &rfs::Stat| st.st_mode & libc::S_IFMT == libc::S_IFREG;
    let found = if p.arg0.contains('/') {
        let st = rfs::stat(p.arg0.as_str())
            .map_err(|e| Error::Invalid(format!("exec: {:?}: stat {}: {}", p.arg0, p.arg0, errno_text(e))))?;
        if !executable(&st) || rfs::access(p.arg0.as_str(), rfs::Access::EXEC_OK).is_err() {
            return Err(Error::Invalid(format!("exec: {:?}: permission denied", p.arg0)));
        }
        Some(p.arg0.clone())
    } else {
        p.path_env
            .split(':')
            .map(|d| if d.is_empty() { "." } else { d })
            .map(|d| format!("{}/{}", d.trim_end_matches('/'), p.arg0))
            .find(|c| {
                rfs::stat(c.as_str()).is_ok_and(|st| executable(&st))
                    && rfs::access(c.as_str(), rfs::Access::EXEC_OK).is_ok()
            })
    };
    let found =
        found.ok_or_else(|| Error::Invalid(format!("exec: {:?}: executable file not found in $PATH", p.arg0)))?;
    std::ffi::CString::new(found).map_err(|_| Error::Invalid("process.args[0]: NUL byte".into()))
}

/// An errno as Go prints it (`no such file or directory`): clients match these words.
fn errno_text(e: rustix::io::Errno) -> String {
    let s = std::io::Error::from(e).to_string();
    let s = s.split(" (os error").next().unwrap_or_default();
    let mut c = s.chars();
    c.next().map_or_else(String::new, |f| f.to_lowercase().chain(c).collect())
}

/// HOME of `uid` from the container's /etc/passwd (runc sets HOME when the spec does not).
fn home_of(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 6 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[5].to_string())
    })
}
