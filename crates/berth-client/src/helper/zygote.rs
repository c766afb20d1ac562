//! The helper ("zygote"): one single-threaded process per state root that forks monitors.
//!
//! Why a zygote: forking a small, already-initialised process costs a fraction of spawning a
//! binary (no exec, no dynamic loading, no start-up), and the pages the monitors do not write
//! stay shared with it, which keeps each monitor's PSS low.
//!
//! Lifetime: started by a client (its parent), it holds `<root>/.berth-helper.lock` (flock)
//! for its whole life so there is never more than one per root, listens on
//! `<root>/.berth-helper.sock`, and is a subreaper, so monitors stay its children (it reaps
//! them) and a container process orphaned by a dead monitor is reaped too. It never dies with
//! the engine: with monitors alive it keeps running, and a restarted engine reconnects to it.
//! It exits once it has no client connection and no monitor left.
//!
//! Readiness is reported on stdout (`ready`, or `busy` when another helper holds the lock),
//! after which stdout is pointed at /dev/null.

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use berth_sys::process::{fork, Forked};
use berth_sys::signal::{self as sig, SigSet};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketFlags, SocketType};
use rustix::process::{Pid, WaitOptions};

use crate::wire::{self, HelperHello, HelperRequest, Msg};

/// File names under the state root.
pub(crate) const SOCK: &str = ".berth-helper.sock";
pub(crate) const LOCK: &str = ".berth-helper.lock";
pub(crate) const PID_FILE: &str = ".berth-helper.pid";

/// How long a helper nobody connected to waits before giving up.
const FIRST_CLIENT_WAIT: Duration = Duration::from_secs(10);

struct Zygote {
    listener: Option<OwnedFd>,
    sigfd: Option<OwnedFd>,
    lock: Option<OwnedFd>,
    clients: Vec<OwnedFd>,
    /// Monitor pid → the container it serves.
    monitors: HashMap<i32, String>,
}

impl Zygote {
    /// In a freshly forked monitor: close everything that belongs to the helper. The lock in
    /// particular: a monitor keeping it would stop a later helper from ever starting.
    fn release_in_child(&mut self) {
        self.listener = None;
        self.sigfd = None;
        self.lock = None;
        self.clients.clear();
        self.monitors.clear();
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes()).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush());
}

