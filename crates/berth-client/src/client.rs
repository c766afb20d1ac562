//! [`Client`]: the engine-facing implementation of [`berth_core::Client`] on Linux.
//!
//! Locking: the container map is locked only to look up, insert or remove an entry; each
//! container's state has its own mutex, held only to read or update fields. No lock is held
//! while talking to a monitor, waiting for a process, or calling the engine's callbacks, so a
//! slow operation on one container (a delete waiting for a process to die, a freeze) never
//! holds up another container, and the engine's callbacks may call back into the client.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_core::{
    AttachStdio, Error, ErrorKind, EventInfo, EventQueue, EventSink, EventType, ProcessIo, Result, Status, Version,
};
use oci_spec::runtime::{Process, Spec};
use rustix::net::{AddressFamily, SocketFlags, SocketType};

use crate::conn::{Conn, Handler, Reactor};
use crate::helper::{monitor, zygote};
use crate::stdio::{Drain, InputWriter, OutputReader, StdinSlot};
use crate::types::{summary_of, CreateOptions, Resources, Stats, Summary};
use crate::wire::{self, Body, ExitInfo, HelperHello, HelperRequest, Request, StdioFlags, WireEvent, HELPER_ARG};

/// Which program runs the helper (and so the monitors).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Helper {
    /// `$BERTH_HELPER`, else `berth-monitor` next to the current executable (or one directory
    /// up, which covers cargo's `examples/` and `deps/`), else on `$PATH`.
    #[default]
    Auto,
    /// This binary (`berth-monitor` or anything that calls [`crate::run_helper_if_requested`]).
    Path(PathBuf),
    /// The current executable, which must call [`crate::run_helper_if_requested`] first thing
    /// in `main` (single-binary engines).
    CurrentExe,
}

/// Client configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// State root: one directory per container, plus the helper's socket, lock and log.
    pub root: PathBuf,
    /// The helper program.
    pub helper: Helper,
    /// How long an exit event waits for the engine's readers to reach end of file (see
    /// docs/embedding.md, "Output before exit").
    pub drain_timeout: Duration,
    /// Upper bound for one monitor operation (a delete waits up to 10 s for processes to die).
    pub op_timeout: Duration,
}

impl Config {
    /// Defaults with state root `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Config {
            root: root.into(),
            helper: Helper::Auto,
            drain_timeout: Duration::from_secs(2),
            op_timeout: Duration::from_secs(120),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::new("/run/berth-client")
    }
}

/// How long the stop helper waits after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Id reserved by a create or restore in progress; invisible to other calls.
    Reserved,
    Created,
    Running,
    Paused,
    Stopped,
    Deleting,
}

#[derive(Default)]
struct ProcIo {
    stdin: Option<Arc<StdinSlot>>,
    drain: Option<Arc<Drain>>,
}

struct CState {
    phase: Phase,
    pausing: bool,
    /// A `start` is between handing out stdio and starting the init.
    starting: bool,
    pid: u32,
    monitor_pid: u32,
    cgroup: Option<berth_cgroups::Cgroup>,
    /// VM isolation (docs/vm-isolation.md): its processes and statistics are the guest's.
    vm: bool,
    exit: Option<(u32, SystemTime)>,
    /// The monitor is gone (killed, crashed): the client cleans up with berth-linux directly.
    orphaned: bool,
    procs: HashMap<String, ProcIo>,
}

struct Shared {
    /// The state root (to act on a container with berth-linux when its monitor is gone).
    root: PathBuf,
    queue: EventQueue,
    sink: Arc<dyn EventSink>,
    drain_timeout: Duration,
}

struct Container {
    id: String,
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    state: Mutex<CState>,
    changed: Condvar,
}

/// A VM container's `ps`/stats failure: a stopped or paused container's is a conflict (its
/// guest cannot answer in that state), anything else a system error.
fn vm_error(id: &str, what: &str, e: berth_linux::Error) -> Error {
    match e {
        berth_linux::Error::WrongState(m) => Error::conflict(m),
        berth_linux::Error::NotFound(_) => Error::not_found(format!("no such container: {id}")),
        e => Error::wrap_system(format!("{what} {id}"), e),
    }
}

