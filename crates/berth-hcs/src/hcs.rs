//! The HCS binding: compute systems and processes over the loaded HCS library, with
//! hcsshim v0.6.8's semantics.
//!
//! * Asynchronous operations: when a call returns `HCS_E_OPERATION_PENDING` (0xC0370103),
//!   create/start/pause/resume wait for their completion notification (default 4 minutes, as
//!   hcsshim); shutdown and terminate return the pending error to the caller, who then waits
//!   for the system to exit ([`ComputeSystem::wait_timeout`]) — that is how the original
//!   used them.
//! * Notifications arrive on HCS threads through one trampoline; each handle registers a
//!   watcher under an integer key (never a pointer), so a late notification for a closed
//!   handle is simply dropped. "Exited" notifications are sticky (every waiter sees them);
//!   completions are consumed once. While waiting for a completion, a system exit or a service
//!   disconnect ends the wait with an error, as in hcsshim's `waitForNotification`.
//! * Handles: operations hold a read lock on the handle, `close` the write lock; after close
//!   every operation fails with "already closed" instead of touching a stale handle. Dropping
//!   a system or process closes it.
//! * HRESULTs are reduced like hcsshim's `win32FromHresult` (0x8007xxxx -> xxxx), and the
//!   result document's message and events are kept in the error.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::{Duration, Instant};

use berth_core::{Error, ErrorKind};
use berth_hcs_schema::{
    to_go_json, ContainerConfig, ContainerProperties, HcsResult, ProcessConfig, ProcessListItem, ProcessModifyRequest,
    ProcessStatus, Statistics,
};

use crate::ffi::{self, RawHandle};
use crate::guid::{Guid, NameToGuid, NameToGuidError};

/// hcsshim's `defaultTimeout` for create, start, pause and resume.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(4 * 60);

/// `HCS_E_OPERATION_PENDING`.
pub const E_PENDING: u32 = 0xC037_0103;
/// `HCS_E_INVALID_STATE` (the system is shutting down).
pub const E_INVALID_STATE: u32 = 0xC037_0105;
/// `HCS_E_SYSTEM_NOT_FOUND`.
pub const E_SYSTEM_NOT_FOUND: u32 = 0xC037_010E;
/// `HCS_E_SYSTEM_ALREADY_STOPPED`.
pub const E_ALREADY_STOPPED: u32 = 0xC037_0110;
/// `ERROR_NOT_FOUND` ("Element not found").
pub const ERROR_NOT_FOUND: u32 = 0x490;
/// `ERROR_PROC_NOT_FOUND`.
pub const ERROR_PROC_NOT_FOUND: u32 = 0x7f;

/// Notification: the compute system exited.
pub const NOTIFY_SYSTEM_EXITED: u32 = 0x0000_0001;
/// Notification: asynchronous create finished.
pub const NOTIFY_SYSTEM_CREATE_COMPLETED: u32 = 0x0000_0002;
/// Notification: asynchronous start finished.
pub const NOTIFY_SYSTEM_START_COMPLETED: u32 = 0x0000_0003;
/// Notification: asynchronous pause finished.
pub const NOTIFY_SYSTEM_PAUSE_COMPLETED: u32 = 0x0000_0004;
/// Notification: asynchronous resume finished.
pub const NOTIFY_SYSTEM_RESUME_COMPLETED: u32 = 0x0000_0005;
/// Notification: the process exited.
pub const NOTIFY_PROCESS_EXITED: u32 = 0x0001_0000;
/// Notification: the HCS service went away.
pub const NOTIFY_SERVICE_DISCONNECT: u32 = 0x0100_0000;

const STATISTICS_QUERY: &str = r#"{ "PropertyTypes" : ["Statistics"]}"#;
const PROCESS_LIST_QUERY: &str = r#"{ "PropertyTypes" : ["ProcessList"]}"#;

/// hcsshim `win32FromHresult`: FACILITY_WIN32 HRESULTs become their Win32 error code.
pub fn win32_from_hresult(hr: i32) -> u32 {
    let hr = hr as u32;
    if hr & 0x1fff_0000 == 0x0007_0000 {
        hr & 0xffff
    } else {
        hr
    }
}