/// Runs the helper for `root`. Returns the process exit code.
pub(crate) fn run(root: &Path) -> i32 {
    let mut z = match setup(root) {
        Ok(Some(z)) => z,
        Ok(None) => {
            say("busy");
            return 0;
        }
        Err(e) => {
            log::error!("helper for {}: {e}", root.display());
            say(&format!("error {e}"));
            return 1;
        }
    };
    say("ready");
    if let Ok(null) = rustix::fs::open("/dev/null", OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty()) {
        let _ = rustix::stdio::dup2_stdout(&null);
    }
    log::info!("helper for {} ready", root.display());
    let started = Instant::now();
    let mut had_client = false;
    let mut trimmed = false;
    loop {
        if z.clients.is_empty() && z.monitors.is_empty() && (had_client || started.elapsed() > FIRST_CLIENT_WAIT) {
            break;
        }
        let (listen_ready, sig_ready, client_ready) = {
            let (Some(listener), Some(sigfd)) = (z.listener.as_ref(), z.sigfd.as_ref()) else { break };
            let mut fds = Vec::with_capacity(2 + z.clients.len());
            fds.push(PollFd::new(listener, PollFlags::IN));
            fds.push(PollFd::new(sigfd, PollFlags::IN));
            for c in &z.clients {
                fds.push(PollFd::new(c, PollFlags::IN));
            }
            let timeout = Timespec { tv_sec: 1, tv_nsec: 0 };
            // Idle, the helper gives memory back like a monitor does (monitor.rs, serve):
            // the monitors it forked no longer share its pages once they trimmed theirs.
            let idle = Timespec { tv_sec: 0, tv_nsec: 500_000_000 };
            let wait = if !had_client {
                Some(&timeout)
            } else if trimmed {
                None
            } else {
                Some(&idle)
            };
            match poll(&mut fds, wait) {
                Ok(0) if had_client && !trimmed => {
                    trimmed = true;
                    let _ = berth_sys::mem::trim_heap();
                    let _ = berth_sys::mem::release_unused_stack();
                    let _ = berth_sys::mem::release_clean_image_pages();
                    continue;
                }
                Ok(_) | Err(Errno::INTR) => trimmed = false,
                Err(e) => {
                    log::error!("helper: poll: {e}");
                    break;
                }
            }
            let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
            (
                ready.first().copied().unwrap_or(false),
                ready.get(1).copied().unwrap_or(false),
                ready.get(2..).map(|r| r.to_vec()).unwrap_or_default(),
            )
        };
        if sig_ready {
            drain_signalfd(z.sigfd.as_ref());
            reap(root, &mut z.monitors);
        }
        if listen_ready {
            accept_all(&mut z, &mut had_client);
        }
        let mut spawns = Vec::new();
        let mut gone = Vec::new();
        for (i, ready) in client_ready.iter().enumerate() {
            if !*ready {
                continue;
            }
            let Some(c) = z.clients.get(i) else { continue };
            loop {
                match wire::recv_packet(c.as_fd(), true) {
                    Ok(Some((data, mut fds))) => match serde_json::from_slice::<HelperRequest>(&data) {
                        Ok(HelperRequest::Spawn { id }) if fds.len() == 1 => {
                            if let Some(fd) = fds.pop() {
                                spawns.push((id, fd));
                            }
                        }
                        Ok(other) => log::warn!("helper: malformed request {other:?} with {} descriptors", fds.len()),
                        Err(e) => log::warn!("helper: undecodable request: {e}"),
                    },
                    Ok(None) => {
                        gone.push(i);
                        break;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        log::warn!("helper: client connection: {e}");
                        gone.push(i);
                        break;
                    }
                }
            }
        }
        for i in gone.into_iter().rev() {
            z.clients.remove(i);
        }
        while let Some((id, conn)) = spawns.pop() {
            match fork() {
                Ok(Forked::Child(_)) => {
                    z.release_in_child();
                    drop(spawns);
                    let code = super::monitor::run(root, &id, conn);
                    berth_sys::process::exit_immediately(code)
                }
                Ok(Forked::Parent { pid, .. }) => {
                    log::debug!("helper: monitor {pid} for {id}");
                    z.monitors.insert(pid, id);
                }
                Err(e) => {
                    log::error!("helper: fork for {id}: {e}");
                    let msg = Msg::Err { id: 0, kind: "system".into(), message: format!("starting a monitor: {e}") };
                    let _ = wire::send_json(conn.as_fd(), &msg, &[], true);
                }
            }
        }
    }
    let _ = std::fs::remove_file(root.join(SOCK));
    let _ = std::fs::remove_file(root.join(PID_FILE));
    log::info!("helper for {} exiting: no clients and no containers", root.display());
    0
}

