//! The Windows "local client": [`berth_core::Client`] over HCS, the original's
//! `client_local_windows.go`, with its later upstream fixes.
//!
//! Lifecycle as in the original: `create` creates **and starts** the compute system (status
//! created) and queues `create`; `start` creates the init process in it; the init's exit
//! shuts the system down (escalating to terminate) and closes it; `delete` removes the record
//! (shutting a never-started system down first).
//!
//! Fixes over the seed, each pinned by a test:
//!
//! * no client-wide lock is held across an HCS call: ids are reserved in the map, slow work
//!   happens outside it, and each container has its own state lock;
//! * a failed post-exit shutdown or close reports exit code -1 (`u32::MAX`) with the failure in
//!   [`EventInfo::error`], instead of a silent 0 (moby 8c52560ea4);
//! * after `SIGKILL` terminated the system, the post-exit path does not issue a shutdown, it
//!   only waits (moby 5cfededc7c);
//! * if the init cannot be created, the system is shut down and closed and the init is reported
//!   exited with 127 (moby 32acc76b1a); `create` is reported for Windows containers too;
//! * a failed stdio attach kills, waits and closes the new process (moby afa3aec024);
//! * a process's reaper starts only after its start/exec-started event is queued, and every
//!   exec exit is queued before the init exit (moby 4bafaa00aa, containerd#9719);
//! * exec, signal, resize, stats, pause... on a container whose init exited fail with
//!   not-found instead of reaching a dead system;
//! * starting a started container is not-modified (moby c030885e7a);
//! * closing stdin always sends CloseStdin to HCS (hcsshim #1899).
//!
//! Windows Update servicing containers (`windows.servicing`) were removed upstream
//! (d4f37c0885) and are refused; the flag still translates into the documents.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use berth_core::{
    AttachStdio, Client, Error, EventInfo, EventQueue, EventSink, EventType, ProcessIo, Result, Status, StdinWriter,
    Version, INIT_PROCESS_NAME,
};
use berth_hcs_schema::{ProcessListItem, Statistics};
use oci_spec::runtime::{Process as OciProcess, Spec};

use crate::guid::NameToGuid;
use crate::hcs::{self, ComputeSystem, HcsApi, HcsError, VmcomputeNameToGuid};
use crate::host::{HostInfo, RealHost};
use crate::lcow::LcowConfig;
use crate::translate::{exec_process_config, init_process_config, translate_container, TranslateContext};

/// Exit code reported when the init process could not be created ("command not found").
pub const EXIT_CODE_INIT_NOT_CREATED: u32 = 127;
/// Exit code reported when an exit code could not be obtained or teardown failed (Go's -1).
pub const EXIT_CODE_UNKNOWN: u32 = u32::MAX;
/// `SIGKILL`: the one signal that terminates instead of shutting down.
const SIGKILL: i32 = 9;
/// `ERROR_BROKEN_PIPE`: a process wait that ended this way is not worth a warning.
const ERROR_BROKEN_PIPE: u32 = 109;

/// Platform options of `create` (the original's `runtimeOptions`).
#[derive(Debug, Clone, Default)]
pub struct HcsCreateOptions {
    /// Utility VM options; required for Linux containers.
    pub lcow: Option<LcowConfig>,
    /// `windows.credentialSpec` in its string form (see [`crate::translate::parse_spec`]).
    pub credential_spec: Option<String>,
}

/// How long the client waits for HCS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Create and start of a compute system; pause and resume (hcsshim: 4 minutes).
    pub create: Duration,
    /// Waiting for a shutdown (original: 5 minutes).
    pub shutdown: Duration,
    /// Waiting for a terminate (original: 5 minutes).
    pub terminate: Duration,
    /// Waiting for the terminate of a leftover system in `restore` (original: 2 minutes).
    pub restore_terminate: Duration,
    /// After the system is down, how long exec exits may take to arrive before their waits
    /// are abandoned (they are then reported with exit code -1).
    pub exec_drain: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            create: hcs::DEFAULT_TIMEOUT,
            shutdown: Duration::from_secs(5 * 60),
            terminate: Duration::from_secs(5 * 60),
            restore_terminate: Duration::from_secs(2 * 60),
            exec_drain: Duration::from_secs(30),
        }
    }
}