/// What went wrong in an HCS operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// HCS returned an error code (already reduced by [`win32_from_hresult`]).
    Code {
        /// The error code.
        code: u32,
        /// `ErrorMessage` of the result document, if any.
        message: Option<String>,
        /// Messages of the result document's events.
        events: Vec<String>,
    },
    /// The handle was closed (by this process) before or during the operation.
    AlreadyClosed,
    /// The wait timed out.
    Timeout,
    /// The system exited while waiting for another notification.
    UnexpectedContainerExit,
    /// The HCS service disconnected while waiting.
    ServiceDisconnect,
    /// `exit_code` of a process that has not exited.
    InvalidProcessState,
    /// No HCS library could be loaded.
    Unavailable(String),
    /// An argument cannot be passed to HCS (e.g. contains NUL).
    InvalidArgument(String),
    /// HCS returned something unparsable.
    UnexpectedValue(String),
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Code { code, message, events } => {
                write!(f, "HCS error 0x{code:x}")?;
                if let Some(m) = message.as_deref().filter(|m| !m.is_empty()) {
                    write!(f, ": {m}")?;
                }
                for e in events {
                    write!(f, " [{e}]")?;
                }
                Ok(())
            }
            Cause::AlreadyClosed => f.write_str("the handle has already been closed"),
            Cause::Timeout => f.write_str("hcsshim: timeout waiting for notification"),
            Cause::UnexpectedContainerExit => f.write_str("unexpected container exit"),
            Cause::ServiceDisconnect => f.write_str("unexpected process abort (HCS disconnected)"),
            Cause::InvalidProcessState => f.write_str("the process is in an invalid state for the attempted operation"),
            Cause::Unavailable(s) => write!(f, "HCS is not available on this host: {s}"),
            Cause::InvalidArgument(s) => write!(f, "invalid argument: {s}"),
            Cause::UnexpectedValue(s) => write!(f, "unexpected result from HCS: {s}"),
        }
    }
}

/// An error of an HCS operation: the operation, what it acted on, and the cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{target} encountered an error during {op}: {cause}")]
pub struct HcsError {
    /// The operation (`Start`, `CreateProcess`, ...).
    pub op: &'static str,
    /// `container <id>` or `process <pid> in container <id>`.
    pub target: String,
    /// The cause.
    pub cause: Cause,
}

impl HcsError {
    fn new(op: &'static str, target: impl Into<String>, cause: Cause) -> Self {
        HcsError { op, target: target.into(), cause }
    }

