//! The shim server: one single-threaded process serving containerd's `containerd.task.v2.Task`
//! for a whole group of containers.
//!
//! Everything happens in one `epoll` loop: the ttrpc listener and connections, a signalfd for
//! SIGCHLD (the shim is a child subreaper and the direct parent of every init and exec
//! process, which `berth-linux` clones in-process), the terminal relays, and the OOM
//! notifiers. No threads: that keeps the process small, and it is what lets `berth-linux`
//! clone safely (it refuses to fork a multi-threaded process).
//!
//! Requests that must wait (`Wait`) are parked and answered when the exit is published;
//! ttrpc lets responses come back in any order. Slow operations are bounded: container
//! creation is one clone plus the setup handshake; a delete of a never-started container waits
//! at most 10 s for SIGKILL to take effect.
//!
//! Event order per container follows containerd's runc shim: create → start → exec-added →
//! exec-started → paused/resumed → exit (each exec's exit before the init's) → delete. An exit
//! is published once the process's terminal output has been relayed (or 3 s after the exit),
//! and `Wait` answers at the same moment, so a client that saw the exit has seen the output.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use berth_sys::signal::{self as sig, SigSet};
use containerd_shim_protos::api::{self, Mount};
use containerd_shim_protos::events::task as ev;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::oci::ProcessDetails;
use containerd_shim_protos::topics;
use containerd_shim_protos::types::task::{ProcessInfo, Status};
use oci_spec::runtime::{LinuxNamespaceType, LinuxResources, Process};
use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::io::Errno;
use rustix::process::{Pid, Signal, WaitOptions};

use crate::error::{Error, Result};
use crate::events::{timestamp, to_any, Publisher};
use crate::stdio::{self, ProcIo};
use crate::ttrpc::{self, FrameBuf, RpcError, TYPE_REQUEST};

/// The task service's name.
pub const TASK_SERVICE: &str = "containerd.task.v2.Task";
/// The shim's own service: `Reserve(id)` keeps a grouped shim alive until `id` is created,
/// provisionally until `Confirm(id)` on the same connection; `Owns(id)` answers whether the
/// server manages or expects `id`.
pub const GROUP_SERVICE: &str = "berth.shim.v1.Group";
/// How long a reservation made by `start` keeps an otherwise idle shim alive.
const RESERVATION: Duration = Duration::from_secs(60);
/// How long an exit waits for its terminal output (and, for an init, its execs' exits).
const EXIT_GRACE: Duration = Duration::from_secs(3);
/// How long a shim with no containers, reservations or connections lingers.
const IDLE_EXIT: Duration = Duration::from_secs(10);
/// How long after the last activity the shim gives memory back (see [`Server::trim`]).
const TRIM_DELAY: Duration = Duration::from_millis(500);

const TOKEN_LISTENER: u64 = 0;
const TOKEN_SIGNAL: u64 = 1;
const TOKEN_START: u64 = 2;

/// A reservation of a container id by a `start` action, until containerd's `Create`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reservation {
    until: Instant,
    /// Until the `start` confirms (it printed the address for containerd), the reservation
    /// depends on it: it is dropped if the start dies first.
    pending: Option<Pending>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// The `start` that spawned this server: it confirms on the inherited pipe.
    Founder,
    /// A `start` that reserved on connection (token) N: it confirms there.
    Conn(u64),
}

/// Server configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// containerd namespace.
    pub namespace: String,
    /// containerd's gRPC address (`-address`).
    pub address: String,
    /// `-publish-binary`.
    pub publish_binary: String,
    /// `$TTRPC_ADDRESS`.
    pub ttrpc_address: Option<String>,
    /// berth state root for this namespace.
    pub root: PathBuf,
    /// The listening socket's path (removed on exit).
    pub socket: PathBuf,
}

/// Which descriptor of a process a token stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Master,
    Input,
    Output,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Src {
    Conn,
    Relay(String, String, Side),
    Oom(String),
}

struct Conn {
    stream: UnixStream,
    inbuf: FrameBuf,
    out: Vec<u8>,
}

#[derive(Default)]
struct Proc {
    pid: i32,
    pidfd: Option<OwnedFd>,
    stdin: String,
    stdout: String,
    stderr: String,
    terminal: bool,
    /// An exec's process spec, until it is started.
    spec: Option<Process>,
    io: ProcIo,
    /// Tokens of the relay's master, input and output.
    tokens: [u64; 3],
    started: bool,
    exit: Option<(u32, SystemTime)>,
    exit_seen: Option<Instant>,
    published: bool,
    waiters: Vec<(u64, u32)>,
}

impl Proc {
    fn status(&self, paused: bool) -> Status {
        if self.exit.is_some() {
            Status::STOPPED
        } else if !self.started {
            Status::CREATED
        } else if paused {
            Status::PAUSED
        } else {
            Status::RUNNING
        }
    }

    fn running(&self) -> bool {
        self.started && self.exit.is_none()
    }

    fn relay_done(&self) -> bool {
        self.io.relay.as_ref().is_none_or(|r| r.drained() || r.master.is_none())
    }
}

struct Container {
    id: String,
    bundle: PathBuf,
    rootfs: Option<PathBuf>,
    cgroup: Option<berth_cgroups::Cgroup>,
    /// The state launch saved, so that start does not read it back from disk.
    state: Box<berth_linux::state::ContainerState>,
    oom: Option<(berth_cgroups::OomWatcher, u64)>,
    own_pidns: bool,
    paused: bool,
    init: Proc,
    execs: BTreeMap<String, Proc>,
}

impl Container {
    fn proc(&self, exec_id: &str) -> Result<&Proc> {
        if exec_id.is_empty() {
            return Ok(&self.init);
        }
        self.execs
            .get(exec_id)
            .ok_or_else(|| Error::NotFound(format!("process {exec_id} does not exist in task {}", self.id)))
    }

    fn proc_mut(&mut self, exec_id: &str) -> Result<&mut Proc> {
        if exec_id.is_empty() {
            return Ok(&mut self.init);
        }
        let id = self.id.clone();
        self.execs
            .get_mut(exec_id)
            .ok_or_else(|| Error::NotFound(format!("process {exec_id} does not exist in task {id}")))
    }

    fn cgroup(&self) -> Result<&berth_cgroups::Cgroup> {
        self.cgroup.as_ref().ok_or_else(|| Error::State(format!("task {} has no cgroup", self.id)))
    }
}

/// The epoll set, remembering what is registered so interest can be changed idempotently.
struct Poller {
    ep: OwnedFd,
    reg: HashMap<RawFd, (u64, EventFlags)>,
}

impl Poller {
    fn new() -> Result<Self> {
        let ep = epoll::create(epoll::CreateFlags::CLOEXEC).map_err(|e| Error::io("epoll_create", e))?;
        Ok(Poller { ep, reg: HashMap::new() })
    }