/// `stats` result: when it was read, and what HCS returned.
#[derive(Debug, Clone)]
pub struct HcsStats {
    /// Taken just before asking HCS.
    pub read: SystemTime,
    /// HCS statistics.
    pub hcs: Statistics,
}

struct Proc {
    id: String,
    pid: u32,
    hcs: Arc<hcs::Process>,
}

enum ExecSlot {
    /// Id reserved; the process is being created.
    Starting,
    Running(Arc<Proc>),
}

#[derive(Default)]
struct CtrState {
    status: Option<Status>,
    starting: bool,
    init: Option<Arc<Proc>>,
    init_exited: bool,
    execs: HashMap<String, ExecSlot>,
    /// Execs reserved or running whose exit has not been queued yet.
    live_execs: usize,
    exit: Option<(u32, SystemTime)>,
    terminate_invoked: bool,
    /// The init reaper finished (system shut down and closed).
    reaped: bool,
    deleting: bool,
}

struct Container {
    id: String,
    spec: Spec,
    is_windows: bool,
    hyperv: bool,
    system: ComputeSystem,
    /// Serialises "decide and issue shutdown" against "mark and issue terminate".
    lifecycle: Mutex<()>,
    state: Mutex<CtrState>,
    cv: Condvar,
}

impl Container {
    fn lock(&self) -> MutexGuard<'_, CtrState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn wait<'a>(&self, g: MutexGuard<'a, CtrState>) -> MutexGuard<'a, CtrState> {
        self.cv.wait(g).unwrap_or_else(|p| p.into_inner())
    }
}

enum Slot {
    Reserved,
    Ready(Arc<Container>),
}

struct Inner {
    api: Arc<HcsApi>,
    sink: Arc<dyn EventSink>,
    queue: EventQueue,
    name_to_guid: Arc<dyn NameToGuid>,
    host: Arc<dyn HostInfo>,
    timeouts: Timeouts,
    containers: Mutex<HashMap<String, Slot>>,
}

/// The HCS backend of the embedding API.
pub struct HcsClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HcsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HcsClient").field("api", &self.inner.api).finish()
    }
}

enum Target {
    Init(Arc<Proc>),
    Exec(Arc<Proc>),
}