    /// The reduced error code, if HCS returned one.
    pub fn code(&self) -> Option<u32> {
        match &self.cause {
            Cause::Code { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// hcsshim `IsPending`: the operation continues asynchronously.
    pub fn is_pending(&self) -> bool {
        self.code() == Some(E_PENDING)
    }

    /// hcsshim `IsAlreadyStopped`.
    pub fn is_already_stopped(&self) -> bool {
        matches!(self.code(), Some(E_ALREADY_STOPPED | ERROR_NOT_FOUND | ERROR_PROC_NOT_FOUND))
    }

    /// hcsshim `IsNotExist`.
    pub fn is_not_exist(&self) -> bool {
        matches!(self.code(), Some(E_SYSTEM_NOT_FOUND | ERROR_NOT_FOUND | ERROR_PROC_NOT_FOUND))
    }

    /// hcsshim `IsAlreadyClosed`.
    pub fn is_already_closed(&self) -> bool {
        self.cause == Cause::AlreadyClosed
    }

    /// The system is shutting down (`ErrVmcomputeOperationInvalidState`).
    pub fn is_invalid_state(&self) -> bool {
        self.code() == Some(E_INVALID_STATE)
    }

    /// hcsshim `IsTimeout`.
    pub fn is_timeout(&self) -> bool {
        self.cause == Cause::Timeout
    }

    /// The class an engine sees.
    pub fn kind(&self) -> ErrorKind {
        match &self.cause {
            Cause::Unavailable(_) => ErrorKind::Unavailable,
            Cause::InvalidArgument(_) => ErrorKind::InvalidParameter,
            Cause::AlreadyClosed => ErrorKind::NotFound,
            _ if self.is_not_exist() => ErrorKind::NotFound,
            _ => ErrorKind::System,
        }
    }
}

impl From<HcsError> for Error {
    fn from(e: HcsError) -> Error {
        let kind = e.kind();
        Error::with_source(kind, e.to_string(), e)
    }
}

fn unavailable(msg: impl Into<String>) -> HcsError {
    HcsError::new("Load", "HCS", Cause::Unavailable(msg.into()))
}

/// The error of a call, from its HRESULT and result document.
fn call_error(op: &'static str, target: &str, hr: i32, result: Option<&str>) -> HcsError {
    let mut message = None;
    let mut events = Vec::new();
    if let Some(r) = result.filter(|r| !r.is_empty()) {
        match serde_json::from_str::<HcsResult>(r) {
            Ok(doc) => {
                message = Some(doc.error_message);
                events = doc.error_events.into_iter().map(|e| e.message).collect();
            }
            Err(_) => message = Some(r.to_string()),
        }
    }
    HcsError::new(op, target, Cause::Code { code: win32_from_hresult(hr), message, events })
}

fn check(op: &'static str, target: &str, hr: i32, result: Option<&str>) -> Result<(), HcsError> {
    if hr < 0 {
        Err(call_error(op, target, hr, result))
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Notifications

#[derive(Default)]
struct WatchState {
    completions: HashMap<u32, VecDeque<i32>>,
    exited: Option<i32>,
    disconnected: bool,
    closed: bool,
}

/// Receives the notifications of one handle.
#[derive(Default)]
pub(crate) struct Watcher {
    st: Mutex<WatchState>,
    cv: Condvar,
}

enum WaitEnd {
    Status(i32),
    UnexpectedExit,
    Disconnect,
    Closed,
    Timeout,
}

impl Watcher {
    fn lock(&self) -> MutexGuard<'_, WatchState> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notify(&self, kind: u32, status: i32) {
        let mut st = self.lock();
        match kind {
            NOTIFY_SYSTEM_EXITED | NOTIFY_PROCESS_EXITED => {
                st.exited.get_or_insert(status);
            }
            NOTIFY_SERVICE_DISCONNECT => st.disconnected = true,
            _ => st.completions.entry(kind).or_default().push_back(status),
        }
        drop(st);
        self.cv.notify_all();
    }

    fn close(&self) {
        self.lock().closed = true;
        self.cv.notify_all();
    }

    fn wait(&self, kind: u32, timeout: Option<Duration>) -> WaitEnd {
        let deadline = timeout.map(|t| Instant::now() + t);
        let exit_kind = kind == NOTIFY_SYSTEM_EXITED || kind == NOTIFY_PROCESS_EXITED;
        let mut st = self.lock();
        loop {
            if exit_kind {
                if let Some(s) = st.exited {
                    return WaitEnd::Status(s);
                }
            } else {
                if let Some(s) = st.completions.get_mut(&kind).and_then(|q| q.pop_front()) {
                    return WaitEnd::Status(s);
                }
                if st.exited.is_some() {
                    return WaitEnd::UnexpectedExit;
                }
            }
            if st.disconnected {
                return WaitEnd::Disconnect;
            }
            if st.closed {
                return WaitEnd::Closed;
            }
            st = match deadline {
                None => self.cv.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return WaitEnd::Timeout;
                    }
                    self.cv.wait_timeout(st, d - now).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0)
                }
            };
        }
    }

    fn wait_result(
        &self,
        op: &'static str,
        target: &str,
        kind: u32,
        timeout: Option<Duration>,
    ) -> Result<(), HcsError> {
        let cause = match self.wait(kind, timeout) {
            WaitEnd::Status(s) if s >= 0 => return Ok(()),
            WaitEnd::Status(s) => Cause::Code { code: win32_from_hresult(s), message: None, events: Vec::new() },
            WaitEnd::UnexpectedExit => Cause::UnexpectedContainerExit,
            WaitEnd::Disconnect => Cause::ServiceDisconnect,
            WaitEnd::Closed => Cause::AlreadyClosed,
            WaitEnd::Timeout => Cause::Timeout,
        };
        Err(HcsError::new(op, target, cause))
    }
}

fn registry() -> MutexGuard<'static, HashMap<usize, Arc<Watcher>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<usize, Arc<Watcher>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner())
}

fn new_key() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Called by the FFI trampoline on an HCS thread.
pub(crate) fn dispatch_notification(key: usize, kind: u32, status: i32) {
    let w = registry().get(&key).cloned();
    match w {
        Some(w) => w.notify(kind, status),
        None => log::debug!("HCS notification 0x{kind:x} for unknown callback {key}; dropped"),
    }
}

/// A registered callback: its HCS handle and registry key.
struct Registration {
    key: usize,
    callback: RawHandle,
}

/// Runs `f` on a compute-system or process handle while holding it open (a concurrent close
/// waits), or fails with "already closed".
fn with_open_handle<T>(
    handle: &RwLock<RawHandle>,
    op: &'static str,
    target: &str,
    f: impl FnOnce(RawHandle) -> Result<T, HcsError>,
) -> Result<T, HcsError> {
    let h = handle.read().unwrap_or_else(|p| p.into_inner());
    if *h == 0 {
        return Err(HcsError::new(op, target, Cause::AlreadyClosed));
    }
    f(*h)
}