fn to_time(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

impl Container {
    fn new(id: &str, shared: &Arc<Shared>, conn: Arc<Conn>) -> Arc<Container> {
        Arc::new(Container {
            id: id.to_string(),
            shared: shared.clone(),
            conn,
            state: Mutex::new(CState {
                phase: Phase::Reserved,
                pausing: false,
                starting: false,
                pid: 0,
                monitor_pid: 0,
                cgroup: None,
                vm: false,
                exit: None,
                orphaned: false,
                procs: HashMap::new(),
            }),
            changed: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, CState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait_exit(&self, timeout: Option<Duration>) -> Option<(u32, SystemTime)> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.lock();
        loop {
            if let Some(x) = st.exit {
                return Some(x);
            }
            st = match deadline {
                None => self.changed.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return None;
                    }
                    self.changed.wait_timeout(st, d - now).unwrap_or_else(|p| p.into_inner()).0
                }
            };
        }
    }

    /// Queues an event for the engine. Exits wait (on the container's own delivery thread)
    /// for the process's output readers: see the module docs of `stdio`.
    fn publish(&self, kind: EventType, info: EventInfo, drain: Option<Arc<Drain>>) {
        if kind != EventType::Exit {
            self.shared.queue.publish(&self.shared.sink, kind, info);
            return;
        }
        let sink = self.shared.sink.clone();
        let grace = self.shared.drain_timeout;
        self.shared.queue.append(&self.id, move || {
            if let Some(d) = drain {
                if !d.wait(grace) {
                    log::info!(
                        "{} {}: output still open {grace:?} after the exit; delivering the exit",
                        info.container_id,
                        info.process_id
                    );
                }
            }
            if let Err(e) = sink.process_event(&info.container_id, kind, &info) {
                log::warn!("event sink failed for {} exit {}: {e}", info.container_id, info.process_id);
            }
        });
    }
}

impl Handler for Container {
    fn on_event(&self, ev: WireEvent) {
        let info = EventInfo {
            container_id: self.id.clone(),
            process_id: ev.process_id.clone(),
            pid: ev.pid,
            exit_code: ev.exit.map_or(0, |x| x.code),
            exited_at: ev.exit.map(|x| to_time(x.at_ns)),
            oom_killed: ev.oom_killed,
            error: ev.error.clone(),
        };
        let mut drain = None;
        {
            let mut st = self.lock();
            let live = !matches!(st.phase, Phase::Deleting | Phase::Stopped);
            match ev.kind {
                EventType::Start if live => st.phase = Phase::Running,
                EventType::Paused if live => st.phase = Phase::Paused,
                EventType::Resumed if live => st.phase = Phase::Running,
                EventType::Exit => {
                    if ev.process_id == self.id {
                        if st.phase != Phase::Deleting {
                            st.phase = Phase::Stopped;
                        }
                        st.exit = ev.exit.map(|x| (x.code, to_time(x.at_ns)));
                    }
                    drain = st.procs.remove(&ev.process_id).and_then(|p| p.drain);
                }
                _ => {}
            }
        }
        self.changed.notify_all();
        self.publish(ev.kind, info, drain);
    }

    fn on_close(&self, replaced: bool) {
        if replaced {
            // The container lives on under another client; calls here now fail as
            // unavailable (the connection is closed).
            log::info!("container {}: taken over by another client", self.id);
            return;
        }
        let (started, pid, drain) = {
            let mut st = self.lock();
            if matches!(st.phase, Phase::Deleting | Phase::Reserved) || st.exit.is_some() {
                return;
            }
            // The monitor died with the init's exit unreported. Report it as failed (code -1
            // with an error), never as a clean 0 (the upstream bug moby 8c52560ea4 fixed).
            // Nothing supervises the container any more: it is killed (the helper kills
            // every process of its cgroup too, also when no client is connected).
            if let Err(e) = berth_linux::container::kill(&self.shared.root, &self.id, libc::SIGKILL, false) {
                log::debug!("container {}: killing it after its monitor died: {e}", self.id);
            }
            let started = matches!(st.phase, Phase::Running | Phase::Paused);
            st.phase = Phase::Stopped;
            st.orphaned = true;
            st.exit = Some((u32::MAX, SystemTime::now()));
            let drain = st.procs.remove(&self.id).and_then(|p| p.drain);
            (started, st.pid, drain)
        };
        self.changed.notify_all();
        log::warn!("container {}: its monitor exited unexpectedly", self.id);
        if started {
            let mut info = EventInfo::new(&self.id, &self.id).pid(pid);
            info.exit_code = u32::MAX;
            info.exited_at = Some(SystemTime::now());
            info.error =
                Some("the container's monitor exited unexpectedly, so berth killed the container; its exit status is unknown".into());
            self.publish(EventType::Exit, info, drain);
        }
    }
}

struct HelperLink {
    fd: Option<OwnedFd>,
    pid: u32,
    /// Signalled when the helper this client started has been reaped.
    reaped: Option<mpsc::Receiver<()>>,
}

/// A libcontainerd-style client for Linux containers. See the crate docs.
pub struct Client {
    cfg: Config,
    shared: Arc<Shared>,
    reactor: Reactor,
    helper: Mutex<HelperLink>,
    containers: Mutex<HashMap<String, Arc<Container>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("root", &self.cfg.root).finish_non_exhaustive()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // Monitors (and so containers) keep running; a new client can restore them.
        self.reactor.stop();
        let idle = self.containers.get_mut().map(|m| m.is_empty()).unwrap_or(false);
        let link = self.helper.get_mut().unwrap_or_else(|p| p.into_inner());
        link.fd = None;
        // A helper we started and left without containers exits now; reap it before this
        // process possibly exits too (an orphan is left to whatever reaps orphans here).
        if let (true, Some(rx)) = (idle, link.reaped.take()) {
            let _ = rx.recv_timeout(Duration::from_secs(2));
        }
    }
}

fn io_err(what: impl std::fmt::Display, e: impl Into<std::io::Error>) -> Error {
    Error::wrap_system(what.to_string(), e.into())
}