    /// Registers `fd` for `flags` (or removes it when `flags` is empty).
    fn set(&mut self, fd: BorrowedFd<'_>, token: u64, flags: EventFlags) {
        let raw = fd.as_raw_fd();
        let cur = self.reg.get(&raw).copied();
        let r = match (cur, flags.is_empty()) {
            (None, true) => return,
            (Some(_), true) => {
                self.reg.remove(&raw);
                epoll::delete(&self.ep, fd)
            }
            (None, false) => {
                self.reg.insert(raw, (token, flags));
                epoll::add(&self.ep, fd, EventData::new_u64(token), flags)
            }
            (Some(c), false) if c == (token, flags) => return,
            (Some(_), false) => {
                self.reg.insert(raw, (token, flags));
                match epoll::modify(&self.ep, fd, EventData::new_u64(token), flags) {
                    // The descriptor behind this number was closed and the number reused.
                    Err(Errno::NOENT) => epoll::add(&self.ep, fd, EventData::new_u64(token), flags),
                    r => r,
                }
            }
        };
        if let Err(e) = r {
            log::warn!("epoll_ctl on fd {raw}: {e}");
        }
    }

    fn remove(&mut self, fd: BorrowedFd<'_>) {
        self.set(fd, 0, EventFlags::empty());
    }

    /// Forgets the registration made under `token` after its descriptor was closed (the
    /// kernel dropped it from the set already).
    fn forget_token(&mut self, token: u64) {
        self.reg.retain(|_, (t, _)| *t != token);
    }
}

/// The server state.
pub struct Server {
    cfg: Config,
    poller: Poller,
    listener: Option<OwnedFd>,
    sigfd: OwnedFd,
    next_token: u64,
    tokens: HashMap<u64, Src>,
    conns: HashMap<u64, Conn>,
    containers: BTreeMap<String, Container>,
    reserved: HashMap<String, Reservation>,
    /// The founding start's confirmation pipe, until it confirmed or died.
    start_pipe: Option<OwnedFd>,
    publisher: Publisher,
    shutdown: bool,
    idle_since: Option<Instant>,
    trim_at: Option<Instant>,
}

fn decode<M: Message>(what: &str, payload: &[u8]) -> std::result::Result<M, RpcError> {
    M::parse_from_bytes(payload).map_err(|e| RpcError::invalid(format!("{what}: undecodable request: {e}")))
}

fn encode<M: Message>(m: &M) -> std::result::Result<Vec<u8>, RpcError> {
    m.write_to_bytes().map_err(|e| RpcError::internal(format!("encoding the response: {e}")))
}

fn exit_code(status: rustix::process::WaitStatus) -> u32 {
    match (status.exit_status(), status.terminating_signal()) {
        (Some(c), _) => c as u32,
        (None, Some(s)) => 128 + s as u32,
        _ => 255,
    }
}