/// Closes a compute-system or process handle once: unregisters its notification callback,
/// wakes its waiters with "already closed", closes the handle. Both errors are reported.
fn close_handle(
    target: &str,
    handle: &RwLock<RawHandle>,
    registration: &Mutex<Option<Registration>>,
    watcher: &Watcher,
    unregister: impl FnOnce(RawHandle) -> i32,
    close: impl FnOnce(RawHandle) -> i32,
) -> Result<(), HcsError> {
    let mut h = handle.write().unwrap_or_else(|p| p.into_inner());
    if *h == 0 {
        return Ok(());
    }
    let mut result = Ok(());
    if let Some(r) = registration.lock().unwrap_or_else(|p| p.into_inner()).take() {
        let hr = unregister(r.callback);
        registry().remove(&r.key);
        result = check("Close", target, hr, None);
    }
    watcher.close();
    let hr = close(*h);
    *h = 0;
    result.and(check("Close", target, hr, None))
}

// ---------------------------------------------------------------------------------------
// The library

/// A loaded HCS library (`vmcompute.dll` or a stand-in).
pub struct HcsApi {
    lib: ffi::Library,
    origin: String,
}

impl fmt::Debug for HcsApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HcsApi").field("origin", &self.origin).finish()
    }
}

impl HcsApi {
    /// Loads the HCS library at `path` (a test stand-in, or a specific vmcompute.dll).
    /// Failure is class unavailable.
    pub fn load(path: impl AsRef<Path>) -> Result<Arc<HcsApi>, HcsError> {
        let path = path.as_ref();
        let lib = ffi::Library::load(path).map_err(unavailable)?;
        Ok(Arc::new(HcsApi { lib, origin: path.display().to_string() }))
    }

    /// Loads the host's HCS: `vmcompute.dll` from System32 on Windows. On any other host it
    /// fails at once with "HCS is not available on this host" (class unavailable).
    pub fn load_default() -> Result<Arc<HcsApi>, HcsError> {
        #[cfg(windows)]
        {
            let lib = ffi::Library::load_system().map_err(unavailable)?;
            Ok(Arc::new(HcsApi { lib, origin: "vmcompute.dll".into() }))
        }
        #[cfg(not(windows))]
        {
            Err(unavailable(format!("HCS exists only on Windows (this is {})", std::env::consts::OS)))
        }
    }

    /// Creates a compute system from `config` (serialized as hcsshim did) and waits for the
    /// creation to complete.
    pub fn create_compute_system(
        self: &Arc<Self>,
        id: &str,
        config: &ContainerConfig,
        timeout: Duration,
    ) -> Result<ComputeSystem, HcsError> {
        let target = format!("container {id}");
        let doc = to_go_json(config)
            .map_err(|e| HcsError::new("CreateContainer", &target, Cause::InvalidArgument(e.to_string())))?;
        self.create_compute_system_json(id, &doc, timeout)
    }

    /// As [`HcsApi::create_compute_system`], with the document already serialized.
    pub fn create_compute_system_json(
        self: &Arc<Self>,
        id: &str,
        doc: &str,
        timeout: Duration,
    ) -> Result<ComputeSystem, HcsError> {
        const OP: &str = "CreateContainer";
        let target = format!("container {id}");
        let call = self
            .lib
            .create_compute_system(id, doc)
            .map_err(|_| HcsError::new(OP, &target, Cause::InvalidArgument("NUL in id or document".into())))?;
        let pending = win32_from_hresult(call.hr) == E_PENDING;
        if call.hr < 0 && !pending {
            return Err(call_error(OP, &target, call.hr, call.result.as_deref()));
        }
        let system = ComputeSystem::new(self.clone(), id, call.value);
        system.register(OP)?;
        if pending {
            if let Err(e) = system.watcher.wait_result(OP, &target, NOTIFY_SYSTEM_CREATE_COMPLETED, Some(timeout)) {
                if e.is_timeout() {
                    // Do not leave a half-created system behind.
                    let _ = system.terminate();
                }
                return Err(e);
            }
        }
        Ok(system)
    }

    /// Opens an existing compute system by id.
    pub fn open_compute_system(self: &Arc<Self>, id: &str) -> Result<ComputeSystem, HcsError> {
        const OP: &str = "OpenContainer";
        let target = format!("container {id}");
        let call = self
            .lib
            .open_compute_system(id)
            .map_err(|_| HcsError::new(OP, &target, Cause::InvalidArgument("NUL in id".into())))?;
        check(OP, &target, call.hr, call.result.as_deref())?;
        let system = ComputeSystem::new(self.clone(), id, call.value);
        system.register(OP)?;
        Ok(system)
    }