/// Connects a `SOCK_SEQPACKET` socket to `dir/name`, going through `/proc/self/fd` when the
/// path is too long for a socket address.
fn connect_at(dir: &Path, name: &str) -> std::io::Result<OwnedFd> {
    let sock = rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?;
    let full = dir.join(name);
    let _dirfd;
    let addr = match rustix::net::SocketAddrUnix::new(&full) {
        Ok(a) => a,
        Err(_) => {
            let d = rustix::fs::open(
                dir,
                rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )?;
            let short = format!("/proc/self/fd/{}/{name}", std::os::fd::AsRawFd::as_raw_fd(&d));
            _dirfd = d;
            rustix::net::SocketAddrUnix::new(short.as_str())?
        }
    };
    rustix::net::connect(&sock, &addr)?;
    Ok(sock)
}

impl Client {
    /// Starts (or reconnects to) the helper for `config.root` and returns a client whose
    /// events go to `sink`.
    pub fn new(config: Config, sink: Arc<dyn EventSink>) -> Result<Client> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&config.root)
            .map_err(|e| io_err(format!("creating state root {}", config.root.display()), e))?;
        let root = fs::canonicalize(&config.root)
            .map_err(|e| io_err(format!("resolving state root {}", config.root.display()), e))?;
        let mut cfg = config;
        cfg.root = root.clone();
        let helper = connect_helper(&cfg)?;
        let reactor = Reactor::start()?;
        Ok(Client {
            shared: Arc::new(Shared {
                root: cfg.root.clone(),
                queue: EventQueue::new(),
                sink,
                drain_timeout: cfg.drain_timeout,
            }),
            cfg,
            reactor,
            helper: Mutex::new(helper),
            containers: Mutex::new(HashMap::new()),
        })
    }

    /// The state root.
    pub fn root(&self) -> &Path {
        &self.cfg.root
    }

    /// The helper's pid.
    pub fn helper_pid(&self) -> u32 {
        self.helper.lock().unwrap_or_else(|p| p.into_inner()).pid
    }

    /// The pid of the monitor process of container `id`.
    pub fn monitor_pid(&self, id: &str) -> Result<u32> {
        Ok(self.container(id)?.lock().monitor_pid)
    }

    /// Ids of the containers this client knows (created or restored, not deleted).
    pub fn containers(&self) -> Vec<String> {
        let map = self.containers.lock().unwrap_or_else(|p| p.into_inner());
        let mut ids: Vec<String> =
            map.iter().filter(|(_, c)| c.lock().phase != Phase::Reserved).map(|(k, _)| k.clone()).collect();
        ids.sort();
        ids
    }

    /// Ids of containers under the state root that have a live monitor (candidates for
    /// [`berth_core::Client::restore`] after an engine restart).
    pub fn restorable(&self) -> Vec<String> {
        let mut out = Vec::new();
        for id in berth_linux::state::list_ids(&self.cfg.root).unwrap_or_default() {
            if self.cfg.root.join(&id).join(monitor::SOCK).exists() {
                out.push(id);
            }
        }
        out
    }

    /// Waits until every event queued so far for container `id` has been handed to the sink
    /// (or `timeout` passes; returns false then). Works for deleted containers too: an
    /// engine can use it to make sure it saw everything before shutting down.
    pub fn flush_events(&self, id: &str, timeout: Duration) -> bool {
        self.shared.queue.wait_idle(id, timeout)
    }

    /// Waits until the init of `id` has exited (or `timeout` passes: `Ok(None)`). Returns its
    /// exit code and time. The exit is known when the monitor reported it; its event may still
    /// be waiting for output to drain.
    pub fn wait(&self, id: &str, timeout: Option<Duration>) -> Result<Option<(u32, SystemTime)>> {
        Ok(self.container(id)?.wait_exit(timeout))
    }

    /// Stops a container the way `docker stop` does: sends `signal` (thawing a paused
    /// container so it can act on it), waits up to `timeout` for the init to exit, then sends
    /// SIGKILL and waits again. Returns the exit code and time. `signal == SIGKILL` skips the
    /// first step.
    pub fn stop(&self, id: &str, signal: i32, timeout: Duration) -> Result<(u32, SystemTime)> {
        let c = self.container(id)?;
        if let Some(x) = c.lock().exit {
            return Ok(x);
        }
        let ignore_gone = |r: Result<()>| match r {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
        if signal != libc::SIGKILL {
            ignore_gone(berth_core::Client::signal_process(self, id, id, signal))?;
            if c.lock().phase == Phase::Paused {
                let _ = berth_core::Client::resume(self, id);
            }
            if let Some(x) = c.wait_exit(Some(timeout)) {
                return Ok(x);
            }
            log::info!("container {id} did not stop within {timeout:?} of signal {signal}; killing it");
        }
        ignore_gone(berth_core::Client::signal_process(self, id, id, libc::SIGKILL))?;
        c.wait_exit(Some(KILL_WAIT))
            .ok_or_else(|| Error::system(format!("container {id} did not exit within {KILL_WAIT:?} of SIGKILL")))
    }

    fn container(&self, id: &str) -> Result<Arc<Container>> {
        let map = self.containers.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(id) {
            Some(c) if c.lock().phase != Phase::Reserved => Ok(c.clone()),
            _ => Err(Error::not_found(format!("no such container: {id}"))),
        }
    }

    /// Reserves `id` (conflict if taken), with `conn` as its monitor connection.
    fn reserve(&self, id: &str, conn: Arc<Conn>) -> Result<Arc<Container>> {
        let mut map = self.containers.lock().unwrap_or_else(|p| p.into_inner());
        if map.contains_key(id) {
            return Err(Error::conflict(format!("container id {id} is already in use")));
        }
        let c = Container::new(id, &self.shared, conn);
        map.insert(id.to_string(), c.clone());
        Ok(c)
    }

    fn forget(&self, id: &str, c: &Arc<Container>) {
        let mut map = self.containers.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(id).is_some_and(|x| Arc::ptr_eq(x, c)) {
            map.remove(id);
        }
    }

    /// Asks the helper to fork a monitor for `id` serving `theirs`. Reconnects (restarting
    /// the helper if needed) once if the helper went away.
    fn spawn_monitor(&self, id: &str, theirs: &OwnedFd) -> Result<()> {
        let req = HelperRequest::Spawn { id: id.to_string() };
        let mut link = self.helper.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(fd) = &link.fd {
            match wire::send_json(fd.as_fd(), &req, &[theirs.as_fd()], false) {
                Ok(()) => return Ok(()),
                Err(e) => log::warn!("the berth helper went away ({e}); restarting it"),
            }
        }
        *link = connect_helper(&self.cfg)?;
        let fd = link.fd.as_ref().ok_or_else(|| Error::unavailable("no helper connection"))?;
        wire::send_json(fd.as_fd(), &req, &[theirs.as_fd()], false)
            .map_err(|e| Error::unavailable(format!("starting a monitor for {id}: the helper is not reachable: {e}")))
    }

    fn call(&self, c: &Container, req: Request) -> Result<(Body, Vec<OwnedFd>)> {
        c.conn.call(req, &[], self.cfg.op_timeout)
    }

    /// Builds the engine's handles from descriptors sent by the monitor, and the client's
    /// bookkeeping for them.
    fn build_io(
        &self,
        c: &Container,
        process_id: &str,
        flags: StdioFlags,
        fds: Vec<OwnedFd>,
    ) -> Result<(ProcessIo, ProcIo)> {
        let mut fds = fds.into_iter();
        let mut next = |what: &str| {
            fds.next().ok_or_else(|| Error::system(format!("{process_id}: the monitor did not send {what}")))
        };
        let mut io = ProcessIo { stdin: None, stdout: None, stderr: None, terminal: flags.terminal };
        let mut pio = ProcIo::default();
        if flags.terminal {
            let master = next("the terminal")?;
            let drain = Drain::new(1);
            if flags.stdin {
                let w = wire::dup(&master).map_err(|e| io_err("duplicating the terminal", e))?;
                let slot = StdinSlot::new(w);
                io.stdin = Some(Box::new(InputWriter::new(slot.clone(), &c.conn, process_id)));
                pio.stdin = Some(slot);
            }
            io.stdout = Some(Box::new(OutputReader::new(master, drain.clone(), true)));
            pio.drain = Some(drain);
            return Ok((io, pio));
        }
        let stdin = if flags.stdin { Some(next("stdin")?) } else { None };
        let stdout = if flags.stdout { Some(next("stdout")?) } else { None };
        let stderr = if flags.stderr { Some(next("stderr")?) } else { None };
        let drain = Drain::new(usize::from(stdout.is_some()) + usize::from(stderr.is_some()));
        if let Some(w) = stdin {
            let slot = StdinSlot::new(w);
            io.stdin = Some(Box::new(InputWriter::new(slot.clone(), &c.conn, process_id)));
            pio.stdin = Some(slot);
        }
        io.stdout =
            stdout.map(|f| Box::new(OutputReader::new(f, drain.clone(), false)) as Box<dyn std::io::Read + Send>);
        io.stderr =
            stderr.map(|f| Box::new(OutputReader::new(f, drain.clone(), false)) as Box<dyn std::io::Read + Send>);
        pio.drain = Some(drain);
        Ok((io, pio))
    }

    fn bundle_for(spec: &Spec, options: Option<&CreateOptions>) -> Result<PathBuf> {
        if let Some(b) = options.and_then(|o| o.bundle.as_ref()) {
            let b = if b.is_absolute() {
                b.clone()
            } else {
                std::env::current_dir().map_err(|e| io_err("getcwd", e))?.join(b)
            };
            return Ok(b);
        }
        let root = spec.root().as_ref().ok_or_else(|| Error::invalid_parameter("root: must be set"))?;
        if !root.path().is_absolute() {
            return Err(Error::invalid_parameter(format!(
                "root.path {:?} is relative: give CreateOptions::bundle",
                root.path()
            )));
        }
        Ok(root.path().parent().unwrap_or(Path::new("/")).to_path_buf())
    }

    fn restore_orphan(&self, c: &Arc<Container>, id: &str) -> Result<(bool, Option<u32>)> {
        let st = berth_linux::state::ContainerState::load(&self.cfg.root, id).map_err(|e| match e {
            berth_linux::Error::NotFound(_) => Error::not_found(format!("no such container: {id}")),
            e => Error::wrap_system(format!("restore {id}"), e),
        })?;
        // Its monitor is gone, so nothing can supervise it any more: it is stopped for good.
        if st.init_alive() {
            let _ = berth_linux::container::kill(&self.cfg.root, id, libc::SIGKILL, false);
        }
        let pid = u32::try_from(st.pid).unwrap_or(0);
        {
            let mut s = c.lock();
            s.phase = Phase::Stopped;
            s.orphaned = true;
            s.pid = pid;
            s.cgroup = st.cgroup.clone();
            s.vm = berth_linux::vm::is_vm(&st.spec);
            s.exit = Some((u32::MAX, SystemTime::now()));
        }
        let mut info = EventInfo::new(id, id).pid(pid);
        info.exit_code = u32::MAX;
        info.exited_at = Some(SystemTime::now());
        info.error =
            Some("the container's monitor is gone, so berth killed the container; its exit status is unknown".into());
        c.publish(EventType::Exit, info, None);
        Ok((false, Some(pid)))
    }
}

