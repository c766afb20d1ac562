//! One container's monitor: a single-threaded process forked by the helper.
//!
//! The monitor is the parent (and subreaper) of the container's init and of every exec
//! process, so it is the only place where their exits are observed. It is also where every
//! event of the container is produced, by one loop, which is what makes the ordering
//! guarantees hold by construction rather than by locking:
//!
//! * `create`, `start`, `exec-added`/`exec-started`, `paused`/`resumed` are emitted by the
//!   request that caused them, before the answer; exits are observed only when the loop reaps,
//!   which happens between requests. So no exit can precede its start.
//! * An exec's events wait for `Commit` (sent once the engine attached its stdio); an exit
//!   reaped before that is held back until the commit. A failed attach aborts: the process is
//!   killed and nothing is published (the upstream bug of a process left running after a
//!   failed attach cannot happen).
//! * When the init exits, the remaining execs are killed (they die with the pid namespace when
//!   the container has one; otherwise the monitor kills the cgroup, like containerd's runc
//!   shim) and the init's exit is emitted only after every exec's exit.
//!
//! Events and answers go to the connected client; while no client is connected (the engine
//! crashed) events are held and delivered, in order, to the next client after it attached
//! (`Attach` + `Flush`). The init's exit is kept until the engine acknowledges it with
//! `DeleteTask` or `Delete`, and is re-sent on every restore until then.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use berth_core::{Error, ErrorKind, EventType, Result, Status};
use berth_linux::container::{self, CreateOptions, LaunchMode, Launched};
use berth_linux::exec::{self, ExecOptions};
use berth_linux::init::Stdio;
use berth_sys::signal::{self as sig, SigSet};
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::net::SocketFlags;
use rustix::pipe::{pipe_with, PipeFlags};
use rustix::process::{Pid, Signal, WaitOptions};

use crate::wire::{self, Body, Envelope, ExitInfo, Msg, Request, StdioFlags, WireEvent};

/// File name of the monitor's socket inside the container's state directory.
pub(crate) const SOCK: &str = "monitor.sock";

/// How long the monitor waits for a SIGKILLed process to die before giving up on it.
const KILL_WAIT_MS: i64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No container yet (waiting for `Create`).
    Empty,
    Created,
    Running,
    Paused,
    Stopped,
}

struct Proc {
    pid: i32,
    pidfd: OwnedFd,
    /// The monitor's copies. For the init: stdin's write end and the read ends, kept so a
    /// restored engine can reattach. For execs: only a terminal master (for resize).
    stdin: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    master: Option<OwnedFd>,
    exit: Option<ExitInfo>,
}

struct Exec {
    id: String,
    proc: Proc,
    committed: bool,
    /// Killed after a failed attach or a lost client; reaped silently.
    aborted: bool,
}

struct Out {
    data: Vec<u8>,
    fds: Vec<OwnedFd>,
    /// Set for events, so they can be held again if the connection dies before sending.
    event: Option<WireEvent>,
}

struct Peer {
    fd: OwnedFd,
    /// False between `Attach` and `Flush` on a restore connection: events are held.
    ready: bool,
    out: VecDeque<Out>,
    broken: bool,
}

impl Peer {
    fn push(&mut self, out: Out) {
        if self.broken {
            return;
        }
        if self.out.is_empty() {
            let fds: Vec<BorrowedFd<'_>> = out.fds.iter().map(|f| f.as_fd()).collect();
            match wire::send(self.fd.as_fd(), &out.data, &fds, true) {
                Ok(()) => return,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    log::info!("client connection lost: {e}");
                    self.broken = true;
                    self.out.push_back(out);
                    return;
                }
            }
        }
        self.out.push_back(out);
    }

    fn flush(&mut self) {
        while let Some(o) = self.out.front() {
            let fds: Vec<BorrowedFd<'_>> = o.fds.iter().map(|f| f.as_fd()).collect();
            match wire::send(self.fd.as_fd(), &o.data, &fds, true) {
                Ok(()) => {
                    self.out.pop_front();
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.broken = true;
                    return;
                }
            }
        }
    }

    /// Blocks (bounded) until everything queued is sent: used before the monitor exits.
    fn flush_blocking(&mut self) {
        for _ in 0..100 {
            self.flush();
            if self.out.is_empty() || self.broken {
                return;
            }
            let mut fds = [PollFd::new(&self.fd, PollFlags::OUT)];
            let _ = poll(&mut fds, Some(&Timespec { tv_sec: 0, tv_nsec: 50_000_000 }));
        }
    }
}

struct Monitor<'a> {
    root: &'a Path,
    id: &'a str,
    peer: Option<Peer>,
    listener: Option<OwnedFd>,
    sigfd: OwnedFd,
    phase: Phase,
    init: Option<Proc>,
    started: bool,
    init_exit_event: Option<WireEvent>,
    exit_acked: bool,
    execs: Vec<Exec>,
    cgroup: Option<berth_cgroups::Cgroup>,
    /// The container's state as launch saved it: start and delete need not read it back.
    state: Option<Box<berth_linux::state::ContainerState>>,
    own_pidns: bool,
    oom: Option<berth_cgroups::OomWatcher>,
    oom_killed: bool,
    /// Events produced while no ready client was connected.
    held: VecDeque<WireEvent>,
    done: bool,
    /// Memory was given back since the last activity (see `serve`).
    trimmed: bool,
}