    /// `vmcompute!NameToGuid`.
    pub fn name_to_guid(&self, name: &str) -> Result<Guid, HcsError> {
        let (hr, g) = self
            .lib
            .name_to_guid(name)
            .map_err(|_| HcsError::new("NameToGuid", name, Cause::InvalidArgument("NUL in name".into())))?;
        check("NameToGuid", name, hr, None)?;
        Ok(Guid(g))
    }
}

/// [`NameToGuid`] backed by the HCS library's `NameToGuid` export (the real algorithm when the
/// library is vmcompute.dll).
#[derive(Debug, Clone)]
pub struct VmcomputeNameToGuid(pub Arc<HcsApi>);

impl NameToGuid for VmcomputeNameToGuid {
    fn name_to_guid(&self, name: &str) -> Result<Guid, NameToGuidError> {
        self.0.name_to_guid(name).map_err(|e| NameToGuidError { name: name.to_string(), reason: e.to_string() })
    }
}

// ---------------------------------------------------------------------------------------
// Compute systems

/// A compute system (hcsshim `Container`).
pub struct ComputeSystem {
    api: Arc<HcsApi>,
    id: String,
    target: String,
    handle: RwLock<RawHandle>,
    registration: Mutex<Option<Registration>>,
    watcher: Arc<Watcher>,
}

impl fmt::Debug for ComputeSystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComputeSystem").field("id", &self.id).finish()
    }
}

impl ComputeSystem {
    fn new(api: Arc<HcsApi>, id: &str, handle: RawHandle) -> Self {
        ComputeSystem {
            api,
            id: id.to_string(),
            target: format!("container {id}"),
            handle: RwLock::new(handle),
            registration: Mutex::new(None),
            watcher: Arc::new(Watcher::default()),
        }
    }

    fn register(&self, op: &'static str) -> Result<(), HcsError> {
        let key = new_key();
        // The watcher is reachable before HCS learns the callback, so no notification is lost.
        registry().insert(key, self.watcher.clone());
        let h = *self.handle.read().unwrap_or_else(|p| p.into_inner());
        let call = self.api.lib.register_compute_system_callback(h, key);
        if call.hr < 0 {
            registry().remove(&key);
            let e = call_error(op, &self.target, call.hr, None);
            let _ = self.terminate();
            let _ = self.close();
            return Err(e);
        }
        *self.registration.lock().unwrap_or_else(|p| p.into_inner()) = Some(Registration { key, callback: call.value });
        Ok(())
    }