fn helper_program(cfg: &Config) -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| io_err("locating the current executable", e));
    match &cfg.helper {
        Helper::Path(p) => return Ok(p.clone()),
        Helper::CurrentExe => return exe,
        Helper::Auto => {}
    }
    if let Some(p) = std::env::var_os("BERTH_HELPER") {
        return Ok(PathBuf::from(p));
    }
    if let Ok(exe) = exe {
        for dir in exe.ancestors().skip(1).take(2) {
            let cand = dir.join("berth-monitor");
            if cand.is_file() {
                return Ok(cand);
            }
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let cand = dir.join("berth-monitor");
            if cand.is_file() {
                return Ok(cand);
            }
        }
    }
    Err(Error::unavailable(
        "berth-monitor not found (set BERTH_HELPER, install it next to the engine or on $PATH, or use Helper::CurrentExe)",
    ))
}

fn try_connect(root: &Path) -> std::io::Result<HelperLink> {
    let fd = connect_at(root, zygote::SOCK)?;
    rustix::net::sockopt::set_socket_timeout(&fd, rustix::net::sockopt::Timeout::Recv, Some(Duration::from_secs(5)))?;
    let (data, _) = wire::recv_packet(fd.as_fd(), false)?
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::ConnectionReset, "the helper is exiting"))?;
    let hello: HelperHello =
        serde_json::from_slice(&data).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    rustix::net::sockopt::set_socket_timeout(&fd, rustix::net::sockopt::Timeout::Recv, None)?;
    Ok(HelperLink { fd: Some(fd), pid: hello.pid, reaped: None })
}