impl HcsClient {
    /// A client over `api` delivering events to `sink`; layer ids come from the library's
    /// `NameToGuid`, host facts from this machine.
    pub fn new(api: Arc<HcsApi>, sink: Arc<dyn EventSink>) -> Self {
        let name_to_guid: Arc<dyn NameToGuid> = Arc::new(VmcomputeNameToGuid(api.clone()));
        HcsClient {
            inner: Arc::new(Inner {
                api,
                sink,
                queue: EventQueue::new(),
                name_to_guid,
                host: Arc::new(RealHost),
                timeouts: Timeouts::default(),
                containers: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A client over the host's HCS (`vmcompute.dll`); fails with class unavailable off
    /// Windows.
    pub fn new_default(sink: Arc<dyn EventSink>) -> Result<Self> {
        Ok(Self::new(HcsApi::load_default()?, sink))
    }

    fn rebuild(self, f: impl FnOnce(&mut Inner)) -> Self {
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                f(&mut inner);
                HcsClient { inner: Arc::new(inner) }
            }
            Err(inner) => HcsClient { inner },
        }
    }

    /// Replaces the layer id source (before any container exists).
    pub fn with_name_to_guid(self, n: Arc<dyn NameToGuid>) -> Self {
        self.rebuild(|i| i.name_to_guid = n)
    }

    /// Replaces the host facts (before any container exists).
    pub fn with_host(self, h: Arc<dyn HostInfo>) -> Self {
        self.rebuild(|i| i.host = h)
    }

    /// Replaces the timeouts (before any container exists).
    pub fn with_timeouts(self, t: Timeouts) -> Self {
        self.rebuild(|i| i.timeouts = t)
    }

    /// Waits until every event queued so far for `id` has been delivered (for tests and
    /// orderly shutdown). Returns false on timeout.
    pub fn wait_events_delivered(&self, id: &str, timeout: Duration) -> bool {
        self.inner.queue.wait_idle(id, timeout)
    }
}

impl Inner {
    fn map(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.containers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, id: &str) -> Result<Arc<Container>> {
        match self.map().get(id) {
            Some(Slot::Ready(c)) => Ok(c.clone()),
            _ => Err(Error::not_found("no such container")),
        }
    }

    fn publish(&self, event: EventType, info: EventInfo) {
        self.queue.publish(&self.sink, event, info);
    }

    fn get_process(&self, id: &str, process_id: &str) -> Result<(Arc<Container>, Target)> {
        let ctr = self.get(id)?;
        let st = ctr.lock();
        let Some(init) = st.init.clone() else {
            return Err(Error::not_found("container is not running"));
        };
        if process_id == INIT_PROCESS_NAME || process_id == id {
            if st.init_exited {
                return Err(Error::not_found("container is not running"));
            }
            drop(st);
            return Ok((ctr, Target::Init(init)));
        }
        match st.execs.get(process_id) {
            Some(ExecSlot::Running(p)) => {
                let p = p.clone();
                drop(st);
                Ok((ctr, Target::Exec(p)))
            }
            _ => Err(Error::not_found("no such exec")),
        }
    }

    fn running_init(&self, id: &str) -> Result<Arc<Container>> {
        self.get_process(id, INIT_PROCESS_NAME).map(|(c, _)| c)
    }

    /// Pause (`true`) or resume a Hyper-V container; the event goes out unless it stopped
    /// meanwhile.
    fn set_paused(&self, id: &str, pause: bool) -> Result<()> {
        let ctr = self.running_init(id)?;
        if !ctr.hyperv {
            let verb = if pause { "pause" } else { "resume" };
            return Err(Error::not_implemented(format!("cannot {verb} Windows Server Containers")));
        }
        if pause {
            ctr.system.pause(self.timeouts.create)?;
        } else {
            ctr.system.resume(self.timeouts.create)?;
        }
        let mut st = ctr.lock();
        if st.status != Some(Status::Stopped) {
            let (status, event) =
                if pause { (Status::Paused, EventType::Paused) } else { (Status::Running, EventType::Resumed) };
            st.status = Some(status);
            self.publish(event, EventInfo::new(id, INIT_PROCESS_NAME));
        }
        Ok(())
    }

    /// Terminate, waiting if it is pending; "already stopped" is success.
    fn terminate_container(&self, ctr: &Container) -> std::result::Result<(), HcsError> {
        let issued = {
            let _l = ctr.lifecycle.lock().unwrap_or_else(|p| p.into_inner());
            ctr.lock().terminate_invoked = true;
            ctr.system.terminate()
        };
        match issued {
            Err(e) if e.is_pending() => ctr.system.wait_timeout(self.timeouts.terminate),
            Err(e) if e.is_already_stopped() => Ok(()),
            r => r,
        }
    }

    /// Shutdown escalating to terminate. Returns the shutdown failure even when the
    /// terminate fallback worked, so the caller reports it (moby 8c52560ea4). After an
    /// explicit terminate it only waits (moby 5cfededc7c).
    fn shutdown_container(&self, ctr: &Container) -> std::result::Result<(), String> {
        let issued = {
            let _l = ctr.lifecycle.lock().unwrap_or_else(|p| p.into_inner());
            if ctr.lock().terminate_invoked {
                None
            } else {
                Some(ctr.system.shutdown())
            }
        };
        let res = match issued {
            None => ctr.system.wait_timeout(self.timeouts.shutdown),
            Some(Err(e)) if e.is_pending() => ctr.system.wait_timeout(self.timeouts.shutdown),
            Some(Err(e)) if e.is_already_stopped() => Ok(()),
            Some(r) => r,
        };
        match res {
            Ok(()) => Ok(()),
            Err(e) => {
                log::debug!("failed to shutdown container {}, terminating it: {e}", ctr.id);
                match self.terminate_container(ctr) {
                    Ok(()) => Err(e.to_string()),
                    Err(t) => Err(format!("{e}; terminate: {t}")),
                }
            }
        }
    }

    /// Marks the init exited, tears the system down, waits for exec exits, and queues the
    /// init's exit.
    fn reap_init(&self, ctr: &Arc<Container>, pid: u32, code: u32, at: SystemTime, mut errs: Vec<String>) {
        let mut code = code;
        {
            let mut st = ctr.lock();
            st.status = Some(Status::Stopped);
            st.init_exited = true;
            st.exit = Some((code, at));
            ctr.cv.notify_all();
        }
        if let Err(e) = self.shutdown_container(ctr) {
            log::warn!("container {}: failed to shutdown container: {e}", ctr.id);
            code = EXIT_CODE_UNKNOWN;
            errs.push(format!("failed to shutdown container: {e}"));
        }
        self.drain_execs(ctr);
        if let Err(e) = ctr.system.close() {
            code = EXIT_CODE_UNKNOWN;
            errs.push(format!("failed to terminate container: {e}"));
        }
        let mut info = EventInfo::new(&ctr.id, INIT_PROCESS_NAME).pid(pid);
        info.exit_code = code;
        info.exited_at = Some(at);
        if !errs.is_empty() {
            info.error = Some(errs.join(": "));
        }
        self.publish(EventType::Exit, info);
        let mut st = ctr.lock();
        st.reaped = true;
        ctr.cv.notify_all();
    }

    /// Waits until every exec's exit is queued. Execs whose exit HCS never reports within
    /// `exec_drain` of the system going down have their waits abandoned (exit code -1).
    fn drain_execs(&self, ctr: &Container) {
        let deadline = Instant::now() + self.timeouts.exec_drain;
        let mut st = ctr.lock();
        while st.live_execs > 0 {
            let now = Instant::now();
            if now >= deadline {
                let stuck: Vec<Arc<Proc>> = st
                    .execs
                    .values()
                    .filter_map(|s| match s {
                        ExecSlot::Running(p) => Some(p.clone()),
                        ExecSlot::Starting => None,
                    })
                    .collect();
                drop(st);
                for p in &stuck {
                    log::warn!("container {}: exec {} did not report its exit; abandoning its wait", ctr.id, p.id);
                    p.hcs.abandon_waiters();
                }
                st = ctr.lock();
                while st.live_execs > 0 {
                    st = ctr.wait(st);
                }
                return;
            }
            st = ctr.cv.wait_timeout(st, deadline - now).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Waits for a process, collects its exit code, closes it.
    fn finish_process(&self, p: &Proc) -> (u32, SystemTime, Vec<String>) {
        if let Err(e) = p.hcs.wait() {
            if e.code() != Some(ERROR_BROKEN_PIPE) {
                log::warn!("Wait() failed (container may have been killed): {e}");
            }
        }
        let at = SystemTime::now();
        let mut errs = Vec::new();
        let mut code = match p.hcs.exit_code() {
            Ok(c) => c,
            Err(e) => {
                log::warn!("unable to get exit code for process {}: {e}", p.id);
                EXIT_CODE_UNKNOWN
            }
        };
        if let Err(e) = p.hcs.close() {
            code = EXIT_CODE_UNKNOWN;
            errs.push(format!("hcsProcess.Close() failed {e}"));
        }
        (code, at, errs)
    }

    fn reap_exec(&self, ctr: &Arc<Container>, p: &Proc) {
        let (code, at, errs) = self.finish_process(p);
        let mut info = EventInfo::new(&ctr.id, &p.id).pid(p.pid);
        info.exit_code = code;
        info.exited_at = Some(at);
        if !errs.is_empty() {
            info.error = Some(errs.join(": "));
        }
        // Queue first, then release: the init reaper's drain relies on this order.
        self.publish(EventType::Exit, info);
        let mut st = ctr.lock();
        st.execs.remove(&p.id);
        st.live_execs = st.live_execs.saturating_sub(1);
        ctr.cv.notify_all();
    }
}

/// Kills, waits for and closes a process unless disarmed: the cleanup when a step after
/// CreateProcess fails (moby afa3aec024: the original's defer checked the wrong error).
struct KillGuard(Option<Arc<hcs::Process>>);

impl KillGuard {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for KillGuard {
    fn drop(&mut self) {
        let Some(p) = self.0.take() else { return };
        if let Err(e) = p.kill() {
            log::error!("failed to kill process: {e}");
        }
        let p2 = p.clone();
        let cleanup = move || {
            if let Err(e) = p2.wait() {
                log::error!("failed to wait for process: {e}");
            }
            if let Err(e) = p2.close() {
                log::error!("failed to clean process resources: {e}");
            }
        };
        if std::thread::Builder::new().name("berth-hcs-cleanup".into()).spawn(cleanup).is_err() {
            let _ = p.close();
        }
    }
}

/// Drops an id reservation (create) unless disarmed.
struct Reservation<'a> {
    inner: &'a Inner,
    id: String,
    armed: bool,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut m = self.inner.map();
            if matches!(m.get(&self.id), Some(Slot::Reserved)) {
                m.remove(&self.id);
            }
        }
    }
}

/// Drops an exec id reservation unless disarmed.
struct ExecReservation {
    ctr: Arc<Container>,
    id: String,
    armed: bool,
}

impl Drop for ExecReservation {
    fn drop(&mut self) {
        if self.armed {
            let mut st = self.ctr.lock();
            st.execs.remove(&self.id);
            st.live_execs = st.live_execs.saturating_sub(1);
            self.ctr.cv.notify_all();
        }
    }
}

/// Clears the "init is being started" mark of a container unless disarmed.
struct StartingMark(Arc<Container>, bool);

impl Drop for StartingMark {
    fn drop(&mut self) {
        if self.1 {
            self.0.lock().starting = false;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Stdio

fn benign_close_stdin_error(e: &HcsError) -> bool {
    // The process or system is gone, the handle is closed, or the system is shutting down.
    e.is_not_exist() || e.is_already_closed() || e.is_invalid_state()
}

/// The stdin handed to the engine: writes go to the pipe; close closes the pipe **and** sends
/// CloseStdin to HCS (the original's `createStdInCloser`).
struct HcsStdin {
    pipe: Option<File>,
    process: Arc<hcs::Process>,
    closed: bool,
}

impl HcsStdin {
    fn finish(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        drop(self.pipe.take());
        match self.process.close_stdin() {
            Err(e) if !benign_close_stdin_error(&e) => Err(e.into()),
            _ => Ok(()),
        }
    }
}

impl Write for HcsStdin {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.pipe.as_mut() {
            Some(p) => p.write(buf),
            None => Err(io::Error::from(io::ErrorKind::BrokenPipe)),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.pipe.as_mut() {
            Some(p) => p.flush(),
            None => Ok(()),
        }
    }
}

impl StdinWriter for HcsStdin {
    fn close(mut self: Box<Self>) -> Result<()> {
        self.finish()
    }
}

impl Drop for HcsStdin {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            log::warn!("closing stdin: {e}");
        }
    }
}

/// Closes the pipe on the first error or end of file, so the handle is released even if the
/// engine keeps the reader (the original's `autoClosingReader`).
struct AutoClosingReader(Option<File>);

impl Read for AutoClosingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(f) = self.0.as_mut() else {
            return Ok(0);
        };
        match f.read(buf) {
            Ok(0) => {
                self.0 = None;
                Ok(0)
            }
            Err(e) if e.kind() != io::ErrorKind::Interrupted => {
                self.0 = None;
                Err(e)
            }
            r => r,
        }
    }
}

fn process_io(p: &Arc<hcs::Process>, terminal: bool, with_stdin: bool) -> Result<ProcessIo> {
    let s = p.take_stdio();
    let mut stdin: Option<Box<dyn StdinWriter>> = None;
    if let Some(pipe) = s.stdin {
        let w = Box::new(HcsStdin { pipe: Some(pipe), process: p.clone(), closed: false });
        if with_stdin || terminal {
            stdin = Some(w);
        } else {
            // Nobody will write: close it now so the process sees EOF (what the daemon did
            // with an unused stdin).
            w.close()?;
        }
    }
    Ok(ProcessIo {
        stdin,
        stdout: s.stdout.map(|f| Box::new(AutoClosingReader(Some(f))) as Box<dyn Read + Send>),
        stderr: s.stderr.map(|f| Box::new(AutoClosingReader(Some(f))) as Box<dyn Read + Send>),
        terminal,
    })
}

fn spawn_gated(name: &str, f: impl FnOnce() + Send + 'static) -> Result<mpsc::Sender<()>> {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            // Runs only once released; a dropped sender means the start failed.
            if rx.recv().is_ok() {
                f();
            }
        })
        .map_err(|e| Error::wrap_system("starting a reaper thread", e))?;
    Ok(tx)
}