    /// The compute system id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn with_handle<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(RawHandle) -> Result<T, HcsError>,
    ) -> Result<T, HcsError> {
        with_open_handle(&self.handle, op, &self.target, f)
    }

    fn async_op(
        &self,
        op: &'static str,
        call: impl FnOnce(&ffi::Library, RawHandle) -> ffi::Call<()>,
        completion: Option<(u32, Duration)>,
    ) -> Result<(), HcsError> {
        let (hr, result) = self.with_handle(op, |h| {
            let c = call(&self.api.lib, h);
            Ok((c.hr, c.result))
        })?;
        if hr >= 0 {
            return Ok(());
        }
        let e = call_error(op, &self.target, hr, result.as_deref());
        match completion {
            Some((kind, timeout)) if e.is_pending() => self.watcher.wait_result(op, &self.target, kind, Some(timeout)),
            _ => Err(e),
        }
    }

    /// Starts the system and waits for the start to complete.
    pub fn start(&self, timeout: Duration) -> Result<(), HcsError> {
        self.async_op("Start", |l, h| l.start_compute_system(h), Some((NOTIFY_SYSTEM_START_COMPLETED, timeout)))
    }

    /// Requests a clean shutdown. A pending error means "in progress": wait with
    /// [`ComputeSystem::wait_timeout`].
    pub fn shutdown(&self) -> Result<(), HcsError> {
        self.async_op("Shutdown", |l, h| l.shutdown_compute_system(h), None)
    }

    /// Requests termination. A pending error means "in progress".
    pub fn terminate(&self) -> Result<(), HcsError> {
        self.async_op("Terminate", |l, h| l.terminate_compute_system(h), None)
    }

    /// Pauses the system and waits for completion.
    pub fn pause(&self, timeout: Duration) -> Result<(), HcsError> {
        self.async_op("Pause", |l, h| l.pause_compute_system(h), Some((NOTIFY_SYSTEM_PAUSE_COMPLETED, timeout)))
    }

    /// Resumes the system and waits for completion.
    pub fn resume(&self, timeout: Duration) -> Result<(), HcsError> {
        self.async_op("Resume", |l, h| l.resume_compute_system(h), Some((NOTIFY_SYSTEM_RESUME_COMPLETED, timeout)))
    }

    /// Waits until the system has exited.
    pub fn wait(&self) -> Result<(), HcsError> {
        self.watcher.wait_result("Wait", &self.target, NOTIFY_SYSTEM_EXITED, None)
    }

    /// Waits until the system has exited, at most `timeout`.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<(), HcsError> {
        self.watcher.wait_result("WaitTimeout", &self.target, NOTIFY_SYSTEM_EXITED, Some(timeout))
    }

    fn properties(&self, op: &'static str, query: &str) -> Result<ContainerProperties, HcsError> {
        let call = self.with_handle(op, |h| {
            self.api
                .lib
                .get_compute_system_properties(h, query)
                .map_err(|_| HcsError::new(op, &self.target, Cause::InvalidArgument("NUL in query".into())))
        })?;
        check(op, &self.target, call.hr, call.result.as_deref())?;
        let doc = call
            .value
            .ok_or_else(|| HcsError::new(op, &self.target, Cause::UnexpectedValue("no properties".into())))?;
        serde_json::from_str(&doc).map_err(|e| HcsError::new(op, &self.target, Cause::UnexpectedValue(e.to_string())))
    }

    /// Statistics (`docker stats`).
    pub fn statistics(&self) -> Result<Statistics, HcsError> {
        Ok(self.properties("Statistics", STATISTICS_QUERY)?.statistics)
    }

    /// The process list (`docker top`).
    pub fn process_list(&self) -> Result<Vec<ProcessListItem>, HcsError> {
        Ok(self.properties("ProcessList", PROCESS_LIST_QUERY)?.process_list)
    }

    /// Starts a process. As hcsshim did, a process without a console gets a zero console size.
    pub fn create_process(&self, config: &ProcessConfig) -> Result<Process, HcsError> {
        const OP: &str = "CreateProcess";
        let mut config = config.clone();
        if !config.emulate_console {
            config.console_size = [0, 0];
        }
        let doc =
            to_go_json(&config).map_err(|e| HcsError::new(OP, &self.target, Cause::InvalidArgument(e.to_string())))?;
        let call = self.with_handle(OP, |h| {
            self.api
                .lib
                .create_process(h, &doc)
                .map_err(|_| HcsError::new(OP, &self.target, Cause::InvalidArgument("NUL in document".into())))
        })?;
        let (pid, handle, pipes) = call.value;
        // Take ownership of the pipes first, so they are closed on every path below.
        let stdio = pipes.map(ffi::handle_to_file);
        check(OP, &self.target, call.hr, call.result.as_deref())?;
        let p = Process {
            api: self.api.clone(),
            pid,
            target: format!("process {pid} in container {}", self.id),
            handle: RwLock::new(handle),
            registration: Mutex::new(None),
            watcher: Arc::new(Watcher::default()),
            stdio: Mutex::new(Some(stdio)),
        };
        p.register()?;
        Ok(p)
    }

    /// Releases the handle (does not stop the system). Later operations fail with "already
    /// closed"; waiters are woken with that error.
    pub fn close(&self) -> Result<(), HcsError> {
        let lib = &self.api.lib;
        close_handle(
            &self.target,
            &self.handle,
            &self.registration,
            &self.watcher,
            |cb| lib.unregister_compute_system_callback(cb),
            |h| lib.close_compute_system(h),
        )
    }
}

impl Drop for ComputeSystem {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            log::warn!("closing {}: {e}", self.target);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Processes

/// A process in a compute system (hcsshim `Process`).
pub struct Process {
    api: Arc<HcsApi>,
    pid: u32,
    target: String,
    handle: RwLock<RawHandle>,
    registration: Mutex<Option<Registration>>,
    watcher: Arc<Watcher>,
    stdio: Mutex<Option<[Option<File>; 3]>>,
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process").field("target", &self.target).finish()
    }
}

/// The stdio pipes HCS created for a process; `None` where no pipe was requested.
#[derive(Debug)]
pub struct Stdio {
    /// Writes to the process's stdin.
    pub stdin: Option<File>,
    /// Reads the process's stdout.
    pub stdout: Option<File>,
    /// Reads the process's stderr.
    pub stderr: Option<File>,
}