/// Connects to the root's helper, starting one if none runs.
fn connect_helper(cfg: &Config) -> Result<HelperLink> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut reaped = None;
    loop {
        let last = match try_connect(&cfg.root) {
            Ok(mut link) => {
                link.reaped = reaped;
                return Ok(link);
            }
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            return Err(Error::unavailable(format!(
                "cannot reach the berth helper for {} ({last}); see {}",
                cfg.root.display(),
                cfg.root.join(".berth-helper.log").display()
            )));
        }
        let (line, rx) = spawn_helper(cfg)?;
        match line.as_str() {
            "ready" => reaped = Some(rx),
            "busy" => std::thread::sleep(Duration::from_millis(5)),
            other => {
                return Err(Error::unavailable(format!(
                    "the berth helper failed to start: {other}; see {}",
                    cfg.root.join(".berth-helper.log").display()
                )))
            }
        }
    }
}

/// Starts a helper process and returns its first line (`ready`, `busy`, or an error), and
/// a channel signalled once the helper has been reaped.
fn spawn_helper(cfg: &Config) -> Result<(String, mpsc::Receiver<()>)> {
    let prog = helper_program(cfg)?;
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(cfg.root.join(".berth-helper.log"))
        .map_err(|e| io_err("opening the helper log", e))?;
    let mut cmd = Command::new(&prog);
    cmd.arg(HELPER_ARG)
        .arg(&cfg.root)
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH")
                .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()),
        )
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        // Out of the engine's process group: a Ctrl-C meant for the engine must not take
        // the containers' supervisors down.
        .process_group(0);
    if let Some(v) = std::env::var_os("BERTH_LOG") {
        cmd.env("BERTH_LOG", v);
    }
    let mut child = cmd.spawn().map_err(|e| Error::unavailable(format!("starting {}: {e}", prog.display())))?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    // The helper is our child until we exit: reap it whenever it ends.
    let (tx, rx) = mpsc::channel();
    let reaper = std::thread::Builder::new().name("berth-helper-reaper".into()).spawn(move || {
        let _ = child.wait();
        let _ = tx.send(());
    });
    if let Err(e) = reaper {
        log::warn!("cannot start a thread to reap the berth helper: {e}");
    }
    let line = line.trim().to_string();
    Ok((if line.is_empty() { "exited without reporting readiness".to_string() } else { line }, rx))
}

impl berth_core::Client for Client {
    type Stats = Stats;
    type Summary = Summary;
    type Resources = Resources;
    type CreateOptions = CreateOptions;