// ---------------------------------------------------------------------------------------

impl Client for HcsClient {
    type Stats = HcsStats;
    type Summary = ProcessListItem;
    type Resources = ();
    type CreateOptions = HcsCreateOptions;

    fn version(&self) -> Result<Version> {
        Err(Error::not_implemented("not implemented on Windows"))
    }

    fn restore(&self, id: &str, _attach: AttachStdio<'_>) -> Result<(bool, Option<u32>)> {
        // A system that outlived the engine cannot be re-attached to; terminate it so it does
        // not linger, and report the container as not alive.
        let inner = &self.inner;
        if let Ok(sys) = inner.api.open_compute_system(id) {
            let r = match sys.terminate() {
                Err(e) if e.is_pending() => sys.wait_timeout(inner.timeouts.restore_terminate),
                Err(e) if e.is_already_stopped() => Ok(()),
                r => r,
            };
            let closed = sys.close();
            r?;
            closed?;
        }
        Ok((false, None))
    }

    fn create(&self, id: &str, spec: &Spec, options: Option<&HcsCreateOptions>) -> Result<()> {
        let inner = &self.inner;
        if id.is_empty() {
            return Err(Error::invalid_parameter("container id must not be empty"));
        }
        {
            let mut m = inner.map();
            if m.contains_key(id) {
                return Err(Error::conflict("id already in use"));
            }
            m.insert(id.to_string(), Slot::Reserved);
        }
        let mut reservation = Reservation { inner, id: id.to_string(), armed: true };
        if spec.windows().as_ref().and_then(|w| w.servicing()).unwrap_or(false) {
            return Err(Error::not_implemented("Windows servicing containers are not supported (removed upstream)"));
        }
        let ctx = TranslateContext { name_to_guid: inner.name_to_guid.as_ref(), host: inner.host.as_ref() };
        let t = translate_container(
            id,
            spec,
            options.and_then(|o| o.credential_spec.as_deref()),
            options.and_then(|o| o.lcow.as_ref()),
            ctx,
        )?;
        let system = inner.api.create_compute_system(id, &t.config, inner.timeouts.create)?;
        if let Err(e) = system.start(inner.timeouts.create) {
            log::error!("failed to start container {id}: {e}");
            let r = match system.terminate() {
                Err(t) if t.is_pending() => system.wait_timeout(inner.timeouts.terminate),
                Err(t) if t.is_already_stopped() => Ok(()),
                r => r,
            };
            if let Err(t) = r {
                log::error!("failed to cleanup after a failed Start: {t}");
            }
            let _ = system.close();
            return Err(e.into());
        }
        let hyperv = t.config.hv_partition && spec.windows().as_ref().is_some_and(|w| w.hyperv().is_some());
        let ctr = Arc::new(Container {
            id: id.to_string(),
            spec: t.spec,
            is_windows: t.is_windows,
            hyperv,
            system,
            lifecycle: Mutex::new(()),
            state: Mutex::new(CtrState { status: Some(Status::Created), ..Default::default() }),
            cv: Condvar::new(),
        });
        inner.map().insert(id.to_string(), Slot::Ready(ctr));
        reservation.armed = false;
        inner.publish(EventType::Create, EventInfo::new(id, ""));
        Ok(())
    }