fn setup(root: &Path) -> std::io::Result<Option<Zygote>> {
    let mut set = SigSet::empty();
    set.add(libc::SIGCHLD)?;
    sig::set_mask(&set)?;
    let sigfd = sig::signalfd(&set)?;
    rustix::process::set_child_subreaper(Some(Pid::INIT))?;
    let lock_path = root.join(LOCK);
    let lock =
        rustix::fs::open(&lock_path, OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC, Mode::from_raw_mode(0o600))?;
    match rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(Errno::WOULDBLOCK) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    match std::fs::remove_file(root.join(SOCK)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = listen_at(root, SOCK)?;
    berth_core::state::write_atomic(&root.join(PID_FILE), std::process::id().to_string().as_bytes(), 0o644)?;
    Ok(Some(Zygote {
        listener: Some(listener),
        sigfd: Some(sigfd),
        lock: Some(lock),
        clients: Vec::new(),
        monitors: HashMap::new(),
    }))
}

/// A listening, non-blocking `SOCK_SEQPACKET` socket at `dir/name`. The bind happens with
/// `dir` as the working directory and a relative name, so long state roots do not hit the
/// 108-byte limit of socket paths (the helper is single-threaded, so chdir is safe here).
pub(crate) fn listen_at(dir: &Path, name: &str) -> std::io::Result<OwnedFd> {
    let sock = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    rustix::process::chdir(dir)?;
    let bound = rustix::net::SocketAddrUnix::new(name).and_then(|a| rustix::net::bind(&sock, &a));
    let back = rustix::process::chdir("/");
    bound?;
    back?;
    rustix::net::listen(&sock, 128)?;
    Ok(sock)
}

fn accept_all(z: &mut Zygote, had_client: &mut bool) {
    let Some(listener) = z.listener.as_ref() else { return };
    loop {
        match rustix::net::accept_with(listener, SocketFlags::CLOEXEC) {
            Ok(c) => {
                let hello = HelperHello { pid: std::process::id() };
                if wire::send_json(c.as_fd(), &hello, &[], true).is_ok() {
                    z.clients.push(c);
                    *had_client = true;
                }
            }
            Err(Errno::INTR) => continue,
            Err(_) => return,
        }
    }
}

pub(crate) fn drain_signalfd(fd: Option<&OwnedFd>) {
    let Some(fd) = fd else { return };
    let mut buf = [0u8; sig::SIGINFO_SIZE];
    while let Ok(n) = rustix::io::read(fd, &mut buf) {
        if n == 0 {
            break;
        }
    }
}

fn reap(root: &Path, monitors: &mut HashMap<i32, String>) {
    loop {
        match rustix::process::wait(WaitOptions::NOHANG) {
            Ok(Some((pid, status))) => {
                let pid = pid.as_raw_nonzero().get();
                if let Some(id) = monitors.remove(&pid) {
                    if !(status.exited() && status.exit_status() == Some(0)) {
                        log::warn!("helper: monitor {pid} of {id} ended abnormally: {status:?}");
                        kill_unsupervised(root, &id);
                    }
                } else {
                    log::debug!("helper: reaped orphan {pid}: {status:?}");
                }
            }
            Ok(None) | Err(_) => return,
        }
    }
}

/// A monitor died without deleting its container: nobody supervises it any more (no exit
/// status would be collected, no event sent, its stdio is gone), so it is killed, every
/// process of its cgroup. The init, re-parented to this subreaper, is reaped like any
/// orphan; the container stays `stopped` for the engine's `delete`. (The client does the
/// same when it notices first, and `restore` reports such a container stopped.)
fn kill_unsupervised(root: &Path, id: &str) {
    let st = match berth_linux::state::ContainerState::load(root, id) {
        Ok(st) => st,
        // Never created, or already deleted.
        Err(_) => return,
    };
    if !st.init_alive() && st.cgroup.is_none() {
        return;
    }
    let all = st.cgroup.is_some();
    if let Err(e) = berth_linux::container::kill(root, id, libc::SIGKILL, all) {
        log::warn!("helper: killing {id}, whose monitor died: {e}");
    } else {
        log::warn!("helper: killed {id}: its monitor died");
    }
    // Wait for the init (now our child) a moment, so that it is reaped before this helper
    // could exit for want of monitors.
    if let Ok(fd) =
        rustix::process::pidfd_open(Pid::from_raw(st.pid).unwrap_or(Pid::INIT), rustix::process::PidfdFlags::empty())
    {
        if st.init_alive() {
            let mut fds = [PollFd::new(&fd, PollFlags::IN)];
            let _ = poll(&mut fds, Some(&Timespec { tv_sec: 5, tv_nsec: 0 }));
        }
        let _ = rustix::process::waitpid(Pid::from_raw(st.pid), WaitOptions::NOHANG);
    }
}