    fn version(&self) -> Result<Version> {
        Ok(Version {
            version: env!("CARGO_PKG_VERSION").to_string(),
            revision: option_env!("BERTH_REVISION").unwrap_or("unknown").to_string(),
        })
    }

    fn restore(&self, id: &str, attach: AttachStdio<'_>) -> Result<(bool, Option<u32>)> {
        berth_core::state::validate_id(id).map_err(Error::invalid_parameter)?;
        let dir = berth_linux::state::dir(&self.cfg.root, id);
        let fd = match connect_at(&dir, monitor::SOCK) {
            Ok(fd) => Some(fd),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ECONNREFUSED)) => None,
            Err(e) => return Err(io_err(format!("restore {id}: connecting to its monitor"), e)),
        };
        let Some(fd) = fd else {
            let c = self.reserve(id, Arc::new(Conn::detached()))?;
            return match self.restore_orphan(&c, id) {
                Ok(r) => Ok(r),
                Err(e) => {
                    self.forget(id, &c);
                    Err(e)
                }
            };
        };
        let conn = Conn::new(fd);
        let c = self.reserve(id, conn.clone())?;
        self.reactor.register(conn, c.clone());
        let result = (|| -> Result<(bool, Option<u32>)> {
            let (body, fds) = self.call(&c, Request::Attach)?;
            let status = body.status.unwrap_or(Status::Unknown);
            let pid = body.pid.unwrap_or(0);
            let alive = matches!(status, Status::Created | Status::Running | Status::Paused);
            let mut pio = None;
            if let (true, Some(flags)) = (matches!(status, Status::Running | Status::Paused), body.stdio) {
                let (io, p) = self.build_io(&c, id, flags, fds)?;
                attach(io)?;
                pio = Some(p);
            }
            {
                let mut st = c.lock();
                st.pid = pid;
                st.monitor_pid = body.monitor_pid.unwrap_or(0);
                st.cgroup = body.cgroup.clone();
                st.vm = berth_linux::state::ContainerState::load(&self.cfg.root, id)
                    .is_ok_and(|s| berth_linux::vm::is_vm(&s.spec));
                st.exit = body.exit.map(|x: ExitInfo| (x.code, to_time(x.at_ns)));
                st.phase = match status {
                    Status::Created => Phase::Created,
                    Status::Running => Phase::Running,
                    Status::Paused | Status::Pausing => Phase::Paused,
                    Status::Stopped | Status::Unknown => Phase::Stopped,
                };
                if let Some(p) = pio {
                    st.procs.insert(id.to_string(), p);
                }
            }
            c.changed.notify_all();
            // Exits that happened while no engine listened arrive (in order) before this answer.
            self.call(&c, Request::Flush)?;
            Ok((alive, Some(pid)))
        })();
        if result.is_err() {
            // The monitor keeps the container; a later restore can try again.
            self.forget(id, &c);
            c.conn.shutdown("restore failed");
            self.reactor.unregister(&c.conn);
        }
        result
    }

    fn create(&self, id: &str, spec: &Spec, options: Option<&CreateOptions>) -> Result<()> {
        berth_core::state::validate_id(id).map_err(Error::invalid_parameter)?;
        let bundle = Self::bundle_for(spec, options)?;
        let json = serde_json::to_string(spec).map_err(|e| Error::invalid_parameter(format!("spec: {e}")))?;
        let (mine, theirs) = wire::seqpacket_pair().map_err(|e| io_err("creating a monitor connection", e))?;
        let conn = Conn::new(mine);
        let c = self.reserve(id, conn.clone())?;
        self.reactor.register(conn, c.clone());
        let result = (|| -> Result<Body> {
            let theirs = theirs;
            if self.cfg.root.join(id).exists() {
                return Err(Error::conflict(format!("container id {id} is already in use (state directory exists)")));
            }
            self.spawn_monitor(id, &theirs)?;
            drop(theirs);
            let no_pivot = options.is_some_and(|o| o.no_pivot);
            let (spec, memfd) = if json.len() > wire::INLINE_LIMIT {
                (None, Some(wire::memfd_with(json.as_bytes()).map_err(|e| io_err("passing the spec", e))?))
            } else {
                let raw = serde_json::value::RawValue::from_string(json)
                    .map_err(|e| Error::invalid_parameter(format!("spec: {e}")))?;
                (Some(raw), None)
            };
            let fds: Vec<_> = memfd.iter().map(|f| f.as_fd()).collect();
            let (body, _) = c.conn.call(Request::Create { spec, bundle, no_pivot }, &fds, self.cfg.op_timeout)?;
            Ok(body)
        })();
        match result {
            Ok(body) => {
                {
                    let mut st = c.lock();
                    st.pid = body.pid.unwrap_or(0);
                    st.monitor_pid = body.monitor_pid.unwrap_or(0);
                    st.cgroup = body.cgroup;
                    st.vm = berth_linux::vm::is_vm(spec);
                    st.phase = Phase::Created;
                }
                c.changed.notify_all();
                Ok(())
            }
            Err(e) => {
                // The monitor exits by itself after a failed create (and launch cleaned up).
                self.forget(id, &c);
                c.conn.shutdown("create failed");
                self.reactor.unregister(&c.conn);
                Err(e)
            }
        }
    }

    fn start(&self, id: &str, checkpoint_dir: Option<&Path>, with_stdin: bool, attach: AttachStdio<'_>) -> Result<u32> {
        if let Some(d) = checkpoint_dir {
            return Err(Error::not_implemented(format!(
                "start from checkpoint {}: checkpoint/restore is not supported",
                d.display()
            )));
        }
        let c = self.container(id)?;
        {
            let mut st = c.lock();
            if st.starting {
                return Err(Error::conflict(format!("container {id} is being started")));
            }
            st.starting = true;
        }
        let result = (|| {
            let (body, fds) = self.call(&c, Request::InitStdio { with_stdin })?;
            let flags = body.stdio.unwrap_or_default();
            let (io, pio) = self.build_io(&c, id, flags, fds)?;
            // The engine attaches before the process runs; if it fails nothing was started.
            attach(io)?;
            c.lock().procs.insert(id.to_string(), pio);
            match self.call(&c, Request::Start { with_stdin }) {
                Ok((body, _)) => Ok(body.pid.unwrap_or(0)),
                Err(e) => {
                    c.lock().procs.remove(id);
                    // A failing poststart hook stops the container, which no event reports (it
                    // never started): take the monitor's word for the phase.
                    if let Ok((body, _)) = self.call(&c, Request::Attach) {
                        if body.status == Some(Status::Stopped) {
                            let mut st = c.lock();
                            st.phase = Phase::Stopped;
                            st.exit = body.exit.map(|x: ExitInfo| (x.code, to_time(x.at_ns)));
                            drop(st);
                            c.changed.notify_all();
                        }
                    }
                    Err(e)
                }
            }
        })();
        c.lock().starting = false;
        result
    }

    fn signal_process(&self, id: &str, process_id: &str, signal: i32) -> Result<()> {
        let c = self.container(id)?;
        if c.lock().orphaned {
            return Err(Error::not_found(format!("container {id}: process {process_id} is not running")));
        }
        self.call(&c, Request::Signal { process_id: process_id.to_string(), signal }).map(drop)
    }

    fn exec(
        &self,
        id: &str,
        process_id: &str,
        spec: &Process,
        with_stdin: bool,
        attach: AttachStdio<'_>,
    ) -> Result<u32> {
        let c = self.container(id)?;
        let req = Request::Exec { exec_id: process_id.to_string(), process: Box::new(spec.clone()), with_stdin };
        let (body, fds) = self.call(&c, req)?;
        let pid = body.pid.unwrap_or(0);
        let abort = |e: Error| -> Error {
            c.lock().procs.remove(process_id);
            if let Err(a) = self.call(&c, Request::Abort { exec_id: process_id.to_string() }) {
                log::warn!("container {id}: aborting exec {process_id}: {a}");
            }
            e
        };
        let (io, pio) = self.build_io(&c, process_id, body.stdio.unwrap_or_default(), fds).map_err(abort)?;
        c.lock().procs.insert(process_id.to_string(), pio);
        attach(io).map_err(abort)?;
        match self.call(&c, Request::Commit { exec_id: process_id.to_string() }) {
            Ok(_) => Ok(pid),
            Err(e) => {
                c.lock().procs.remove(process_id);
                Err(e)
            }
        }
    }

    fn resize_terminal(&self, id: &str, process_id: &str, width: u32, height: u32) -> Result<()> {
        let (w, h) = match (u16::try_from(width), u16::try_from(height)) {
            (Ok(w), Ok(h)) => (w, h),
            _ => return Err(Error::invalid_parameter(format!("terminal size {width}x{height}: out of range"))),
        };
        let c = self.container(id)?;
        self.call(&c, Request::Resize { process_id: process_id.to_string(), width: w, height: h }).map(drop)
    }

    fn close_stdin(&self, id: &str, process_id: &str) -> Result<()> {
        let c = self.container(id)?;
        let key = if process_id == berth_core::INIT_PROCESS_NAME { id } else { process_id };
        if let Some(slot) = c.lock().procs.get(key).and_then(|p| p.stdin.clone()) {
            slot.close();
        }
        self.call(&c, Request::CloseStdin { process_id: process_id.to_string() }).map(drop)
    }

    fn pause(&self, id: &str) -> Result<()> {
        let c = self.container(id)?;
        c.lock().pausing = true;
        let r = self.call(&c, Request::Pause);
        c.lock().pausing = false;
        r.map(drop)
    }

    fn resume(&self, id: &str) -> Result<()> {
        let c = self.container(id)?;
        self.call(&c, Request::Resume).map(drop)
    }

    fn stats(&self, id: &str) -> Result<Stats> {
        if let Some(st) = self.vm_state(id)? {
            let read = SystemTime::now();
            let metrics = berth_linux::vm::stats(&self.cfg.root, &st).map_err(|e| vm_error(id, "stats of", e))?;
            return Ok(Stats { read, metrics });
        }
        let cg = self.cgroup_of(id)?;
        let read = SystemTime::now();
        let metrics = cg.stats().map_err(|e| Error::wrap_system(format!("stats of {id}"), e))?;
        Ok(Stats { read, metrics })
    }

    fn list_pids(&self, id: &str) -> Result<Vec<u32>> {
        if let Some(st) = self.vm_state(id)? {
            let procs = berth_linux::vm::processes(&self.cfg.root, &st)
                .map_err(|e| vm_error(id, "listing the processes of", e))?;
            return Ok(procs.into_iter().filter_map(|p| u32::try_from(p.pid).ok()).collect());
        }
        let cg = self.cgroup_of(id)?;
        let mut pids: Vec<u32> = cg
            .pids()
            .map_err(|e| Error::wrap_system(format!("listing the processes of {id}"), e))?
            .into_iter()
            .filter_map(|p| u32::try_from(p).ok())
            .collect();
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    fn summary(&self, id: &str) -> Result<Vec<Summary>> {
        if let Some(st) = self.vm_state(id)? {
            let procs = berth_linux::vm::processes(&self.cfg.root, &st)
                .map_err(|e| vm_error(id, "listing the processes of", e))?;
            return Ok(procs.into_iter().map(Summary::from).collect());
        }
        Ok(self.list_pids(id)?.into_iter().filter_map(summary_of).collect())
    }

    fn delete_task(&self, id: &str) -> Result<(u32, SystemTime)> {
        let c = self.container(id)?;
        if c.lock().orphaned {
            return c.lock().exit.ok_or_else(|| Error::conflict(format!("container {id} is not stopped")));
        }
        let (body, _) = self.call(&c, Request::DeleteTask)?;
        let x = body.exit.ok_or_else(|| Error::system(format!("delete task {id}: the monitor sent no exit status")))?;
        Ok((x.code, to_time(x.at_ns)))
    }

    fn delete(&self, id: &str) -> Result<()> {
        let c = self.container(id)?;
        let (prev, orphaned) = {
            let mut st = c.lock();
            if st.phase == Phase::Deleting {
                return Err(Error::conflict(format!("container {id} is already being deleted")));
            }
            let prev = st.phase;
            st.phase = Phase::Deleting;
            (prev, st.orphaned)
        };
        let result = if orphaned {
            match berth_linux::container::delete(&self.cfg.root, id, true) {
                Ok(()) | Err(berth_linux::Error::NotFound(_)) => Ok(()),
                Err(e) => Err(Error::wrap_system(format!("delete {id}"), e)),
            }
        } else {
            self.call(&c, Request::Delete).map(drop)
        };
        match result {
            Ok(()) => {
                // The monitor exits by itself (the helper reaps it); our end closes now, so
                // no descriptor outlives the call.
                c.conn.shutdown("deleted");
                self.reactor.unregister(&c.conn);
                self.forget(id, &c);
                Ok(())
            }
            Err(e) => {
                let mut st = c.lock();
                st.phase = if st.exit.is_some() { Phase::Stopped } else { prev };
                drop(st);
                c.changed.notify_all();
                Err(e)
            }
        }
    }

    fn status(&self, id: &str) -> Result<Status> {
        let c = self.container(id)?;
        let st = c.lock();
        Ok(match st.phase {
            Phase::Reserved => Status::Unknown,
            Phase::Created => Status::Created,
            Phase::Running if st.pausing => Status::Pausing,
            Phase::Running => Status::Running,
            Phase::Paused => Status::Paused,
            Phase::Stopped | Phase::Deleting => Status::Stopped,
        })
    }

    fn update_resources(&self, id: &str, resources: &Resources) -> Result<()> {
        let c = self.container(id)?;
        if c.lock().phase == Phase::Stopped {
            return Err(Error::conflict(format!("container {id} is stopped")));
        }
        let cg = self.cgroup_of(id)?;
        cg.update(&berth_linux::resources::for_update(resources)).map_err(|e| {
            let kind = match &e {
                berth_cgroups::CgroupError::Invalid { .. } | berth_cgroups::CgroupError::Unsupported { .. } => {
                    ErrorKind::InvalidParameter
                }
                _ => ErrorKind::System,
            };
            Error::with_source(kind, format!("update {id}"), e)
        })
    }

    fn create_checkpoint(&self, id: &str, checkpoint_dir: &Path, _exit: bool) -> Result<()> {
        self.container(id)?;
        Err(Error::not_implemented(format!(
            "checkpoint of {id} into {}: checkpoint/restore (CRIU) is not supported by berth",
            checkpoint_dir.display()
        )))
    }
}

impl Client {
    /// The saved state of a VM container (whose processes and statistics are asked of its
    /// guest); `None` for a native one.
    fn vm_state(&self, id: &str) -> Result<Option<berth_linux::state::ContainerState>> {
        let c = self.container(id)?;
        if !c.lock().vm {
            return Ok(None);
        }
        berth_linux::state::ContainerState::load(&self.cfg.root, id)
            .map(Some)
            .map_err(|e| vm_error(id, "the state of", e))
    }

    fn cgroup_of(&self, id: &str) -> Result<berth_cgroups::Cgroup> {
        let c = self.container(id)?;
        let cg = c.lock().cgroup.clone();
        cg.ok_or_else(|| Error::system(format!("container {id} has no cgroup")))
    }
}