/// Runs the monitor for container `id`, first serving `conn` (which must send `Create`).
/// Returns the process exit code.
pub(crate) fn run(root: &Path, id: &str, conn: OwnedFd) -> i32 {
    // A session of its own: no terminal signals from the engine's terminal, and no process
    // group shared with the helper. Subreaper: processes orphaned inside a container that
    // shares the host pid namespace are reparented here and reaped.
    let _ = rustix::process::setsid();
    // `ps` tells monitors apart by name (the command line is the helper's): "bm:" + the id,
    // truncated by the kernel to 15 bytes.
    if let Ok(name) = std::ffi::CString::new(format!("bm:{id}")) {
        let _ = rustix::thread::set_name(&name);
    }
    if let Err(e) = rustix::process::set_child_subreaper(Some(Pid::INIT)) {
        log::warn!("monitor {id}: cannot become a subreaper: {e}");
    }
    let mut set = SigSet::empty();
    let sigfd = match set.add(libc::SIGCHLD).and_then(|()| sig::set_mask(&set)).and_then(|_| sig::signalfd(&set)) {
        Ok(fd) => fd,
        Err(e) => {
            log::error!("monitor {id}: signalfd: {e}");
            let msg = Msg::Err { id: 0, kind: "system".into(), message: format!("monitor: signalfd: {e}") };
            let _ = wire::send_json(conn.as_fd(), &msg, &[], false);
            return 1;
        }
    };
    let mut m = Monitor {
        root,
        id,
        peer: Some(Peer { fd: conn, ready: true, out: VecDeque::new(), broken: false }),
        listener: None,
        sigfd,
        phase: Phase::Empty,
        init: None,
        started: false,
        init_exit_event: None,
        exit_acked: false,
        execs: Vec::new(),
        cgroup: None,
        state: None,
        own_pidns: false,
        oom: None,
        oom_killed: false,
        held: VecDeque::new(),
        done: false,
        trimmed: false,
    };
    m.serve();
    if let Some(p) = m.peer.as_mut() {
        p.flush_blocking();
    }
    0
}