/// Waits until the process behind `pidfd` has died (it stays a zombie until reaped), at most
/// 10 s.
fn wait_dead(pidfd: &OwnedFd) -> bool {
    let mut fds = [rustix::event::PollFd::new(pidfd, rustix::event::PollFlags::IN)];
    let ts = rustix::event::Timespec { tv_sec: 10, tv_nsec: 0 };
    loop {
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(n) => return n > 0,
            Err(Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
}

fn json_any<T: serde::de::DeserializeOwned>(what: &str, any: Option<&Any>) -> Result<T> {
    let a = any.ok_or_else(|| Error::Invalid(format!("{what}: missing")))?;
    serde_json::from_slice(&a.value).map_err(|e| Error::Invalid(format!("{what} ({}): {e}", a.type_url)))
}

impl Server {
    /// Prepares a server on an already bound, listening socket.
    pub fn new(cfg: Config, listener: OwnedFd) -> Result<Self> {
        if let Err(e) = rustix::process::set_child_subreaper(Some(Pid::INIT)) {
            log::warn!("cannot become a child subreaper: {e}");
        }
        let mut set = SigSet::empty();
        set.add(libc::SIGCHLD).map_err(|e| Error::io("sigaddset", e))?;
        sig::set_mask(&set).map_err(|e| Error::io("blocking SIGCHLD", e))?;
        let sigfd = sig::signalfd(&set).map_err(|e| Error::io("signalfd", e))?;
        rustix::io::ioctl_fionbio(&listener, true).map_err(|e| Error::io("listener: FIONBIO", e))?;
        let mut poller = Poller::new()?;
        poller.set(listener.as_fd(), TOKEN_LISTENER, EventFlags::IN);
        poller.set(sigfd.as_fd(), TOKEN_SIGNAL, EventFlags::IN);
        let publisher = Publisher::new(&cfg.namespace, cfg.ttrpc_address.clone(), &cfg.address, &cfg.publish_binary);
        Ok(Server {
            cfg,
            poller,
            listener: Some(listener),
            sigfd,
            next_token: 16,
            tokens: HashMap::new(),
            conns: HashMap::new(),
            containers: BTreeMap::new(),
            reserved: HashMap::new(),
            start_pipe: None,
            publisher,
            shutdown: false,
            idle_since: Some(Instant::now()),
            trim_at: Some(Instant::now() + TRIM_DELAY),
        })
    }

    /// Keeps the server alive for `id` until it is created (or the reservation expires). With
    /// `pipe` (the founding start's), only once the start confirmed on it.
    pub fn reserve_for_start(&mut self, id: &str, pipe: Option<OwnedFd>) {
        let pending = pipe.map(|p| {
            self.poller.set(p.as_fd(), TOKEN_START, EventFlags::IN | EventFlags::RDHUP);
            self.start_pipe = Some(p);
            Pending::Founder
        });
        self.reserved.insert(id.to_string(), Reservation { until: Instant::now() + RESERVATION, pending });
    }

    /// The founding start confirmed (a byte) or died (EOF): either way the pipe is done.
    fn on_start_pipe(&mut self) {
        let Some(p) = self.start_pipe.take() else { return };
        let mut b = [0u8; 1];
        let confirmed = loop {
            match rustix::io::read(&p, &mut b) {
                Ok(n) => break n == 1,
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => {
                    self.start_pipe = Some(p);
                    return;
                }
                Err(_) => break false,
            }
        };
        self.poller.remove(p.as_fd());
        self.settle_pending(Pending::Founder, confirmed);
    }

    /// Makes the reservations pending on `who` stand (`confirmed`), or drops them (their start
    /// died before containerd could learn the address). A server left with nothing to serve
    /// then exits at once: nobody knows it exists.
    fn settle_pending(&mut self, who: Pending, confirmed: bool) {
        if confirmed {
            for r in self.reserved.values_mut().filter(|r| r.pending == Some(who)) {
                r.pending = None;
            }
            return;
        }
        let before = self.reserved.len();
        self.reserved.retain(|id, r| {
            let keep = r.pending != Some(who);
            if !keep {
                log::info!("the start of {id} died before containerd got the address: reservation dropped");
            }
            keep
        });
        if self.reserved.len() < before && self.reserved.is_empty() && self.containers.is_empty() {
            self.shutdown = true;
        }
    }

    fn token(&mut self, src: Src) -> u64 {
        let t = self.next_token;
        self.next_token += 1;
        self.tokens.insert(t, src);
        t
    }

    /// Serves until the last container is gone and containerd asked the shim to shut down
    /// (or nothing has used it for a while). Returns the exit code.
    pub fn run(mut self) -> i32 {
        let mut events: Vec<epoll::Event> = Vec::with_capacity(32);
        loop {
            if self.should_exit() {
                break;
            }
            let timeout = self.next_deadline().map(|d| {
                let left = d.saturating_duration_since(Instant::now());
                rustix::event::Timespec {
                    tv_sec: left.as_secs() as i64,
                    tv_nsec: i64::from(left.subsec_nanos()).max(1_000_000),
                }
            });
            events.clear();
            match epoll::wait(&self.poller.ep, rustix::buffer::spare_capacity(&mut events), timeout.as_ref()) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => {
                    log::error!("epoll_wait: {e}");
                    break;
                }
            }
            let ready: Vec<(u64, EventFlags)> = events.iter().map(|e| (e.data.u64(), e.flags)).collect();
            let idle = ready.is_empty();
            if !idle {
                self.trim_at = Some(Instant::now() + TRIM_DELAY);
            }
            for (token, flags) in ready {
                match token {
                    TOKEN_LISTENER => self.accept(),
                    TOKEN_START => self.on_start_pipe(),
                    TOKEN_SIGNAL => {
                        let mut buf = [0u8; berth_sys::signal::SIGINFO_SIZE];
                        while rustix::io::read(&self.sigfd, &mut buf[..]).is_ok_and(|n| n > 0) {}
                        self.reap();
                    }
                    t => self.on_ready(t, flags),
                }
            }
            if self.publisher.retry_at().is_some_and(|t| Instant::now() >= t) {
                self.publisher.drain();
            }
            self.settle();
            // Last in the iteration: the trim ends in a wait for the next event.
            if idle && self.trim_at.is_some_and(|t| Instant::now() >= t) && !self.should_exit() {
                self.trim();
            }
        }
        // Stop accepting first: a `start` for a new container must find no socket (and bind
        // a new server) rather than queue on one that is going away.
        let _ = std::fs::remove_file(&self.cfg.socket);
        if let Some(l) = self.listener.take() {
            self.poller.remove(l.as_fd());
        }
        self.publisher.flush(Duration::from_secs(5));
        // Answer whatever was written last (e.g. the Shutdown response) before leaving.
        for c in self.conns.values_mut() {
            if !c.out.is_empty() {
                let _ = c.stream.set_nonblocking(false);
                let _ = c.stream.set_write_timeout(Some(Duration::from_secs(1)));
                let _ = c.stream.write_all(&c.out);
            }
        }
        log::info!("shim exiting");
        0
    }

    fn should_exit(&mut self) -> bool {
        if !self.containers.is_empty() || !self.reserved.is_empty() {
            self.idle_since = None;
            return false;
        }
        if self.shutdown {
            return true;
        }
        if !self.conns.is_empty() {
            self.idle_since = None;
            return false;
        }
        let since = *self.idle_since.get_or_insert_with(Instant::now);
        since.elapsed() >= IDLE_EXIT
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut d: Option<Instant> = self.publisher.retry_at();
        let mut take = |t: Instant| d = Some(d.map_or(t, |x| x.min(t)));
        for r in self.reserved.values() {
            take(r.until);
        }
        for c in self.containers.values() {
            for p in std::iter::once(&c.init).chain(c.execs.values()) {
                if let (Some(seen), false) = (p.exit_seen, p.published) {
                    take(seen + EXIT_GRACE);
                }
            }
        }
        if let Some(s) = self.idle_since {
            take(s + IDLE_EXIT);
        }
        if let Some(t) = self.trim_at {
            take(t);
        }
        d
    }

    /// Gives memory back once a burst of activity is over: free heap pages, and this
    /// process's mappings of executable pages that were touched to serve it (container
    /// creation touches most of the runtime library). Neither loses data; the next request
    /// faults the code it needs back in from the page cache (minor faults, microseconds).
    /// At rest the shim then holds little more than its data, which is what makes one shim
    /// per group of containers cheap per container.
    fn trim(&mut self) {
        self.trim_at = None;
        // The shim has no signal handlers (signals arrive through a signalfd) and runs this
        // on its only thread, as release_unused_stack requires.
        if let Err(e) = berth_sys::mem::release_unused_stack() {
            log::debug!("releasing stack pages: {e}");
        }
        berth_sys::mem::trim_heap();
        // Last, and followed directly by the wait: whatever code runs after the release
        // faults back in.
        let timeout = self.next_deadline().map_or(-1, |d| {
            i32::try_from(d.saturating_duration_since(Instant::now()).as_millis() + 1).unwrap_or(i32::MAX)
        });
        if let Err(e) = berth_sys::mem::release_and_wait(self.poller.ep.as_fd(), timeout) {
            log::debug!("releasing clean pages: {e}");
        }
    }

    // ---- connections -------------------------------------------------------------------

    fn accept(&mut self) {
        loop {
            let Some(l) = &self.listener else { return };
            match rustix::net::accept_with(l, rustix::net::SocketFlags::CLOEXEC) {
                Ok(fd) => {
                    let stream = UnixStream::from(fd);
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let t = self.token(Src::Conn);
                    self.poller.set(stream.as_fd(), t, EventFlags::IN | EventFlags::RDHUP);
                    self.conns.insert(t, Conn { stream, inbuf: FrameBuf::default(), out: Vec::new() });
                }
                Err(Errno::INTR) => continue,
                Err(_) => return,
            }
        }
    }

    fn close_conn(&mut self, t: u64) {
        if let Some(c) = self.conns.remove(&t) {
            self.poller.remove(c.stream.as_fd());
        }
        self.tokens.remove(&t);
        // A start that reserved on this connection and never confirmed.
        self.settle_pending(Pending::Conn(t), false);
    }

    fn on_ready(&mut self, t: u64, flags: EventFlags) {
        match self.tokens.get(&t).cloned() {
            Some(Src::Conn) => self.on_conn(t, flags),
            Some(Src::Relay(cid, eid, _)) => self.pump(&cid, &eid),
            Some(Src::Oom(cid)) => self.on_oom(&cid),
            None => {}
        }
    }

    fn on_conn(&mut self, t: u64, flags: EventFlags) {
        if flags.contains(EventFlags::OUT) {
            self.flush_conn(t);
        }
        let mut frames = Vec::new();
        let mut closed = false;
        if let Some(c) = self.conns.get_mut(&t) {
            let mut buf = [0u8; 16 * 1024];
            loop {
                match c.stream.read(&mut buf) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(n) => c.inbuf.extend(buf.get(..n).unwrap_or_default()),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
            loop {
                match c.inbuf.next_frame() {
                    Ok(Some(f)) => frames.push(f),
                    Ok(None) => break,
                    Err(e) => {
                        log::warn!("closing a connection: {e}");
                        closed = true;
                        break;
                    }
                }
            }
        }
        for f in frames {
            if f.kind != TYPE_REQUEST {
                continue;
            }
            let result = match ttrpc::parse_request(&f.payload) {
                Ok(req) => self.dispatch(t, f.stream, &req.service, &req.method, &req.payload),
                Err(e) => Some(Err(e)),
            };
            if let Some(r) = result {
                self.respond(t, f.stream, r);
            }
        }
        if closed {
            self.close_conn(t);
        }
    }

    fn respond(&mut self, t: u64, stream: u32, r: std::result::Result<Vec<u8>, RpcError>) {
        if let Err(e) = &r {
            log::debug!("stream {stream}: error: {}", e.message);
        }
        let frame = ttrpc::response(stream, r);
        if let Some(c) = self.conns.get_mut(&t) {
            c.out.extend_from_slice(&frame);
        }
        self.flush_conn(t);
    }

    fn flush_conn(&mut self, t: u64) {
        let Some(c) = self.conns.get_mut(&t) else { return };
        while !c.out.is_empty() {
            match c.stream.write(&c.out) {
                Ok(n) => {
                    c.out.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    c.out.clear();
                    break;
                }
            }
        }
        let mut flags = EventFlags::IN | EventFlags::RDHUP;
        if !c.out.is_empty() {
            flags |= EventFlags::OUT;
        } else {
            c.out = Vec::new();
        }
        let fd = c.stream.as_fd();
        self.poller.set(fd, t, flags);
    }

    // ---- dispatch ----------------------------------------------------------------------

    /// Handles one request. `None`: the answer comes later (a parked `Wait`).
    fn dispatch(
        &mut self,
        conn: u64,
        stream: u32,
        service: &str,
        method: &str,
        p: &[u8],
    ) -> Option<std::result::Result<Vec<u8>, RpcError>> {
        // Exits that already happened are observed first, so e.g. an exec racing with the
        // init's death is refused instead of started into a dying container.
        self.reap();
        if service == GROUP_SERVICE {
            let id = String::from_utf8_lossy(p).into_owned();
            return Some(match method {
                "Reserve" => {
                    let pending = Some(Pending::Conn(conn));
                    self.reserved.insert(id, Reservation { until: Instant::now() + RESERVATION, pending });
                    Ok(Vec::new())
                }
                "Confirm" => {
                    if let Some(r) = self.reserved.get_mut(&id).filter(|r| r.pending == Some(Pending::Conn(conn))) {
                        r.pending = None;
                    }
                    Ok(Vec::new())
                }
                // Whether this server manages (or is about to create) `id`: the `delete`
                // action must not clean up a container that a live server looks after.
                "Owns" => Ok(vec![u8::from(self.containers.contains_key(&id) || self.reserved.contains_key(&id))]),
                other => Err(RpcError::unimplemented(format!("{GROUP_SERVICE}/{other} is not implemented"))),
            });
        }
        if service != TASK_SERVICE {
            return Some(Err(RpcError::unimplemented(format!("service {service} is not served by this shim"))));
        }
        log::debug!("{method}");
        let r = match method {
            "Create" => {
                decode("Create", p).and_then(|r| self.create(r).map_err(RpcError::from)).and_then(|x| encode(&x))
            }
            "Start" => decode("Start", p).and_then(|r| self.start(r).map_err(RpcError::from)).and_then(|x| encode(&x)),
            "Delete" => {
                decode("Delete", p).and_then(|r| self.delete(r).map_err(RpcError::from)).and_then(|x| encode(&x))
            }
            "State" => decode("State", p).and_then(|r| self.state(r).map_err(RpcError::from)).and_then(|x| encode(&x)),
            "Pids" => decode("Pids", p).and_then(|r| self.pids(r).map_err(RpcError::from)).and_then(|x| encode(&x)),
            "Pause" => decode("Pause", p).and_then(|r| self.pause(r).map_err(RpcError::from)).and_then(|x| encode(&x)),
            "Resume" => {
                decode("Resume", p).and_then(|r| self.resume(r).map_err(RpcError::from)).and_then(|x| encode(&x))
            }
            "Kill" => decode("Kill", p).and_then(|r| self.kill(r).map_err(RpcError::from)).and_then(|x| encode(&x)),
            "Exec" => decode("Exec", p).and_then(|r| self.exec(r).map_err(RpcError::from)).and_then(|x| encode(&x)),
            "ResizePty" => {
                decode("ResizePty", p).and_then(|r| self.resize_pty(r).map_err(RpcError::from)).and_then(|x| encode(&x))
            }
            "CloseIO" => {
                decode("CloseIO", p).and_then(|r| self.close_io(r).map_err(RpcError::from)).and_then(|x| encode(&x))
            }
            "Update" => {
                decode("Update", p).and_then(|r| self.update(r).map_err(RpcError::from)).and_then(|x| encode(&x))
            }
            "Stats" => decode("Stats", p).and_then(|r| self.stats(r).map_err(RpcError::from)).and_then(|x| encode(&x)),
            "Connect" => {
                decode("Connect", p).and_then(|r| self.connect(r).map_err(RpcError::from)).and_then(|x| encode(&x))
            }
            "Shutdown" => decode::<api::ShutdownRequest>("Shutdown", p).and_then(|r| encode(&self.shutdown_req(r))),
            "Checkpoint" => {
                Err(RpcError::unimplemented("checkpoint is not implemented: berth has no CRIU support yet"))
            }
            "Wait" => match decode::<api::WaitRequest>("Wait", p) {
                Ok(r) => return self.wait(conn, stream, r),
                Err(e) => Err(e),
            },
            other => Err(RpcError::unimplemented(format!("{TASK_SERVICE}/{other} is not implemented"))),
        };
        Some(r)
    }

    fn container(&self, id: &str) -> Result<&Container> {
        self.containers.get(id).ok_or_else(|| Error::NotFound(format!("task {id} not found")))
    }

    fn container_mut(&mut self, id: &str) -> Result<&mut Container> {
        self.containers.get_mut(id).ok_or_else(|| Error::NotFound(format!("task {id} not found")))
    }

    // ---- Create / Start ----------------------------------------------------------------

    fn create(&mut self, req: api::CreateTaskRequest) -> Result<api::CreateTaskResponse> {
        berth_core::state::validate_id(&req.id).map_err(Error::Invalid)?;
        self.reserved.remove(&req.id);
        if self.containers.contains_key(&req.id) {
            return Err(Error::Exists(format!("task {} already exists", req.id)));
        }
        if !req.checkpoint.is_empty() {
            return Err(Error::Unsupported(format!(
                "create {} from checkpoint {}: checkpoint/restore is not supported by berth",
                req.id, req.checkpoint
            )));
        }
        let bundle = PathBuf::from(&req.bundle);
        let rootfs = crate::mounts::mount_rootfs(&bundle, &req.rootfs)?;
        match self.create_mounted(&req, &bundle, rootfs.clone()) {
            Ok(r) => Ok(r),
            Err(e) => {
                if let Some(r) = &rootfs {
                    crate::mounts::unmount_all(r);
                }
                Err(e)
            }
        }
    }

    fn create_mounted(
        &mut self,
        req: &api::CreateTaskRequest,
        bundle: &Path,
        rootfs: Option<PathBuf>,
    ) -> Result<api::CreateTaskResponse> {
        let mut spec = berth_linux::container::load_spec(bundle)?;
        // The runtime option `isolation = "vm"` (docs/vm-isolation.md) stands for the annotation.
        if let Some(any) = req.options.as_ref() {
            use containerd_shim_protos::protobuf::Message;
            let data = any.write_to_bytes().map_err(|e| Error::Invalid(format!("runtime options: {e}")))?;
            if crate::options::parse(&data)?.settings.vm {
                let mut a = spec.annotations().clone().unwrap_or_default();
                a.entry("org.berth.isolation".to_string()).or_insert_with(|| "vm".to_string());
                spec.set_annotations(Some(a));
            }
        }
        let terminal = req.terminal || spec.process().as_ref().and_then(|p| p.terminal()).unwrap_or(false);
        let namespaces = spec.linux().as_ref().and_then(|l| l.namespaces().clone()).unwrap_or_default();
        let own_pidns = namespaces.iter().any(|n| n.typ() == LinuxNamespaceType::Pid && n.path().is_none());
        let (io_for_process, mut io) = stdio::open_process(&req.stdin, &req.stdout, &req.stderr, terminal)?;
        let opts = berth_linux::container::CreateOptions {
            root: self.cfg.root.clone(),
            id: req.id.clone(),
            bundle: bundle.to_path_buf(),
            spec: Some(spec),
            stdio: io_for_process,
            keep_master: true,
            ..Default::default()
        };
        let launched = berth_linux::container::launch(&opts, berth_linux::container::LaunchMode::Create);
        // The process's ends of its stdio now live in the process only.
        drop(opts);
        let (pid, pidfd, master, state) = match launched? {
            berth_linux::container::Launched::Created { pid, pidfd, master, state } => (pid, pidfd, master, state),
            _ => return Err(Error::State("create: the runtime did not leave the container created".into())),
        };
        if let (Some(m), Some(relay)) = (master, io.relay.as_mut()) {
            if let Err(e) = relay.set_master(m) {
                // Not tracked yet: take the container down rather than leave it behind.
                let _ = rustix::process::pidfd_send_signal(&pidfd, Signal::KILL);
                wait_dead(&pidfd);
                self.reap();
                let _ = berth_linux::container::destroy(&self.cfg.root, &state);
                return Err(e);
            }
        }
        let cgroup = state.cgroup.clone();
        let oom = match cgroup.as_ref().map(|c| c.oom_watcher()) {
            Some(Ok(w)) => {
                let t = self.token(Src::Oom(req.id.clone()));
                self.poller.set(w.as_fd(), t, EventFlags::IN);
                Some((w, t))
            }
            Some(Err(e)) => {
                log::info!("{}: no OOM notifications: {e}", req.id);
                None
            }
            None => None,
        };
        let tokens = [
            self.token(Src::Relay(req.id.clone(), String::new(), Side::Master)),
            self.token(Src::Relay(req.id.clone(), String::new(), Side::Input)),
            self.token(Src::Relay(req.id.clone(), String::new(), Side::Output)),
        ];
        let init = Proc {
            pid,
            pidfd: Some(pidfd),
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal,
            io,
            tokens,
            ..Default::default()
        };
        let c = Container {
            id: req.id.clone(),
            bundle: bundle.to_path_buf(),
            rootfs,
            cgroup,
            state,
            oom,
            own_pidns,
            paused: false,
            init,
            execs: BTreeMap::new(),
        };
        self.containers.insert(req.id.clone(), c);
        self.sync_relay(&req.id, "");
        let mut e = ev::TaskCreate::new();
        e.container_id = req.id.clone();
        e.bundle = req.bundle.clone();
        e.rootfs = req.rootfs.iter().map(convert_mount).collect();
        let mut tio = ev::TaskIO::new();
        tio.stdin = req.stdin.clone();
        tio.stdout = req.stdout.clone();
        tio.stderr = req.stderr.clone();
        tio.terminal = terminal;
        e.io = Some(tio).into();
        e.checkpoint = req.checkpoint.clone();
        e.pid = pid as u32;
        self.publisher.publish(topics::TASK_CREATE_EVENT_TOPIC, &e);
        log::info!("created {} (pid {pid})", req.id);
        Ok(api::CreateTaskResponse { pid: pid as u32, ..Default::default() })
    }

    fn start(&mut self, req: api::StartRequest) -> Result<api::StartResponse> {
        if req.exec_id.is_empty() {
            let root = self.cfg.root.clone();
            let c = self.container_mut(&req.id)?;
            if c.init.exit.is_some() {
                return Err(Error::State(format!("task {} has already exited", req.id)));
            }
            if c.init.started {
                return Err(Error::State(format!("task {} is already started", req.id)));
            }
            berth_linux::container::start_created(&root, &c.state)?;
            c.init.started = true;
            let pid = c.init.pid;
            let mut e = ev::TaskStart::new();
            e.container_id = req.id.clone();
            e.pid = pid as u32;
            self.publisher.publish(topics::TASK_START_EVENT_TOPIC, &e);
            return Ok(api::StartResponse { pid: pid as u32, ..Default::default() });
        }
        let root = self.cfg.root.clone();
        let c = self.container_mut(&req.id)?;
        if !c.init.running() {
            return Err(Error::State(format!(
                "cannot start exec {} in task {}: it is not running",
                req.exec_id, req.id
            )));
        }
        if c.paused {
            return Err(Error::State(format!("cannot start exec {} in task {}: it is paused", req.exec_id, req.id)));
        }
        let p = c.proc_mut(&req.exec_id)?;
        if p.started || p.exit.is_some() {
            return Err(Error::State(format!("exec {} is already started", req.exec_id)));
        }
        let spec = p.spec.take().ok_or_else(|| Error::State(format!("exec {} has no process spec", req.exec_id)))?;
        let (io_for_process, mut io) = match stdio::open_process(&p.stdin, &p.stdout, &p.stderr, p.terminal) {
            Ok(x) => x,
            Err(e) => {
                p.spec = Some(spec);
                return Err(e);
            }
        };
        let opts = berth_linux::exec::ExecOptions {
            root,
            id: req.id.clone(),
            process: Some(spec.clone()),
            stdio: io_for_process,
            ..Default::default()
        };
        let spawned = berth_linux::exec::spawn(&opts);
        drop(opts);
        let c = self.container_mut(&req.id)?;
        let p = c.proc_mut(&req.exec_id)?;
        let sp = match spawned {
            Ok(sp) => sp,
            Err(e) => {
                p.spec = Some(spec);
                return Err(e.into());
            }
        };
        if let (Some(m), Some(relay)) = (sp.master, io.relay.as_mut()) {
            if let Err(e) = relay.set_master(m) {
                // Not tracked yet: kill it (it is reaped as an unknown child).
                let _ = rustix::process::pidfd_send_signal(&sp.pidfd, Signal::KILL);
                p.spec = Some(spec);
                return Err(e);
            }
        }
        p.pid = sp.pid;
        p.pidfd = Some(sp.pidfd);
        p.io = io;
        p.started = true;
        self.sync_relay(&req.id, &req.exec_id);
        let mut e = ev::TaskExecStarted::new();
        e.container_id = req.id.clone();
        e.exec_id = req.exec_id.clone();
        e.pid = sp.pid as u32;
        self.publisher.publish(topics::TASK_EXEC_STARTED_EVENT_TOPIC, &e);
        Ok(api::StartResponse { pid: sp.pid as u32, ..Default::default() })
    }

    fn exec(&mut self, req: api::ExecProcessRequest) -> Result<api::Empty> {
        let c = self.container(&req.id)?;
        if c.init.exit.is_some() {
            return Err(Error::State(format!("cannot exec in task {}: it has exited", req.id)));
        }
        berth_core::state::validate_id(&req.exec_id)
            .map_err(|e| Error::Invalid(e.replace("container id", "exec id").replace("container ID", "exec ID")))?;
        if c.execs.contains_key(&req.exec_id) {
            return Err(Error::Exists(format!("exec {} already exists in task {}", req.exec_id, req.id)));
        }
        // Through berth-spec, as `berth exec --process` reads its file: the runtime spec's
        // names (scheduler flags) and runc's leniencies (unknown capabilities) apply.
        let any = req.spec.as_ref().ok_or_else(|| Error::Invalid("exec spec: missing".into()))?;
        let (spec, warnings) =
            berth_spec::parse_process(&any.value).map_err(|e| Error::Invalid(format!("exec spec: {e}")))?;
        for w in warnings {
            log::warn!("exec {}: {w}", req.exec_id);
        }
        let terminal = req.terminal || spec.terminal().unwrap_or(false);
        let tokens = [
            self.token(Src::Relay(req.id.clone(), req.exec_id.clone(), Side::Master)),
            self.token(Src::Relay(req.id.clone(), req.exec_id.clone(), Side::Input)),
            self.token(Src::Relay(req.id.clone(), req.exec_id.clone(), Side::Output)),
        ];
        let p = Proc {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal,
            spec: Some(spec),
            tokens,
            ..Default::default()
        };
        self.container_mut(&req.id)?.execs.insert(req.exec_id.clone(), p);
        let mut e = ev::TaskExecAdded::new();
        e.container_id = req.id.clone();
        e.exec_id = req.exec_id.clone();
        self.publisher.publish(topics::TASK_EXEC_ADDED_EVENT_TOPIC, &e);
        Ok(api::Empty::new())
    }

    // ---- Delete ------------------------------------------------------------------------

    fn delete(&mut self, req: api::DeleteRequest) -> Result<api::DeleteResponse> {
        if !req.exec_id.is_empty() {
            let c = self.container_mut(&req.id)?;
            let p = c.proc(&req.exec_id)?;
            if p.running() {
                return Err(Error::State(format!("cannot delete exec {}: it is running", req.exec_id)));
            }
            if p.exit.is_some() && !p.published {
                self.publish_exit(&req.id, &req.exec_id);
            }
            let c = self.container_mut(&req.id)?;
            let p = c.execs.remove(&req.exec_id).unwrap_or_default();
            self.forget_proc(&p);
            let (status, at) = p.exit.unwrap_or((0, SystemTime::now()));
            return Ok(api::DeleteResponse {
                pid: p.pid.max(0) as u32,
                exit_status: status,
                exited_at: Some(timestamp(at)).into(),
                ..Default::default()
            });
        }
        let c = self.container_mut(&req.id)?;
        if c.init.running() {
            return Err(Error::State(format!("cannot delete task {}: it is running", req.id)));
        }
        if !c.init.started && c.init.exit.is_none() {
            // Created, never started: the init waits for start; kill it.
            if let Some(fd) = &c.init.pidfd {
                let _ = rustix::process::pidfd_send_signal(fd, Signal::KILL);
                if !wait_dead(fd) {
                    return Err(Error::State(format!("task {}: the init did not die within 10s of SIGKILL", req.id)));
                }
            }
            self.reap();
        }
        let c = self.container_mut(&req.id)?;
        let running_execs: Vec<String> = c.execs.iter().filter(|(_, p)| p.running()).map(|(k, _)| k.clone()).collect();
        for e in &running_execs {
            if let Some(fd) = c.execs.get(e).and_then(|p| p.pidfd.as_ref()) {
                let _ = rustix::process::pidfd_send_signal(fd, Signal::KILL);
                wait_dead(fd);
            }
        }
        self.reap();
        // Exits not published yet (output still draining) go out before the delete.
        let pending: Vec<String> = {
            let c = self.container(&req.id)?;
            c.execs.iter().filter(|(_, p)| p.exit.is_some() && !p.published).map(|(k, _)| k.clone()).collect()
        };
        for e in pending {
            self.publish_exit(&req.id, &e);
        }
        if self.container(&req.id)?.init.exit.is_some() && !self.container(&req.id)?.init.published {
            self.publish_exit(&req.id, "");
        }
        let c = self.containers.remove(&req.id).ok_or_else(|| Error::NotFound(format!("task {} not found", req.id)))?;
        let result = self.destroy(&c);
        let (status, at) = c.init.exit.unwrap_or((0, SystemTime::now()));
        let mut e = ev::TaskDelete::new();
        e.container_id = c.id.clone();
        e.pid = c.init.pid.max(0) as u32;
        e.exit_status = status;
        e.exited_at = Some(timestamp(at)).into();
        e.id = c.id.clone();
        self.publisher.publish(topics::TASK_DELETE_EVENT_TOPIC, &e);
        if let Err(err) = result {
            log::warn!("deleting {}: {err}", c.id);
        }
        log::info!("deleted {}", c.id);
        Ok(api::DeleteResponse {
            pid: c.init.pid.max(0) as u32,
            exit_status: status,
            exited_at: Some(timestamp(at)).into(),
            ..Default::default()
        })
    }

    /// Releases everything the container holds in the shim and on the host.
    fn destroy(&mut self, c: &Container) -> Result<()> {
        self.forget_proc(&c.init);
        for p in c.execs.values() {
            self.forget_proc(p);
        }
        if let Some((w, t)) = &c.oom {
            self.poller.remove(w.as_fd());
            self.tokens.remove(t);
        }
        let r = match berth_linux::state::ContainerState::load(&self.cfg.root, &c.id) {
            Ok(st) => berth_linux::container::destroy(&self.cfg.root, &st).map_err(Error::from),
            Err(berth_linux::Error::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        };
        if let Some(r) = &c.rootfs {
            crate::mounts::unmount_all(r);
        }
        r
    }

    fn forget_proc(&mut self, p: &Proc) {
        if let Some(r) = &p.io.relay {
            for fd in [&r.master, &r.input, &r.output].into_iter().flatten() {
                self.poller.remove(fd.as_fd());
            }
        }
        for t in &p.tokens {
            self.poller.forget_token(*t);
            self.tokens.remove(t);
        }
    }

    // ---- queries -----------------------------------------------------------------------

    fn state(&mut self, req: api::StateRequest) -> Result<api::StateResponse> {
        let c = self.container(&req.id)?;
        let p = c.proc(&req.exec_id)?;
        let (status, at) = match p.exit {
            Some((s, at)) => (s, Some(timestamp(at))),
            None => (0, None),
        };
        Ok(api::StateResponse {
            id: if req.exec_id.is_empty() { req.id.clone() } else { req.exec_id.clone() },
            bundle: c.bundle.to_string_lossy().into_owned(),
            pid: p.pid.max(0) as u32,
            status: p.status(c.paused).into(),
            stdin: p.stdin.clone(),
            stdout: p.stdout.clone(),
            stderr: p.stderr.clone(),
            terminal: p.terminal,
            exit_status: status,
            exited_at: at.into(),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        })
    }

    fn pids(&mut self, req: api::PidsRequest) -> Result<api::PidsResponse> {
        let c = self.container(&req.id)?;
        if berth_linux::vm::is_vm(&c.state.spec) {
            // VM isolation (docs/vm-isolation.md): the container's processes are in the guest
            // (the host cgroup holds QEMU and virtiofsd); the agent lists them, with guest
            // pids, which no exec's host stand-in pid matches, so no exec ids.
            let mut out = api::PidsResponse::new();
            for p in berth_linux::vm::processes(&self.cfg.root, &c.state)? {
                let mut info = ProcessInfo::new();
                info.pid = p.pid.max(0) as u32;
                out.processes.push(info);
            }
            return Ok(out);
        }
        let mut pids = c.cgroup()?.pids()?;
        pids.sort_unstable();
        pids.dedup();
        let mut out = api::PidsResponse::new();
        for pid in pids {
            let mut info = ProcessInfo::new();
            info.pid = pid.max(0) as u32;
            if let Some((eid, _)) = c.execs.iter().find(|(_, p)| p.pid == pid && p.running()) {
                let mut d = ProcessDetails::new();
                d.exec_id = eid.clone();
                info.info = Some(to_any(&d)).into();
            }
            out.processes.push(info);
        }
        Ok(out)
    }

    fn stats(&mut self, req: api::StatsRequest) -> Result<api::StatsResponse> {
        let c = self.container(&req.id)?;
        // A VM container's are its guest cgroup's (docs/vm-isolation.md).
        let s = if berth_linux::vm::is_vm(&c.state.spec) {
            berth_linux::vm::stats(&self.cfg.root, &c.state)?
        } else {
            c.cgroup()?.stats()?
        };
        Ok(api::StatsResponse { stats: Some(crate::metrics::to_any(&s)).into(), ..Default::default() })
    }

    fn connect(&mut self, req: api::ConnectRequest) -> Result<api::ConnectResponse> {
        let task_pid = self.containers.get(&req.id).map_or(0, |c| c.init.pid.max(0) as u32);
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: concat!("berth ", env!("CARGO_PKG_VERSION")).to_string(),
            ..Default::default()
        })
    }

    fn wait(
        &mut self,
        conn: u64,
        stream: u32,
        req: api::WaitRequest,
    ) -> Option<std::result::Result<Vec<u8>, RpcError>> {
        let c = match self.container_mut(&req.id) {
            Ok(c) => c,
            Err(e) => return Some(Err(e.into())),
        };
        let p = match c.proc_mut(&req.exec_id) {
            Ok(p) => p,
            Err(e) => return Some(Err(e.into())),
        };
        if p.published {
            let (s, at) = p.exit.unwrap_or((255, SystemTime::now()));
            return Some(encode(&wait_response(s, at)));
        }
        p.waiters.push((conn, stream));
        None
    }

    // ---- control -----------------------------------------------------------------------

    fn kill(&mut self, req: api::KillRequest) -> Result<api::Empty> {
        // Any number 1 to 64: real-time signals too (SIGRTMIN+3 is systemd images' stop
        // signal, which CRI sends by number).
        let signal = i32::try_from(req.signal)
            .ok()
            .filter(|s| (1..=64).contains(s))
            .ok_or_else(|| Error::Invalid(format!("signal {}: not a valid signal number", req.signal)))?;
        let root = self.cfg.root.clone();
        let c = self.container_mut(&req.id)?;
        if req.exec_id.is_empty() && berth_linux::vm::is_vm(&c.state.spec) {
            // VM isolation (docs/vm-isolation.md): the init's pid is the VM supervisor's, which
            // forwards signals into the guest; berth-linux routes SIGKILL and `all` through it.
            berth_linux::container::kill(&root, &req.id, signal, req.all)?;
            return Ok(api::Empty::new());
        }
        if req.exec_id.is_empty() && req.all {
            c.cgroup()?.signal_all(signal)?;
        } else {
            let p = c.proc(&req.exec_id)?;
            if p.exit.is_some() {
                return Err(Error::NotFound(format!("process {} already finished", p.pid)));
            }
            let fd = p
                .pidfd
                .as_ref()
                .ok_or_else(|| Error::State(format!("process {} in task {} is not started", req.exec_id, req.id)))?;
            berth_sys::signal::pidfd_send(fd.as_fd(), signal)
                .map_err(|e| Error::io(format!("signalling process {} of task {}", p.pid, req.id), e))?;
        }
        if signal == libc::SIGKILL && c.paused {
            // A frozen process cannot act on SIGKILL until thawed.
            if let Ok(cg) = c.cgroup() {
                let _ = cg.thaw();
            }
        }
        Ok(api::Empty::new())
    }

    fn pause(&mut self, req: api::PauseRequest) -> Result<api::Empty> {
        let c = self.container_mut(&req.id)?;
        if !c.init.running() {
            return Err(Error::State(format!("cannot pause task {}: it is not running", req.id)));
        }
        if c.paused {
            return Err(Error::State(format!("task {} is already paused", req.id)));
        }
        c.cgroup()?.freeze()?;
        c.paused = true;
        let mut e = ev::TaskPaused::new();
        e.container_id = req.id.clone();
        self.publisher.publish(topics::TASK_PAUSED_EVENT_TOPIC, &e);
        Ok(api::Empty::new())
    }

    fn resume(&mut self, req: api::ResumeRequest) -> Result<api::Empty> {
        let c = self.container_mut(&req.id)?;
        if !c.paused {
            return Err(Error::State(format!("task {} is not paused", req.id)));
        }
        c.cgroup()?.thaw()?;
        c.paused = false;
        let mut e = ev::TaskResumed::new();
        e.container_id = req.id.clone();
        self.publisher.publish(topics::TASK_RESUMED_EVENT_TOPIC, &e);
        Ok(api::Empty::new())
    }

    fn resize_pty(&mut self, req: api::ResizePtyRequest) -> Result<api::Empty> {
        let (w, h) = match (u16::try_from(req.width), u16::try_from(req.height)) {
            (Ok(w), Ok(h)) => (w, h),
            _ => return Err(Error::Invalid(format!("terminal size {}x{}: out of range", req.width, req.height))),
        };
        let c = self.container(&req.id)?;
        let p = c.proc(&req.exec_id)?;
        if let Some(r) = &p.io.relay {
            r.resize(w, h)?;
        }
        Ok(api::Empty::new())
    }

    fn close_io(&mut self, req: api::CloseIORequest) -> Result<api::Empty> {
        let c = self.container_mut(&req.id)?;
        let p = c.proc_mut(&req.exec_id)?;
        if req.stdin {
            p.io.stdin_keep = None;
            if let Some(r) = p.io.relay.as_mut() {
                r.input_keep = None;
            }
        }
        self.pump(&req.id, &req.exec_id);
        Ok(api::Empty::new())
    }

    fn update(&mut self, req: api::UpdateTaskRequest) -> Result<api::Empty> {
        let r: LinuxResources = json_any("update resources", req.resources.as_ref())?;
        let c = self.container(&req.id)?;
        if c.init.exit.is_some() {
            return Err(Error::State(format!("cannot update task {}: it has exited", req.id)));
        }
        c.cgroup()?.update(&berth_linux::resources::for_update(&r))?;
        Ok(api::Empty::new())
    }

    fn shutdown_req(&mut self, req: api::ShutdownRequest) -> api::Empty {
        // A grouped shim stays while other containers use it; it goes once the last one is
        // deleted. `now` does not override that: other tasks' supervision must not vanish.
        log::debug!("shutdown requested for {} (now: {})", req.id, req.now);
        self.shutdown = true;
        api::Empty::new()
    }

    // ---- exits, OOM, relays ------------------------------------------------------------

    fn reap(&mut self) {
        loop {
            match rustix::process::wait(WaitOptions::NOHANG) {
                Ok(Some((pid, status))) => self.on_exit(pid.as_raw_nonzero().get(), exit_code(status)),
                Ok(None) => return,
                Err(Errno::INTR) => continue,
                Err(_) => return,
            }
        }
    }

    fn on_exit(&mut self, pid: i32, code: u32) {
        let now = SystemTime::now();
        for c in self.containers.values_mut() {
            if c.init.pid == pid && c.init.exit.is_none() {
                c.init.exit = Some((code, now));
                c.init.exit_seen = Some(Instant::now());
                c.init.pidfd = None;
                if !c.own_pidns {
                    // Nothing takes the other processes down with the init: kill the cgroup
                    // (as containerd's runc shim does).
                    if let Some(cg) = &c.cgroup {
                        let _ = cg.signal_all(libc::SIGKILL);
                    }
                }
                for p in c.execs.values() {
                    if let (Some(fd), None) = (&p.pidfd, p.exit) {
                        let _ = rustix::process::pidfd_send_signal(fd, Signal::KILL);
                    }
                }
                if c.paused {
                    if let Some(cg) = &c.cgroup {
                        let _ = cg.thaw();
                    }
                    c.paused = false;
                }
                log::debug!("{}: init {pid} exited with {code}", c.id);
                return;
            }
            if let Some(p) = c.execs.values_mut().find(|p| p.pid == pid && p.started && p.exit.is_none()) {
                p.exit = Some((code, now));
                p.exit_seen = Some(Instant::now());
                p.pidfd = None;
                return;
            }
        }
        log::debug!("reaped {pid} (exit {code})");
    }

    /// Publishes exits that are ready: output relayed (or the grace period over), and for an
    /// init, every started exec's exit out first.
    fn settle(&mut self) {
        let now = Instant::now();
        self.reserved.retain(|_, r| r.until > now);
        let mut ready: Vec<(String, String)> = Vec::new();
        for c in self.containers.values() {
            let mut execs_done = true;
            for (eid, p) in &c.execs {
                if p.exit.is_some() && !p.published {
                    let late = p.exit_seen.is_some_and(|s| now >= s + EXIT_GRACE);
                    if p.relay_done() || late {
                        ready.push((c.id.clone(), eid.clone()));
                    } else {
                        execs_done = false;
                    }
                } else if p.running() {
                    execs_done = false;
                }
            }
            let p = &c.init;
            if p.exit.is_some() && !p.published {
                let late = p.exit_seen.is_some_and(|s| now >= s + EXIT_GRACE);
                if (p.relay_done() && execs_done) || late {
                    ready.push((c.id.clone(), String::new()));
                }
            }
        }
        for (cid, eid) in ready {
            self.publish_exit(&cid, &eid);
        }
    }

    fn publish_exit(&mut self, cid: &str, eid: &str) {
        let Some(c) = self.containers.get_mut(cid) else { return };
        let Ok(p) = c.proc_mut(eid) else { return };
        if p.published {
            return;
        }
        p.published = true;
        // The client reads EOF on the terminal output now; stdin is of no use any more.
        if let Some(r) = p.io.relay.as_mut() {
            r.finish();
            r.input = None;
            r.input_keep = None;
        }
        p.io.stdin_keep = None;
        let (status, at) = p.exit.unwrap_or((255, SystemTime::now()));
        let pid = p.pid;
        let waiters = std::mem::take(&mut p.waiters);
        let started = p.started;
        self.sync_relay(cid, eid);
        if started {
            let mut e = ev::TaskExit::new();
            e.container_id = cid.to_string();
            e.id = if eid.is_empty() { cid.to_string() } else { eid.to_string() };
            e.pid = pid.max(0) as u32;
            e.exit_status = status;
            e.exited_at = Some(timestamp(at)).into();
            self.publisher.publish(topics::TASK_EXIT_EVENT_TOPIC, &e);
        }
        for (conn, stream) in waiters {
            self.respond(conn, stream, encode(&wait_response(status, at)));
        }
    }

    fn on_oom(&mut self, cid: &str) {
        let Some(c) = self.containers.get_mut(cid) else { return };
        let Some((w, t)) = c.oom.as_mut() else { return };
        match w.read_events() {
            Ok(0) => {}
            Ok(_) => {
                let mut e = ev::TaskOOM::new();
                e.container_id = cid.to_string();
                self.publisher.publish(topics::TASK_OOM_EVENT_TOPIC, &e);
            }
            Err(err) => {
                log::debug!("{cid}: OOM watcher stopped: {err}");
                let t = *t;
                if let Some((w, _)) = c.oom.take() {
                    self.poller.remove(w.as_fd());
                }
                self.tokens.remove(&t);
            }
        }
    }

    fn pump(&mut self, cid: &str, eid: &str) {
        if let Some(r) =
            self.containers.get_mut(cid).and_then(|c| c.proc_mut(eid).ok()).and_then(|p| p.io.relay.as_mut())
        {
            r.pump();
        }
        self.sync_relay(cid, eid);
    }

    /// Brings the epoll registration of a process's relay in line with what it needs.
    fn sync_relay(&mut self, cid: &str, eid: &str) {
        let Some(p) = self.containers.get(cid).and_then(|c| c.proc(eid).ok()) else { return };
        let Some(r) = &p.io.relay else { return };
        let (mr, mw, ir, ow) = r.interest();
        let flag = |on: bool, f: EventFlags| if on { f } else { EventFlags::empty() };
        let [tm, ti, to] = p.tokens;
        let mut apply = |fd: &Option<OwnedFd>, t: u64, f: EventFlags| match fd {
            Some(fd) => self.poller.set(fd.as_fd(), t, f),
            None => self.poller.forget_token(t),
        };
        // A master with nothing left to do leaves the set: a hung-up terminal would otherwise
        // report EPOLLHUP forever.
        apply(&r.master, tm, flag(mr, EventFlags::IN) | flag(mw, EventFlags::OUT));
        apply(&r.input, ti, flag(ir, EventFlags::IN));
        apply(&r.output, to, flag(ow, EventFlags::OUT));
    }
}

fn wait_response(status: u32, at: SystemTime) -> api::WaitResponse {
    api::WaitResponse { exit_status: status, exited_at: Some(timestamp(at)).into(), ..Default::default() }
}

fn convert_mount(m: &Mount) -> containerd_shim_protos::types::mount::Mount {
    // The events package uses the same containerd.types.Mount message.
    m.clone()
}