impl Process {
    fn register(&self) -> Result<(), HcsError> {
        let key = new_key();
        registry().insert(key, self.watcher.clone());
        let h = *self.handle.read().unwrap_or_else(|p| p.into_inner());
        let call = self.api.lib.register_process_callback(h, key);
        if call.hr < 0 {
            registry().remove(&key);
            let e = call_error("CreateProcess", &self.target, call.hr, None);
            let _ = self.kill();
            let _ = self.close();
            return Err(e);
        }
        *self.registration.lock().unwrap_or_else(|p| p.into_inner()) = Some(Registration { key, callback: call.value });
        Ok(())
    }

    /// The pid in the container.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The pipes, once (later calls return no pipes).
    pub fn take_stdio(&self) -> Stdio {
        let [stdin, stdout, stderr] = self.stdio.lock().unwrap_or_else(|p| p.into_inner()).take().unwrap_or_default();
        Stdio { stdin, stdout, stderr }
    }

    fn with_handle<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(RawHandle) -> Result<T, HcsError>,
    ) -> Result<T, HcsError> {
        with_open_handle(&self.handle, op, &self.target, f)
    }

    /// Terminates the process (does not wait). A pending termination counts as success.
    pub fn kill(&self) -> Result<(), HcsError> {
        const OP: &str = "Kill";
        let c = self.with_handle(OP, |h| Ok(self.api.lib.terminate_process(h)))?;
        match check(OP, &self.target, c.hr, c.result.as_deref()) {
            Err(e) if e.is_pending() => Ok(()),
            r => r,
        }
    }

    /// Waits for the process to exit.
    pub fn wait(&self) -> Result<(), HcsError> {
        self.watcher.wait_result("Wait", &self.target, NOTIFY_PROCESS_EXITED, None)
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<(), HcsError> {
        self.watcher.wait_result("WaitTimeout", &self.target, NOTIFY_PROCESS_EXITED, Some(timeout))
    }

    /// The exit code of an exited process.
    pub fn exit_code(&self) -> Result<u32, HcsError> {
        const OP: &str = "ExitCode";
        let c = self.with_handle(OP, |h| Ok(self.api.lib.get_process_properties(h)))?;
        check(OP, &self.target, c.hr, c.result.as_deref())?;
        let doc =
            c.value.ok_or_else(|| HcsError::new(OP, &self.target, Cause::UnexpectedValue("no properties".into())))?;
        let st: ProcessStatus = serde_json::from_str(&doc)
            .map_err(|e| HcsError::new(OP, &self.target, Cause::UnexpectedValue(e.to_string())))?;
        if !st.exited {
            return Err(HcsError::new(OP, &self.target, Cause::InvalidProcessState));
        }
        if st.last_wait_result != 0 {
            return Err(HcsError::new(
                OP,
                &self.target,
                Cause::Code {
                    code: win32_from_hresult(st.last_wait_result),
                    message: Some("waiting for the process failed".into()),
                    events: Vec::new(),
                },
            ));
        }
        Ok(st.exit_code)
    }

    fn modify(&self, op: &'static str, req: &ProcessModifyRequest) -> Result<(), HcsError> {
        let doc =
            to_go_json(req).map_err(|e| HcsError::new(op, &self.target, Cause::InvalidArgument(e.to_string())))?;
        let c = self.with_handle(op, |h| {
            self.api
                .lib
                .modify_process(h, &doc)
                .map_err(|_| HcsError::new(op, &self.target, Cause::InvalidArgument("NUL".into())))
        })?;
        check(op, &self.target, c.hr, c.result.as_deref())
    }

    /// Resizes the console (width first, as hcsshim's `ResizeConsole`).
    pub fn resize_console(&self, width: u16, height: u16) -> Result<(), HcsError> {
        self.modify("ResizeConsole", &ProcessModifyRequest::console_size(width, height))
    }

    /// Asks HCS to close the process's stdin, so it reads EOF. Always sends the request,
    /// whatever the state of the local pipe (hcsshim #1899 stopped doing so and broke EOF).
    pub fn close_stdin(&self) -> Result<(), HcsError> {
        self.modify("CloseStdin", &ProcessModifyRequest::close_stdin())
    }

    /// Releases the handle (does not kill). Waiters are woken with "already closed".
    pub fn close(&self) -> Result<(), HcsError> {
        let lib = &self.api.lib;
        close_handle(
            &self.target,
            &self.handle,
            &self.registration,
            &self.watcher,
            |cb| lib.unregister_process_callback(cb),
            |h| lib.close_process(h),
        )
    }

    /// Ends any wait on this process with "already closed", without closing the handle.
    /// Used when the system is gone but HCS never reported the process's exit.
    pub(crate) fn abandon_waiters(&self) {
        self.watcher.close();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            log::warn!("closing {}: {e}", self.target);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hresult_reduction() {
        assert_eq!(win32_from_hresult(0x8007_0490_u32 as i32), 0x490);
        assert_eq!(win32_from_hresult(0x8007_0002_u32 as i32), 2);
        assert_eq!(win32_from_hresult(0xC037_0103_u32 as i32), E_PENDING);
    }

    fn err(code: u32) -> HcsError {
        HcsError::new("Op", "container c", Cause::Code { code, message: None, events: vec![] })
    }

    #[test]
    fn predicates_match_hcsshim() {
        assert!(err(E_PENDING).is_pending());
        for c in [E_ALREADY_STOPPED, ERROR_NOT_FOUND, ERROR_PROC_NOT_FOUND] {
            assert!(err(c).is_already_stopped(), "{c:x}");
        }
        for c in [E_SYSTEM_NOT_FOUND, ERROR_NOT_FOUND, ERROR_PROC_NOT_FOUND] {
            assert!(err(c).is_not_exist(), "{c:x}");
            assert_eq!(err(c).kind(), ErrorKind::NotFound);
        }
        assert!(!err(E_SYSTEM_NOT_FOUND).is_already_stopped());
        assert!(err(E_INVALID_STATE).is_invalid_state());
        assert_eq!(err(E_INVALID_STATE).kind(), ErrorKind::System);
        assert!(HcsError::new("o", "t", Cause::AlreadyClosed).is_already_closed());
        assert_eq!(unavailable("x").kind(), ErrorKind::Unavailable);
    }

    #[test]
    fn result_document_in_message() {
        let e = call_error(
            "Start",
            "container c",
            0x8007_0002_u32 as i32,
            Some(
                r#"{"Error":-2147024894,"ErrorMessage":"The system cannot find the file specified.","ErrorEvents":[{"Message":"detail"}]}"#,
            ),
        );
        assert_eq!(e.code(), Some(2));
        assert_eq!(
            e.to_string(),
            "container c encountered an error during Start: HCS error 0x2: The system cannot find the file specified. [detail]"
        );
    }

    #[test]
    fn watcher_semantics() {
        let w = Watcher::default();
        // Completions are consumed once.
        w.notify(NOTIFY_SYSTEM_START_COMPLETED, 0);
        assert!(matches!(w.wait(NOTIFY_SYSTEM_START_COMPLETED, Some(Duration::ZERO)), WaitEnd::Status(0)));
        assert!(matches!(w.wait(NOTIFY_SYSTEM_START_COMPLETED, Some(Duration::ZERO)), WaitEnd::Timeout));
        // An exit ends completion waits, and is seen by every exit waiter.
        w.notify(NOTIFY_SYSTEM_EXITED, 0);
        assert!(matches!(w.wait(NOTIFY_SYSTEM_PAUSE_COMPLETED, None), WaitEnd::UnexpectedExit));
        assert!(matches!(w.wait(NOTIFY_SYSTEM_EXITED, None), WaitEnd::Status(0)));
        assert!(matches!(w.wait(NOTIFY_SYSTEM_EXITED, None), WaitEnd::Status(0)));
        let w2 = Watcher::default();
        w2.close();
        assert!(matches!(w2.wait(NOTIFY_PROCESS_EXITED, None), WaitEnd::Closed));
        let w3 = Watcher::default();
        w3.notify(NOTIFY_SERVICE_DISCONNECT, 0);
        assert!(matches!(w3.wait(NOTIFY_PROCESS_EXITED, None), WaitEnd::Disconnect));
    }

    #[test]
    fn waiting_threads_are_woken_by_notifications() {
        let w = Arc::new(Watcher::default());
        let w2 = w.clone();
        let t = std::thread::spawn(move || w2.wait_result("Wait", "t", NOTIFY_PROCESS_EXITED, None));
        w.notify(NOTIFY_PROCESS_EXITED, 0x8007_0005_u32 as i32);
        let e = t.join().unwrap().unwrap_err();
        assert_eq!(e.code(), Some(5));
    }

    #[test]
    fn load_failures_are_unavailable() {
        let e = HcsApi::load("/nonexistent/vmcompute.dll").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.to_string().contains("HCS is not available on this host"), "{e}");
        #[cfg(not(windows))]
        {
            let e = HcsApi::load_default().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unavailable);
            assert!(e.to_string().contains("HCS is not available on this host"), "{e}");
        }
    }
}