/// Runs `f` with logging off. The processes `berth-linux` clones inherit this process's
/// logger, and after they installed the container's stdio their log lines would land in the
/// container's stderr; errors reach us as return values anyway.
fn quiet<T>(f: impl FnOnce() -> T) -> T {
    let level = log::max_level();
    log::set_max_level(log::LevelFilter::Off);
    let r = f();
    log::set_max_level(level);
    r
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

fn errno(what: impl std::fmt::Display, e: impl Into<std::io::Error>) -> Error {
    Error::wrap_system(what.to_string(), e.into())
}

/// Maps a runtime error to an API error class.
fn linux_err(what: &str, e: berth_linux::Error) -> Error {
    use berth_linux::Error as L;
    let kind = match &e {
        L::Invalid(_) => ErrorKind::InvalidParameter,
        L::NotFound(_) => ErrorKind::NotFound,
        L::Exists(_) => ErrorKind::Conflict,
        L::WrongState(_) => ErrorKind::Conflict,
        // A missing or non-executable executable is reported by the container's init (Go's
        // exec.LookPath words, as runc's); the engine should see a bad request, as moby
        // does, not a system failure.
        L::Init(m)
            if m.contains("exec: \"")
                && ["executable file not found", "no such file or directory", "permission denied"]
                    .iter()
                    .any(|w| m.contains(w)) =>
        {
            ErrorKind::InvalidParameter
        }
        L::Io { .. } | L::Init(_) | L::Cgroup(_) => ErrorKind::System,
    };
    Error::new(kind, format!("{what}: {e}"))
}

fn exit_code(status: rustix::process::WaitStatus) -> u32 {
    match (status.exit_status(), status.terminating_signal()) {
        (Some(c), _) => c as u32,
        (None, Some(s)) => 128 + s as u32,
        _ => u32::MAX,
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    pipe_with(PipeFlags::CLOEXEC).map_err(|e| errno("creating a pipe", e))
}

/// How long a monitor stays idle before giving memory back.
const IDLE_TRIM_MS: i64 = 500;

fn kill(p: &Proc) {
    if p.exit.is_none() {
        let _ = rustix::process::pidfd_send_signal(&p.pidfd, Signal::KILL);
    }
}

/// Waits until the process behind `pidfd` has exited (it stays a zombie for `reap`).
fn wait_dead(pidfd: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    let ts = Timespec { tv_sec: KILL_WAIT_MS / 1000, tv_nsec: 0 };
    loop {
        match poll(&mut fds, Some(&ts)) {
            Ok(n) => return n > 0,
            Err(Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
}

impl Monitor<'_> {
    fn serve(&mut self) {
        while !self.done {
            let (sig_ready, oom_ready, listen_ready, peer_in, peer_out) = {
                let mut fds = Vec::with_capacity(4);
                fds.push(PollFd::new(&self.sigfd, PollFlags::IN));
                let oom_at = self.oom.as_ref().map(|o| {
                    fds.push(PollFd::from_borrowed_fd(o.as_fd(), PollFlags::IN));
                    fds.len() - 1
                });
                let listen_at = self.listener.as_ref().map(|l| {
                    fds.push(PollFd::new(l, PollFlags::IN));
                    fds.len() - 1
                });
                let peer_at = self.peer.as_ref().map(|p| {
                    let mut f = PollFlags::IN;
                    if !p.out.is_empty() {
                        f |= PollFlags::OUT;
                    }
                    fds.push(PollFd::new(&p.fd, f));
                    fds.len() - 1
                });
                if self.peer.is_none() && self.listener.is_none() && self.phase == Phase::Empty {
                    return;
                }
                // A monitor spends its life idle, one per container, so its memory is what
                // density costs: after IDLE_TRIM_MS without activity it gives back free heap,
                // the dirty stack of container creation and its mappings of clean code
                // pages (they fault back in from the page cache when needed), then sleeps.
                let ts = Timespec { tv_sec: 0, tv_nsec: IDLE_TRIM_MS * 1_000_000 };
                match poll(&mut fds, if self.trimmed { None } else { Some(&ts) }) {
                    Ok(0) if !self.trimmed => {
                        self.trimmed = true;
                        let _ = berth_sys::mem::trim_heap();
                        let _ = berth_sys::mem::release_unused_stack();
                        let _ = berth_sys::mem::release_clean_image_pages();
                        continue;
                    }
                    Ok(_) | Err(Errno::INTR) => self.trimmed = false,
                    Err(e) => {
                        log::error!("monitor {}: poll: {e}", self.id);
                        return;
                    }
                }
                let rev = |i: Option<usize>| i.and_then(|i| fds.get(i)).map_or(PollFlags::empty(), |f| f.revents());
                let peer_rev = rev(peer_at);
                (
                    !rev(Some(0)).is_empty(),
                    !rev(oom_at).is_empty(),
                    !rev(listen_at).is_empty(),
                    peer_rev.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR),
                    peer_rev.contains(PollFlags::OUT),
                )
            };
            if sig_ready {
                super::zygote::drain_signalfd(Some(&self.sigfd));
                self.reap();
            }
            if oom_ready {
                self.check_oom();
            }
            if peer_out {
                if let Some(p) = self.peer.as_mut() {
                    p.flush();
                }
            }
            if peer_in {
                self.read_requests();
            }
            if listen_ready {
                self.accept();
            }
            if self.peer.as_ref().is_some_and(|p| p.broken) {
                self.disconnect();
            }
            if self.peer.is_none() && self.phase == Phase::Empty {
                // The creating client went away before (or while failing to) create.
                return;
            }
        }
    }

    fn read_requests(&mut self) {
        loop {
            let Some(p) = self.peer.as_ref() else { return };
            match wire::recv_packet(p.fd.as_fd(), true) {
                Ok(Some((data, fds))) => self.handle(&data, fds),
                Ok(None) => {
                    self.disconnect();
                    return;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    log::info!("monitor {}: client connection: {e}", self.id);
                    self.disconnect();
                    return;
                }
            }
            if self.done {
                return;
            }
        }
    }

    fn accept(&mut self) {
        let Some(l) = self.listener.as_ref() else { return };
        let Ok(fd) = rustix::net::accept_with(l, SocketFlags::CLOEXEC) else { return };
        // One client at a time: a new connection (a restarted engine) replaces the old one.
        if let Some(p) = self.peer.as_mut() {
            log::info!("monitor {}: a new client replaces the current one", self.id);
            p.flush();
            if let Ok(data) = serde_json::to_vec(&Msg::Replaced) {
                let _ = wire::send(p.fd.as_fd(), &data, &[], true);
            }
            self.disconnect();
        }
        self.peer = Some(Peer { fd, ready: false, out: VecDeque::new(), broken: false });
    }

    fn disconnect(&mut self) {
        let Some(p) = self.peer.take() else { return };
        // Events that never left keep their place in front of anything held later.
        let mut held: VecDeque<WireEvent> = p.out.into_iter().filter_map(|o| o.event).collect();
        held.append(&mut self.held);
        self.held = held;
        // Execs whose stdio was never confirmed attached have no owner any more.
        for e in self.execs.iter_mut().filter(|e| !e.committed && !e.aborted) {
            kill(&e.proc);
            e.aborted = true;
        }
        self.execs.retain(|e| !(e.aborted && e.proc.exit.is_some()));
        self.finish_init();
    }

    fn send(&mut self, msg: &Msg, fds: Vec<OwnedFd>, event: Option<WireEvent>) {
        let Some(p) = self.peer.as_mut() else {
            if let Some(ev) = event {
                self.held.push_back(ev);
            }
            return;
        };
        match serde_json::to_vec(msg) {
            Ok(data) => p.push(Out { data, fds, event }),
            Err(e) => log::error!("monitor {}: encoding a message: {e}", self.id),
        }
    }

    fn emit(&mut self, mut ev: WireEvent) {
        ev.oom_killed |= self.oom_killed;
        if self.peer.as_ref().is_some_and(|p| p.ready && !p.broken) {
            let msg = Msg::Event { event: ev.clone() };
            self.send(&msg, Vec::new(), Some(ev));
        } else if !(ev.kind == EventType::Oom && self.held.back().is_some_and(|h| h.kind == EventType::Oom)) {
            // Held for the next client. Repeated OOMs collapse into one, so what is held is
            // bounded by the number of processes.
            self.held.push_back(ev);
        }
    }

    fn event(&self, kind: EventType, process_id: &str, pid: i32) -> WireEvent {
        WireEvent {
            kind,
            process_id: process_id.to_string(),
            pid: pid.max(0) as u32,
            exit: None,
            oom_killed: self.oom_killed,
            error: None,
        }
    }

    fn handle(&mut self, data: &[u8], fds: Vec<OwnedFd>) {
        let env: Envelope = match serde_json::from_slice(data) {
            Ok(e) => e,
            Err(e) => {
                log::warn!("monitor {}: undecodable request: {e}", self.id);
                let msg = Msg::Err { id: 0, kind: "invalid-parameter".into(), message: format!("bad request: {e}") };
                self.send(&msg, Vec::new(), None);
                return;
            }
        };
        // Exits that already happened are observed before the request runs, so e.g. an exec
        // racing with the init's death is refused rather than started into a dead container.
        self.reap();
        let id = env.id;
        let outcome = catch_unwind(AssertUnwindSafe(|| self.dispatch(env.req, fds)));
        let result = match outcome {
            Ok(r) => r,
            Err(_) => Err(Error::system("monitor: internal error while handling the request")),
        };
        if id == 0 {
            if let Err(e) = result {
                log::debug!("monitor {}: {e}", self.id);
            }
            return;
        }
        match result {
            Ok((body, fds)) => self.send(&Msg::Ok { id, body }, fds, None),
            Err(e) => {
                let msg = Msg::Err { id, kind: e.kind().as_str().into(), message: e.to_string() };
                self.send(&msg, Vec::new(), None)
            }
        }
    }

    fn dispatch(&mut self, req: Request, fds: Vec<OwnedFd>) -> Result<(Body, Vec<OwnedFd>)> {
        if self.phase == Phase::Empty && !matches!(req, Request::Create { .. }) {
            return Err(Error::not_found(format!("container {}: not created", self.id)));
        }
        let none = |b: Body| Ok((b, Vec::new()));
        match req {
            Request::Create { spec, bundle, no_pivot } => self.create(spec, fds, bundle, no_pivot),
            Request::InitStdio { with_stdin } => self.init_stdio(with_stdin),
            Request::Start { with_stdin } => none(self.start(with_stdin)?),
            Request::Exec { exec_id, process, with_stdin } => self.exec(exec_id, *process, with_stdin),
            Request::Commit { exec_id } => none(self.commit(&exec_id)?),
            Request::Abort { exec_id } => none(self.abort(&exec_id)?),
            Request::Signal { process_id, signal } => none(self.signal(&process_id, signal)?),
            Request::Resize { process_id, width, height } => none(self.resize(&process_id, width, height)?),
            Request::CloseStdin { process_id } => none(self.close_stdin(&process_id)?),
            Request::Pause => none(self.pause()?),
            Request::Resume => none(self.resume()?),
            Request::DeleteTask => none(self.delete_task()?),
            Request::Delete => none(self.delete()?),
            Request::Attach => self.attach(),
            Request::Flush => none(self.flush_held()),
        }
    }

    fn create(
        &mut self,
        spec: Option<Box<serde_json::value::RawValue>>,
        fds: Vec<OwnedFd>,
        bundle: PathBuf,
        no_pivot: bool,
    ) -> Result<(Body, Vec<OwnedFd>)> {
        if self.phase != Phase::Empty {
            return Err(Error::conflict(format!("container {}: already created", self.id)));
        }
        // Whatever happens next, this monitor serves one create only.
        let result = self.create_inner(spec, fds, bundle, no_pivot);
        if result.is_err() {
            self.done = true;
        }
        result
    }

    fn create_inner(
        &mut self,
        spec: Option<Box<serde_json::value::RawValue>>,
        fds: Vec<OwnedFd>,
        bundle: PathBuf,
        no_pivot: bool,
    ) -> Result<(Body, Vec<OwnedFd>)> {
        let spec: Spec = match spec {
            Some(raw) => {
                serde_json::from_str(raw.get()).map_err(|e| Error::invalid_parameter(format!("create: spec: {e}")))?
            }
            None => {
                let fd = fds.first().ok_or_else(|| Error::invalid_parameter("create: no spec given"))?;
                let data = wire::read_memfd(fd).map_err(|e| errno("create: reading the spec", e))?;
                serde_json::from_slice(&data).map_err(|e| Error::invalid_parameter(format!("create: spec: {e}")))?
            }
        };
        drop(fds);
        let terminal = spec.process().as_ref().and_then(|p| p.terminal()).unwrap_or(false);
        let linux = spec.linux().as_ref();
        let namespaces = linux.and_then(|l| l.namespaces().as_ref());
        self.own_pidns =
            namespaces.into_iter().flatten().any(|n| n.typ() == LinuxNamespaceType::Pid && n.path().is_none());

        let (mut stdin_w, mut out_r, mut err_r) = (None, None, None);
        let stdio = if terminal {
            None
        } else {
            let (ir, iw) = pipe()?;
            let (or, ow) = pipe()?;
            let (er, ew) = pipe()?;
            stdin_w = Some(iw);
            out_r = Some(or);
            err_r = Some(er);
            Some(Stdio { stdin: Some(ir), stdout: Some(ow), stderr: Some(ew) })
        };
        let opts = CreateOptions {
            root: self.root.to_path_buf(),
            id: self.id.to_string(),
            bundle,
            no_pivot,
            spec: Some(spec),
            stdio,
            keep_master: true,
            ..Default::default()
        };
        let launched = quiet(|| container::launch(&opts, LaunchMode::Create));
        // The container's ends of the pipes now live in the init only.
        drop(opts);
        let (pid, pidfd, master, state) = match launched.map_err(|e| linux_err("create", e))? {
            Launched::Created { pid, pidfd, master, state } => (pid, pidfd, master, state),
            _ => return Err(Error::system("create: unexpected launch result")),
        };
        self.init = Some(Proc { pid, pidfd, stdin: stdin_w, stdout: out_r, stderr: err_r, master, exit: None });
        self.phase = Phase::Created;
        // The cgroup launch made (none for a rootless container without cgroup access).
        if let Some(cg) = state.cgroup.clone() {
            match cg.oom_watcher() {
                Ok(w) => self.oom = Some(w),
                Err(e) => log::info!("monitor {}: no OOM notifications: {e}", self.id),
            }
            self.cgroup = Some(cg);
        }
        self.state = Some(state);
        let dir = berth_linux::state::dir(self.root, self.id);
        match super::zygote::listen_at(&dir, SOCK) {
            Ok(l) => self.listener = Some(l),
            Err(e) => log::warn!("monitor {}: no restore socket (the container cannot be restored): {e}", self.id),
        }
        let ev = self.event(EventType::Create, self.id, pid);
        self.emit(ev);
        Ok((
            Body {
                pid: Some(pid as u32),
                monitor_pid: Some(std::process::id()),
                cgroup: self.cgroup.clone(),
                ..Default::default()
            },
            Vec::new(),
        ))
    }

    fn check_startable(&self) -> Result<()> {
        match self.phase {
            Phase::Created => Ok(()),
            Phase::Running | Phase::Paused => {
                Err(Error::not_modified(format!("container {} is already started", self.id)))
            }
            Phase::Stopped => Err(Error::conflict(format!("container {} has stopped; it cannot be started", self.id))),
            Phase::Empty => Err(Error::not_found(format!("container {}: not created", self.id))),
        }
    }

    fn init_stdio(&mut self, with_stdin: bool) -> Result<(Body, Vec<OwnedFd>)> {
        self.check_startable()?;
        let init = self.init.as_ref().ok_or_else(|| Error::not_found("no init process"))?;
        let (flags, fds) = stdio_dups(init, with_stdin)?;
        Ok((Body { stdio: Some(flags), ..Default::default() }, fds))
    }

    fn start(&mut self, with_stdin: bool) -> Result<Body> {
        self.check_startable()?;
        if !with_stdin {
            if let Some(init) = self.init.as_mut() {
                // Nobody will write: the process reads EOF at once.
                init.stdin = None;
            }
        }
        let started = match &self.state {
            Some(st) => container::start_created(self.root, st),
            None => container::start(self.root, self.id),
        };
        if let Err(e) = started {
            // A failing poststart hook stopped the container (its init is dead by now): reap
            // it before answering, so the phase the client asks for next says so.
            self.reap();
            return Err(linux_err("start", e));
        }
        self.phase = Phase::Running;
        self.started = true;
        let pid = self.init.as_ref().map_or(0, |p| p.pid);
        let ev = self.event(EventType::Start, self.id, pid);
        self.emit(ev);
        Ok(Body { pid: Some(pid as u32), ..Default::default() })
    }

    fn init_gone(&self) -> bool {
        self.init.as_ref().is_none_or(|p| p.exit.is_some())
    }

    fn exec(&mut self, exec_id: String, process: Process, with_stdin: bool) -> Result<(Body, Vec<OwnedFd>)> {
        if self.init_gone() || self.phase == Phase::Stopped {
            return Err(Error::not_found(format!("container {}: the init process is not running", self.id)));
        }
        if self.phase == Phase::Paused {
            return Err(Error::conflict(format!("container {} is paused", self.id)));
        }
        if exec_id == self.id || exec_id == berth_core::INIT_PROCESS_NAME {
            return Err(Error::invalid_parameter(format!("exec id {exec_id:?} names the init process")));
        }
        berth_core::state::validate_id(&exec_id).map_err(|e| {
            Error::invalid_parameter(e.replace("container id", "exec id").replace("container ID", "exec ID"))
        })?;
        if self.execs.iter().any(|e| e.id == exec_id && !e.aborted) {
            return Err(Error::conflict(format!("exec id {exec_id:?} is already in use in container {}", self.id)));
        }
        let terminal = process.terminal().unwrap_or(false);
        let mut give = Vec::new();
        let mut flags = StdioFlags { terminal, ..Default::default() };
        let stdio = if terminal {
            None
        } else {
            let stdin = if with_stdin {
                let (r, w) = pipe()?;
                give.push(w);
                flags.stdin = true;
                r
            } else {
                rustix::fs::open("/dev/null", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
                    .map_err(|e| errno("opening /dev/null", e))?
            };
            let (or, ow) = pipe()?;
            let (er, ew) = pipe()?;
            give.push(or);
            give.push(er);
            flags.stdout = true;
            flags.stderr = true;
            Some(Stdio { stdin: Some(stdin), stdout: Some(ow), stderr: Some(ew) })
        };
        let opts = ExecOptions {
            root: self.root.to_path_buf(),
            id: self.id.to_string(),
            process: Some(process),
            stdio,
            ..Default::default()
        };
        let spawned = quiet(|| exec::spawn(&opts));
        drop(opts);
        let sp = spawned.map_err(|e| match e {
            berth_linux::Error::WrongState(m) => Error::not_found(format!("exec: {m}")),
            e => linux_err("exec", e),
        })?;
        if let Some(m) = &sp.master {
            give.push(wire::dup(m).map_err(|e| errno("duplicating the PTY master", e))?);
            flags.stdout = true;
            flags.stdin = with_stdin;
        }
        self.execs.push(Exec {
            id: exec_id,
            proc: Proc {
                pid: sp.pid,
                pidfd: sp.pidfd,
                stdin: None,
                stdout: None,
                stderr: None,
                master: sp.master,
                exit: None,
            },
            committed: false,
            aborted: false,
        });
        Ok((Body { pid: Some(sp.pid as u32), stdio: Some(flags), ..Default::default() }, give))
    }

    fn find_exec(&mut self, exec_id: &str) -> Result<usize> {
        self.execs
            .iter()
            .position(|e| e.id == exec_id && !e.aborted)
            .ok_or_else(|| Error::not_found(format!("container {}: no such exec {exec_id:?}", self.id)))
    }

    fn commit(&mut self, exec_id: &str) -> Result<Body> {
        let i = self.find_exec(exec_id)?;
        let (pid, exit) = match self.execs.get_mut(i) {
            Some(e) if !e.committed => {
                e.committed = true;
                (e.proc.pid, e.proc.exit)
            }
            _ => return Err(Error::conflict(format!("exec {exec_id:?} is already committed"))),
        };
        let added = self.event(EventType::ExecAdded, exec_id, 0);
        self.emit(added);
        let started = self.event(EventType::ExecStarted, exec_id, pid);
        self.emit(started);
        if let Some(x) = exit {
            // It exited before the engine had attached: its exit follows its start now.
            self.execs.remove(i);
            self.emit_exit(exec_id, pid, x);
            self.finish_init();
        }
        Ok(Body { pid: Some(pid as u32), ..Default::default() })
    }

    fn abort(&mut self, exec_id: &str) -> Result<Body> {
        let i = self.find_exec(exec_id)?;
        if let Some(e) = self.execs.get_mut(i) {
            if e.committed {
                return Err(Error::conflict(format!("exec {exec_id:?} is already committed")));
            }
            kill(&e.proc);
            e.aborted = true;
        }
        self.execs.retain(|e| !(e.aborted && e.proc.exit.is_some()));
        self.finish_init();
        Ok(Body::default())
    }

    fn is_init(&self, process_id: &str) -> bool {
        process_id == self.id || process_id == berth_core::INIT_PROCESS_NAME
    }

    fn proc_for(&self, process_id: &str) -> Result<&Proc> {
        let p = if self.is_init(process_id) {
            self.init.as_ref()
        } else {
            self.execs.iter().find(|e| e.id == process_id && !e.aborted).map(|e| &e.proc)
        };
        let p = p.ok_or_else(|| Error::not_found(format!("container {}: no such process {process_id:?}", self.id)))?;
        if p.exit.is_some() {
            return Err(Error::not_found(format!("container {}: process {process_id:?} has already exited", self.id)));
        }
        Ok(p)
    }

    fn signal(&mut self, process_id: &str, signal: i32) -> Result<Body> {
        let sig = (1..=64)
            .contains(&signal)
            .then(|| Signal::from_named_raw(signal))
            .flatten()
            .ok_or_else(|| Error::invalid_parameter(format!("signal {signal}: not a valid signal number")))?;
        let p = self.proc_for(process_id)?;
        rustix::process::pidfd_send_signal(&p.pidfd, sig)
            .map_err(|e| errno(format!("signalling process {process_id:?}"), e))?;
        if signal == libc::SIGKILL && self.phase == Phase::Paused && self.is_init(process_id) {
            // A frozen process cannot act on SIGKILL until thawed.
            if let Some(cg) = &self.cgroup {
                let _ = cg.thaw();
            }
        }
        Ok(Body::default())
    }

    fn resize(&mut self, process_id: &str, width: u16, height: u16) -> Result<Body> {
        let p = self.proc_for(process_id)?;
        let m = p
            .master
            .as_ref()
            .ok_or_else(|| Error::invalid_parameter(format!("process {process_id:?} has no terminal")))?;
        let ws = rustix::termios::Winsize { ws_row: height, ws_col: width, ws_xpixel: 0, ws_ypixel: 0 };
        rustix::termios::tcsetwinsize(m, ws).map_err(|e| errno("resizing the terminal", e))?;
        Ok(Body::default())
    }

    fn close_stdin(&mut self, process_id: &str) -> Result<Body> {
        self.proc_for(process_id)?;
        let p = if self.is_init(process_id) {
            self.init.as_mut()
        } else {
            self.execs.iter_mut().find(|e| e.id == process_id && !e.aborted).map(|e| &mut e.proc)
        };
        if let Some(p) = p {
            if let Some(m) = &p.master {
                // A terminal has no "other end" to close: EOT makes a canonical-mode reader
                // see end of file, which is what closing stdin means for a terminal.
                let _ = rustix::io::write(m, b"\x04");
            }
            p.stdin = None;
        }
        Ok(Body::default())
    }

    fn cgroup(&self) -> Result<&berth_cgroups::Cgroup> {
        self.cgroup.as_ref().ok_or_else(|| Error::system(format!("container {} has no cgroup", self.id)))
    }

    fn pause(&mut self) -> Result<Body> {
        match self.phase {
            Phase::Running => {}
            Phase::Paused => return Err(Error::conflict(format!("container {} is already paused", self.id))),
            _ => return Err(Error::conflict(format!("container {} is not running", self.id))),
        }
        self.cgroup()?.freeze().map_err(|e| errno("pause", std::io::Error::other(e.to_string())))?;
        self.phase = Phase::Paused;
        let ev = self.event(EventType::Paused, self.id, self.init.as_ref().map_or(0, |p| p.pid));
        self.emit(ev);
        Ok(Body::default())
    }

    fn resume(&mut self) -> Result<Body> {
        if self.phase != Phase::Paused {
            return Err(Error::conflict(format!("container {} is not paused", self.id)));
        }
        self.cgroup()?.thaw().map_err(|e| errno("resume", std::io::Error::other(e.to_string())))?;
        self.phase = Phase::Running;
        let ev = self.event(EventType::Resumed, self.id, self.init.as_ref().map_or(0, |p| p.pid));
        self.emit(ev);
        Ok(Body::default())
    }

    /// The init's exit as the engine may see it: once its exit event is out (or, for an init
    /// that was never started, once it died; such an init has no start, hence no exit event).
    fn visible_exit(&self) -> Option<ExitInfo> {
        let x = self.init.as_ref()?.exit?;
        (self.init_exit_event.is_some() || !self.started).then_some(x)
    }

    fn delete_task(&mut self) -> Result<Body> {
        let x = self.visible_exit().ok_or_else(|| Error::conflict(format!("container {} is not stopped", self.id)))?;
        self.exit_acked = true;
        Ok(Body { exit: Some(x), pid: self.init.as_ref().map(|p| p.pid as u32), ..Default::default() })
    }

    fn delete(&mut self) -> Result<Body> {
        match self.phase {
            Phase::Running | Phase::Paused => {
                return Err(Error::conflict(format!("container {} is running: stop it before deleting it", self.id)))
            }
            Phase::Created | Phase::Stopped | Phase::Empty => {}
        }
        // A created container is torn down: its init (waiting for start) and any exec die.
        let mut waits = Vec::new();
        if let Some(init) = &self.init {
            kill(init);
            if init.exit.is_none() {
                waits.push(init.pid);
            }
        }
        for e in &self.execs {
            kill(&e.proc);
        }
        if let Some(init) = &self.init {
            if init.exit.is_none() && !wait_dead(&init.pidfd) {
                return Err(Error::system(format!("container {}: the init did not die after SIGKILL", self.id)));
            }
        }
        for e in &self.execs {
            if e.proc.exit.is_none() && !wait_dead(&e.proc.pidfd) {
                return Err(Error::system(format!("container {}: exec {} did not die after SIGKILL", self.id, e.id)));
            }
        }
        self.reap();
        let st = match self.state.take() {
            Some(st) => st,
            None => Box::new(
                berth_linux::state::ContainerState::load(self.root, self.id).map_err(|e| linux_err("delete", e))?,
            ),
        };
        if let Err(e) = container::destroy(self.root, &st) {
            self.state = Some(st);
            return Err(linux_err("delete", e));
        }
        self.listener = None;
        self.oom = None;
        self.exit_acked = true;
        // Processes of a container sharing the host pid namespace were killed by destroy and
        // reparented here; reap what is already gone (the helper reaps the rest).
        self.reap();
        self.done = true;
        Ok(Body::default())
    }

    fn attach(&mut self) -> Result<(Body, Vec<OwnedFd>)> {
        let status = match self.phase {
            Phase::Created => Status::Created,
            Phase::Running => Status::Running,
            Phase::Paused => Status::Paused,
            Phase::Stopped => Status::Stopped,
            Phase::Empty => Status::Unknown,
        };
        let init = self.init.as_ref().ok_or_else(|| Error::not_found("no init process"))?;
        let mut body = Body {
            pid: Some(init.pid as u32),
            monitor_pid: Some(std::process::id()),
            cgroup: self.cgroup.clone(),
            status: Some(status),
            exit: self.visible_exit(),
            started: self.started,
            ..Default::default()
        };
        let mut fds = Vec::new();
        if matches!(self.phase, Phase::Running | Phase::Paused) {
            let with_stdin = init.stdin.is_some() || init.master.is_some();
            let (flags, f) = stdio_dups(init, with_stdin)?;
            body.stdio = Some(flags);
            fds = f;
        }
        Ok((body, fds))
    }

    fn flush_held(&mut self) -> Body {
        if let Some(p) = self.peer.as_mut() {
            p.ready = true;
        }
        let mut held = std::mem::take(&mut self.held);
        if let (Some(ev), false) = (&self.init_exit_event, self.exit_acked) {
            if !held.iter().any(|h| h == ev) {
                held.push_back(ev.clone());
            }
        }
        for ev in held {
            self.send(&Msg::Event { event: ev.clone() }, Vec::new(), Some(ev));
        }
        Body::default()
    }

    fn emit_exit(&mut self, process_id: &str, pid: i32, x: ExitInfo) {
        let mut ev = self.event(EventType::Exit, process_id, pid);
        ev.exit = Some(x);
        self.emit(ev);
    }

    fn reap(&mut self) {
        while let Ok(Some((pid, status))) = rustix::process::wait(WaitOptions::NOHANG) {
            self.on_exit(pid.as_raw_nonzero().get(), status);
        }
    }

    fn on_exit(&mut self, pid: i32, status: rustix::process::WaitStatus) {
        let x = ExitInfo { code: exit_code(status), at_ns: now_ns() };
        if let Some(init) = self.init.as_mut().filter(|p| p.pid == pid && p.exit.is_none()) {
            init.exit = Some(x);
            // Nothing can be attached to a dead init; the engine holds its own copies.
            init.stdin = None;
            init.stdout = None;
            init.stderr = None;
            init.master = None;
            let was_paused = self.phase == Phase::Paused;
            self.phase = Phase::Stopped;
            if !self.own_pidns {
                // Without a pid namespace nothing takes the other processes down with the
                // init: kill the cgroup (containerd's runc shim does the same).
                if let Some(cg) = &self.cgroup {
                    if let Err(e) = cg.signal_all(libc::SIGKILL) {
                        log::warn!("monitor {}: killing the remaining processes: {e}", self.id);
                    }
                }
            }
            for e in &self.execs {
                kill(&e.proc);
            }
            if was_paused {
                if let Some(cg) = &self.cgroup {
                    let _ = cg.thaw();
                }
            }
            self.finish_init();
            return;
        }
        let Some(i) = self.execs.iter().position(|e| e.proc.pid == pid && e.proc.exit.is_none()) else {
            log::debug!("monitor {}: reaped orphan {pid}", self.id);
            return;
        };
        let Some(e) = self.execs.get_mut(i) else { return };
        e.proc.exit = Some(x);
        if e.aborted {
            self.execs.remove(i);
        } else if e.committed {
            let e = self.execs.remove(i);
            self.emit_exit(&e.id, pid, x);
        }
        self.finish_init();
    }

    /// Emits the init's exit once every exec's exit is out.
    fn finish_init(&mut self) {
        let Some((pid, x)) = self.init.as_ref().and_then(|p| p.exit.map(|x| (p.pid, x))) else { return };
        if self.init_exit_event.is_some() || !self.started || self.execs.iter().any(|e| !e.aborted) {
            return;
        }
        let mut ev = self.event(EventType::Exit, self.id, pid);
        ev.exit = Some(x);
        ev.oom_killed |= self.oom_killed;
        self.init_exit_event = Some(ev.clone());
        self.emit(ev);
    }

    fn check_oom(&mut self) {
        let Some(w) = self.oom.as_mut() else { return };
        match w.read_events() {
            Ok(0) => {}
            Ok(_) => {
                self.oom_killed = true;
                let ev = self.event(EventType::Oom, self.id, self.init.as_ref().map_or(0, |p| p.pid));
                self.emit(ev);
            }
            Err(e) => {
                log::debug!("monitor {}: OOM watcher stopped: {e}", self.id);
                self.oom = None;
            }
        }
    }
}

/// Duplicates of a process's stdio for the engine: stdin (if wanted and still open), stdout,
/// stderr; or the terminal master once.
fn stdio_dups(p: &Proc, with_stdin: bool) -> Result<(StdioFlags, Vec<OwnedFd>)> {
    let d = |f: &OwnedFd| wire::dup(f).map_err(|e| errno("duplicating a stdio descriptor", e));
    let mut flags = StdioFlags::default();
    let mut fds = Vec::new();
    if let Some(m) = &p.master {
        flags.terminal = true;
        flags.stdout = true;
        flags.stdin = with_stdin;
        fds.push(d(m)?);
        return Ok((flags, fds));
    }
    if let (true, Some(f)) = (with_stdin, &p.stdin) {
        flags.stdin = true;
        fds.push(d(f)?);
    }
    if let Some(f) = &p.stdout {
        flags.stdout = true;
        fds.push(d(f)?);
    }
    if let Some(f) = &p.stderr {
        flags.stderr = true;
        fds.push(d(f)?);
    }
    Ok((flags, fds))
}