    fn start(
        &self,
        id: &str,
        _checkpoint_dir: Option<&Path>,
        with_stdin: bool,
        attach: AttachStdio<'_>,
    ) -> Result<u32> {
        let inner = &self.inner;
        let ctr = inner.get(id)?;
        {
            let mut st = ctr.lock();
            if st.deleting {
                return Err(Error::not_found("no such container"));
            }
            if st.init.is_some() || st.starting || st.status != Some(Status::Created) {
                return Err(Error::not_modified("container already started"));
            }
            st.starting = true;
        }
        let mut mark = StartingMark(ctr.clone(), true);
        let cfg = init_process_config(&ctr.spec, ctr.is_windows)?;
        let terminal = cfg.emulate_console;
        let process = match ctr.system.create_process(&cfg) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                log::error!("container {id}: CreateProcess() failed: {e}");
                // Reap the container rather than leak a running system (moby 32acc76b1a).
                mark.1 = false;
                ctr.lock().starting = false;
                inner.reap_init(&ctr, 0, EXIT_CODE_INIT_NOT_CREATED, SystemTime::now(), Vec::new());
                return Err(e.into());
            }
        };
        let guard = KillGuard(Some(process.clone()));
        let io = process_io(&process, terminal, with_stdin)?;
        attach(io)?;
        let proc_ = Arc::new(Proc { id: INIT_PROCESS_NAME.to_string(), pid: process.pid(), hcs: process });
        let (i2, c2, p2) = (inner.clone(), ctr.clone(), proc_.clone());
        let go = spawn_gated("berth-hcs-reap", move || {
            let (code, at, errs) = i2.finish_process(&p2);
            i2.reap_init(&c2, p2.pid, code, at, errs);
        })?;
        {
            let mut st = ctr.lock();
            st.status = Some(Status::Running);
            st.init = Some(proc_.clone());
            st.starting = false;
        }
        mark.1 = false;
        guard.disarm();
        inner.publish(EventType::Start, EventInfo::new(id, INIT_PROCESS_NAME).pid(proc_.pid));
        // Only now may the exit be observed: it must be queued after the start event.
        let _ = go.send(());
        Ok(proc_.pid)
    }

    fn signal_process(&self, id: &str, process_id: &str, signal: i32) -> Result<()> {
        let inner = &self.inner;
        let (ctr, target) = inner.get_process(id, process_id)?;
        match target {
            Target::Init(_) if signal == SIGKILL => {
                let r = {
                    let _l = ctr.lifecycle.lock().unwrap_or_else(|p| p.into_inner());
                    ctr.lock().terminate_invoked = true;
                    ctr.system.terminate()
                };
                if let Err(e) = r {
                    if !e.is_pending() {
                        log::error!("failed to terminate hcsshim container {id}: {e}");
                    }
                }
                Ok(())
            }
            Target::Init(_) => {
                if let Err(e) = ctr.system.shutdown() {
                    if !e.is_pending() && !e.is_already_stopped() {
                        log::error!("failed to shutdown hcsshim container {id}: {e}");
                    }
                }
                Ok(())
            }
            // Windows has no signals for processes: any signal kills an exec.
            Target::Exec(p) => Ok(p.hcs.kill()?),
        }
    }

    fn exec(
        &self,
        id: &str,
        process_id: &str,
        spec: &OciProcess,
        with_stdin: bool,
        attach: AttachStdio<'_>,
    ) -> Result<u32> {
        let inner = &self.inner;
        let ctr = inner.get(id)?;
        if process_id.is_empty() || process_id == INIT_PROCESS_NAME || process_id == id {
            return Err(Error::invalid_parameter(format!("invalid exec id {process_id:?}: empty or the init's")));
        }
        {
            let mut st = ctr.lock();
            if st.deleting {
                return Err(Error::not_found("no such container"));
            }
            if st.init_exited || st.status == Some(Status::Stopped) {
                return Err(Error::not_found("container is not running"));
            }
            if st.execs.contains_key(process_id) {
                return Err(Error::conflict("id already in use"));
            }
            st.execs.insert(process_id.to_string(), ExecSlot::Starting);
            st.live_execs += 1;
        }
        let mut reservation = ExecReservation { ctr: ctr.clone(), id: process_id.to_string(), armed: true };
        let cfg = exec_process_config(&ctr.spec, ctr.is_windows, spec)?;
        let terminal = cfg.emulate_console;
        let process = Arc::new(ctr.system.create_process(&cfg).inspect_err(|e| {
            log::error!("container {id}: exec's CreateProcess() failed: {e}");
        })?);
        let guard = KillGuard(Some(process.clone()));
        let io = process_io(&process, terminal, with_stdin)?;
        attach(io)?;
        let proc_ = Arc::new(Proc { id: process_id.to_string(), pid: process.pid(), hcs: process });
        let (i2, c2, p2) = (inner.clone(), ctr.clone(), proc_.clone());
        let go = spawn_gated("berth-hcs-reap", move || i2.reap_exec(&c2, &p2))?;
        ctr.lock().execs.insert(process_id.to_string(), ExecSlot::Running(proc_.clone()));
        // From here the reaper owns the reservation (it decrements live_execs).
        reservation.armed = false;
        guard.disarm();
        let info = EventInfo::new(id, process_id).pid(proc_.pid);
        inner.publish(EventType::ExecAdded, info.clone());
        inner.publish(EventType::ExecStarted, info);
        let _ = go.send(());
        Ok(proc_.pid)
    }

    fn resize_terminal(&self, id: &str, process_id: &str, width: u32, height: u32) -> Result<()> {
        let (_, target) = self.inner.get_process(id, process_id)?;
        let (Ok(w), Ok(h)) = (u16::try_from(width), u16::try_from(height)) else {
            return Err(Error::invalid_parameter(format!(
                "terminal size {width}x{height}: each must be at most {}",
                u16::MAX
            )));
        };
        let p = match target {
            Target::Init(p) | Target::Exec(p) => p,
        };
        Ok(p.hcs.resize_console(w, h)?)
    }

    fn close_stdin(&self, id: &str, process_id: &str) -> Result<()> {
        let (_, target) = self.inner.get_process(id, process_id)?;
        let p = match target {
            Target::Init(p) | Target::Exec(p) => p,
        };
        match p.hcs.close_stdin() {
            Err(e) if !benign_close_stdin_error(&e) => Err(e.into()),
            _ => Ok(()),
        }
    }

    fn pause(&self, id: &str) -> Result<()> {
        self.inner.set_paused(id, true)
    }

    fn resume(&self, id: &str) -> Result<()> {
        self.inner.set_paused(id, false)
    }

    fn stats(&self, id: &str) -> Result<HcsStats> {
        let ctr = self.inner.running_init(id)?;
        let read = SystemTime::now();
        Ok(HcsStats { read, hcs: ctr.system.statistics()? })
    }

    fn list_pids(&self, _id: &str) -> Result<Vec<u32>> {
        Err(Error::not_implemented("not implemented on Windows"))
    }

    fn summary(&self, id: &str) -> Result<Vec<ProcessListItem>> {
        let ctr = self.inner.running_init(id)?;
        Ok(ctr.system.process_list()?)
    }

    fn delete_task(&self, id: &str) -> Result<(u32, SystemTime)> {
        let ctr = self.inner.get(id)?;
        let st = ctr.lock();
        st.exit.ok_or_else(|| Error::conflict("container is not stopped"))
    }

    fn delete(&self, id: &str) -> Result<()> {
        let inner = &self.inner;
        let ctr = inner.get(id)?;
        let mut st = ctr.lock();
        if st.deleting {
            return Err(Error::conflict("container is being deleted"));
        }
        match st.status {
            Some(Status::Created) if st.init.is_none() && !st.starting => {
                st.deleting = true;
                drop(st);
                if let Err(e) = inner.shutdown_container(&ctr) {
                    // Keep the record: a retry finds the system stopped and completes.
                    ctr.lock().deleting = false;
                    return Err(Error::system(format!("failed to shutdown container: {e}")));
                }
                if let Err(e) = ctr.system.close() {
                    log::warn!("closing container {id}: {e}");
                }
            }
            Some(Status::Stopped) => {
                st.deleting = true;
                // The init reaper may still be tearing the system down.
                while !st.reaped {
                    st = ctr.wait(st);
                }
                drop(st);
            }
            _ => return Err(Error::conflict("container is not stopped")),
        }
        inner.map().remove(id);
        Ok(())
    }

    fn status(&self, id: &str) -> Result<Status> {
        let ctr = self.inner.get(id)?;
        let st = ctr.lock();
        Ok(st.status.unwrap_or(Status::Unknown))
    }

    fn update_resources(&self, _id: &str, _resources: &()) -> Result<()> {
        // Nothing can be updated on Windows; succeed so engines can still call it.
        Ok(())
    }

    fn create_checkpoint(&self, _id: &str, _checkpoint_dir: &Path, _exit: bool) -> Result<()> {
        Err(Error::not_implemented("Windows: Containers do not support checkpoints"))
    }
}
