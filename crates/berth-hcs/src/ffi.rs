//! The only `unsafe` code of this crate: loading the HCS library at run time and calling its
//! C entry points.
//!
//! hcsshim v0.6.8 called these `vmcompute.dll` exports (`//sys ... = vmcompute.HcsXxx?`):
//! `HcsCreateComputeSystem`, `HcsOpenComputeSystem`, `HcsCloseComputeSystem`,
//! `HcsStart/Shutdown/Terminate/Pause/ResumeComputeSystem`, `HcsGetComputeSystemProperties`,
//! `HcsRegister/UnregisterComputeSystemCallback`, `HcsCreateProcess`, `HcsCloseProcess`,
//! `HcsTerminateProcess`, `HcsGetProcessProperties`, `HcsModifyProcess`,
//! `HcsRegister/UnregisterProcessCallback`, plus `NameToGuid`. Strings go in as
//! NUL-terminated UTF-16; result and property documents come back as UTF-16 strings the
//! caller frees with `CoTaskMemFree`; completion of asynchronous operations arrives through a
//! registered callback on an HCS thread.
//!
//! The library is loaded with libloading (dlopen/LoadLibrary), never linked, so the crate
//! builds and runs everywhere and reports HCS as unavailable where there is none. A test can
//! point [`Library::load`] at a stand-in library exporting the same symbols.
//!
//! Everything here is a thin typed wrapper; the safe layer (`crate::hcs`) owns the semantics.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::fs::File;
use std::path::Path;

/// An HCS handle (`HCS_SYSTEM`, `HCS_PROCESS`, `HCS_CALLBACK`, or a pipe `HANDLE`) as a plain
/// integer, so the safe layer can store and compare it without raw pointers.
pub(crate) type RawHandle = usize;

type Handle = *mut c_void;
type Hresult = i32;
type Pcwstr = *const u16;
type Pwstr = *mut u16;

/// `HCS_PROCESS_INFORMATION`.
#[repr(C)]
struct ProcessInformation {
    process_id: u32,
    reserved: u32,
    std_input: Handle,
    std_output: Handle,
    std_error: Handle,
}

/// `HCS_NOTIFICATION_CALLBACK`.
type NotificationCallback =
    extern "system" fn(notification_type: u32, context: *mut c_void, status: Hresult, data: Pcwstr);

type FnCreateSystem = unsafe extern "system" fn(Pcwstr, Pcwstr, Handle, *mut Handle, *mut Pwstr) -> Hresult;
type FnOpenSystem = unsafe extern "system" fn(Pcwstr, *mut Handle, *mut Pwstr) -> Hresult;
type FnClose = unsafe extern "system" fn(Handle) -> Hresult;
type FnSystemOp = unsafe extern "system" fn(Handle, Pcwstr, *mut Pwstr) -> Hresult;
type FnGetSystemProps = unsafe extern "system" fn(Handle, Pcwstr, *mut Pwstr, *mut Pwstr) -> Hresult;
type FnRegister = unsafe extern "system" fn(Handle, NotificationCallback, *mut c_void, *mut Handle) -> Hresult;
type FnCreateProcess =
    unsafe extern "system" fn(Handle, Pcwstr, *mut ProcessInformation, *mut Handle, *mut Pwstr) -> Hresult;
type FnTerminateProcess = unsafe extern "system" fn(Handle, *mut Pwstr) -> Hresult;
type FnGetProcessProps = unsafe extern "system" fn(Handle, *mut Pwstr, *mut Pwstr) -> Hresult;
type FnNameToGuid = unsafe extern "system" fn(Pcwstr, *mut [u8; 16]) -> Hresult;
type FnFree = unsafe extern "system" fn(*mut c_void);

struct Fns {
    create_compute_system: FnCreateSystem,
    open_compute_system: FnOpenSystem,
    close_compute_system: FnClose,
    start_compute_system: FnSystemOp,
    shutdown_compute_system: FnSystemOp,
    terminate_compute_system: FnSystemOp,
    pause_compute_system: FnSystemOp,
    resume_compute_system: FnSystemOp,
    get_compute_system_properties: FnGetSystemProps,
    register_compute_system_callback: FnRegister,
    unregister_compute_system_callback: FnClose,
    create_process: FnCreateProcess,
    close_process: FnClose,
    terminate_process: FnTerminateProcess,
    get_process_properties: FnGetProcessProps,
    modify_process: FnSystemOp,
    register_process_callback: FnRegister,
    unregister_process_callback: FnClose,
    name_to_guid: FnNameToGuid,
    co_task_mem_free: FnFree,
}

/// A loaded HCS library. Loaded once and never unloaded: HCS calls back into this process
/// from its own threads at any time, and those calls go through code of the library.
pub(crate) struct Library {
    fns: Fns,
}

/// The outcome of one HCS call: its HRESULT, its output, and the result document if any.
pub(crate) struct Call<T> {
    pub hr: i32,
    pub value: T,
    pub result: Option<String>,
}

/// A string argument that contains NUL cannot be passed as a C string.
#[derive(Debug)]
pub(crate) struct InteriorNul;

/// The empty options string hcsshim passed to start/shutdown/terminate/pause/resume.
const EMPTY: &[u16] = &[0];

fn wide(s: &str) -> Result<Vec<u16>, InteriorNul> {
    if s.contains('\0') {
        return Err(InteriorNul);
    }
    Ok(s.encode_utf16().chain(std::iter::once(0)).collect())
}

macro_rules! sym {
    ($lib:expr, $name:literal) => {{
        // SAFETY: the symbol is declared with the signature hcsshim v0.6.8 uses for this
        // export (vmcompute's C ABI); the library is leaked, so the pointer stays valid.
        let s = unsafe { $lib.get(concat!($name, "\0").as_bytes()) }
            .map_err(|e| format!("{}: missing export {}: {e}", "HCS library", $name))?;
        *s
    }};
}

impl Library {
    /// Loads the HCS library at `path` and resolves every entry point berth uses.
    pub(crate) fn load(path: &Path) -> Result<Library, String> {
        // SAFETY: loading runs the library's initialisers. The caller chose this library as
        // the HCS implementation (vmcompute.dll or a test stand-in), which is trusted code.
        let lib = unsafe { libloading::Library::new(path) }.map_err(|e| format!("loading {}: {e}", path.display()))?;
        Self::resolve(lib)
    }

    /// Loads `vmcompute.dll` from the system directory only (as hcsshim's
    /// `NewLazySystemDLL` did), never from the current directory or PATH.
    #[cfg(windows)]
    pub(crate) fn load_system() -> Result<Library, String> {
        use libloading::os::windows as w;
        // SAFETY: as in `load`; LOAD_LIBRARY_SEARCH_SYSTEM32 restricts the search to
        // %windir%\System32.
        let lib = unsafe { w::Library::load_with_flags("vmcompute.dll", w::LOAD_LIBRARY_SEARCH_SYSTEM32) }
            .map_err(|e| format!("loading vmcompute.dll: {e}"))?;
        Self::resolve(libloading::Library::from(lib))
    }

    fn resolve(lib: libloading::Library) -> Result<Library, String> {
        let lib: &'static libloading::Library = Box::leak(Box::new(lib));
        // SAFETY: `CoTaskMemFree(void*)` is the allocator HCS documents for its out strings;
        // a stand-in library may export its own.
        let own_free = unsafe { lib.get::<FnFree>(b"CoTaskMemFree\0") };
        let co_task_mem_free: FnFree = match own_free {
            Ok(s) => *s,
            Err(e) => ole32_free().ok_or_else(|| format!("HCS library: missing export CoTaskMemFree: {e}"))?,
        };
        Ok(Library {
            fns: Fns {
                create_compute_system: sym!(lib, "HcsCreateComputeSystem"),
                open_compute_system: sym!(lib, "HcsOpenComputeSystem"),
                close_compute_system: sym!(lib, "HcsCloseComputeSystem"),
                start_compute_system: sym!(lib, "HcsStartComputeSystem"),
                shutdown_compute_system: sym!(lib, "HcsShutdownComputeSystem"),
                terminate_compute_system: sym!(lib, "HcsTerminateComputeSystem"),
                pause_compute_system: sym!(lib, "HcsPauseComputeSystem"),
                resume_compute_system: sym!(lib, "HcsResumeComputeSystem"),
                get_compute_system_properties: sym!(lib, "HcsGetComputeSystemProperties"),
                register_compute_system_callback: sym!(lib, "HcsRegisterComputeSystemCallback"),
                unregister_compute_system_callback: sym!(lib, "HcsUnregisterComputeSystemCallback"),
                create_process: sym!(lib, "HcsCreateProcess"),
                close_process: sym!(lib, "HcsCloseProcess"),
                terminate_process: sym!(lib, "HcsTerminateProcess"),
                get_process_properties: sym!(lib, "HcsGetProcessProperties"),
                modify_process: sym!(lib, "HcsModifyProcess"),
                register_process_callback: sym!(lib, "HcsRegisterProcessCallback"),
                unregister_process_callback: sym!(lib, "HcsUnregisterProcessCallback"),
                name_to_guid: sym!(lib, "NameToGuid"),
                co_task_mem_free,
            },
        })
    }

    /// Takes ownership of an HCS-allocated string: copies it out and frees it.
    fn take_string(&self, p: Pwstr) -> Option<String> {
        if p.is_null() {
            return None;
        }
        // SAFETY: HCS returns NUL-terminated UTF-16 strings it allocated; `p` is non-null
        // and is read only up to its terminator, then released once with CoTaskMemFree.
        let s = unsafe {
            let mut len = 0usize;
            while *p.add(len) != 0 {
                len += 1;
            }
            let s = String::from_utf16_lossy(std::slice::from_raw_parts(p, len));
            (self.fns.co_task_mem_free)(p.cast());
            s
        };
        Some(s)
    }

    pub(crate) fn create_compute_system(&self, id: &str, config: &str) -> Result<Call<RawHandle>, InteriorNul> {
        let (id, config) = (wide(id)?, wide(config)?);
        let mut h: Handle = std::ptr::null_mut();
        let mut result: Pwstr = std::ptr::null_mut();
        // SAFETY: both strings are NUL-terminated and outlive the call; the out pointers
        // point to live locals. No identity token (NULL), as hcsshim passed.
        let hr = unsafe {
            (self.fns.create_compute_system)(id.as_ptr(), config.as_ptr(), std::ptr::null_mut(), &mut h, &mut result)
        };
        Ok(Call { hr, value: h as RawHandle, result: self.take_string(result) })
    }

    pub(crate) fn open_compute_system(&self, id: &str) -> Result<Call<RawHandle>, InteriorNul> {
        let id = wide(id)?;
        let mut h: Handle = std::ptr::null_mut();
        let mut result: Pwstr = std::ptr::null_mut();
        // SAFETY: NUL-terminated input that outlives the call; out pointers to live locals.
        let hr = unsafe { (self.fns.open_compute_system)(id.as_ptr(), &mut h, &mut result) };
        Ok(Call { hr, value: h as RawHandle, result: self.take_string(result) })
    }

    /// `options` must be NUL-terminated UTF-16 (from `wide`, or [`EMPTY`]).
    fn system_op(&self, f: FnSystemOp, h: RawHandle, options: &[u16]) -> Call<()> {
        let mut result: Pwstr = std::ptr::null_mut();
        // SAFETY: `h` is a handle HCS returned and the safe layer has not closed (it holds the
        // handle lock); `options` is NUL-terminated and outlives the call.
        let hr = unsafe { f(h as Handle, options.as_ptr(), &mut result) };
        Call { hr, value: (), result: self.take_string(result) }
    }

    pub(crate) fn start_compute_system(&self, h: RawHandle) -> Call<()> {
        self.system_op(self.fns.start_compute_system, h, EMPTY)
    }
    pub(crate) fn shutdown_compute_system(&self, h: RawHandle) -> Call<()> {
        self.system_op(self.fns.shutdown_compute_system, h, EMPTY)
    }
    pub(crate) fn terminate_compute_system(&self, h: RawHandle) -> Call<()> {
        self.system_op(self.fns.terminate_compute_system, h, EMPTY)
    }
    pub(crate) fn pause_compute_system(&self, h: RawHandle) -> Call<()> {
        self.system_op(self.fns.pause_compute_system, h, EMPTY)
    }
    pub(crate) fn resume_compute_system(&self, h: RawHandle) -> Call<()> {
        self.system_op(self.fns.resume_compute_system, h, EMPTY)
    }

    pub(crate) fn get_compute_system_properties(
        &self,
        h: RawHandle,
        query: &str,
    ) -> Result<Call<Option<String>>, InteriorNul> {
        let query = wide(query)?;
        let mut props: Pwstr = std::ptr::null_mut();
        let mut result: Pwstr = std::ptr::null_mut();
        // SAFETY: live handle (see system_op), NUL-terminated query, out pointers to locals.
        let hr =
            unsafe { (self.fns.get_compute_system_properties)(h as Handle, query.as_ptr(), &mut props, &mut result) };
        Ok(Call { hr, value: self.take_string(props), result: self.take_string(result) })
    }

    pub(crate) fn close_compute_system(&self, h: RawHandle) -> i32 {
        // SAFETY: the safe layer closes each handle exactly once, under its write lock.
        unsafe { (self.fns.close_compute_system)(h as Handle) }
    }

    fn register(&self, f: FnRegister, h: RawHandle, context: usize) -> Call<RawHandle> {
        let mut cb: Handle = std::ptr::null_mut();
        // SAFETY: live handle; `trampoline` is a plain function that lives as long as the
        // process; `context` is an integer key, never dereferenced by anyone.
        let hr = unsafe { f(h as Handle, trampoline, context as *mut c_void, &mut cb) };
        Call { hr, value: cb as RawHandle, result: None }
    }

    pub(crate) fn register_compute_system_callback(&self, h: RawHandle, context: usize) -> Call<RawHandle> {
        self.register(self.fns.register_compute_system_callback, h, context)
    }
    pub(crate) fn register_process_callback(&self, h: RawHandle, context: usize) -> Call<RawHandle> {
        self.register(self.fns.register_process_callback, h, context)
    }

    pub(crate) fn unregister_compute_system_callback(&self, cb: RawHandle) -> i32 {
        // SAFETY: `cb` came from a successful register call and is unregistered once.
        unsafe { (self.fns.unregister_compute_system_callback)(cb as Handle) }
    }
    pub(crate) fn unregister_process_callback(&self, cb: RawHandle) -> i32 {
        // SAFETY: as above.
        unsafe { (self.fns.unregister_process_callback)(cb as Handle) }
    }

    /// `HcsCreateProcess`: returns (pid, process handle, stdin, stdout, stderr handles).
    pub(crate) fn create_process(
        &self,
        h: RawHandle,
        params: &str,
    ) -> Result<Call<(u32, RawHandle, [RawHandle; 3])>, InteriorNul> {
        let params = wide(params)?;
        let mut info = ProcessInformation {
            process_id: 0,
            reserved: 0,
            std_input: std::ptr::null_mut(),
            std_output: std::ptr::null_mut(),
            std_error: std::ptr::null_mut(),
        };
        let mut ph: Handle = std::ptr::null_mut();
        let mut result: Pwstr = std::ptr::null_mut();
        // SAFETY: live system handle; NUL-terminated parameters; `info` is a correctly laid
        // out HCS_PROCESS_INFORMATION local; out pointers to locals.
        let hr = unsafe { (self.fns.create_process)(h as Handle, params.as_ptr(), &mut info, &mut ph, &mut result) };
        Ok(Call {
            hr,
            value: (
                info.process_id,
                ph as RawHandle,
                [info.std_input as RawHandle, info.std_output as RawHandle, info.std_error as RawHandle],
            ),
            result: self.take_string(result),
        })
    }

    pub(crate) fn terminate_process(&self, p: RawHandle) -> Call<()> {
        let mut result: Pwstr = std::ptr::null_mut();
        // SAFETY: live process handle (held under the process handle lock); out pointer to a local.
        let hr = unsafe { (self.fns.terminate_process)(p as Handle, &mut result) };
        Call { hr, value: (), result: self.take_string(result) }
    }

    pub(crate) fn get_process_properties(&self, p: RawHandle) -> Call<Option<String>> {
        let mut props: Pwstr = std::ptr::null_mut();
        let mut result: Pwstr = std::ptr::null_mut();
        // SAFETY: live process handle; out pointers to locals.
        let hr = unsafe { (self.fns.get_process_properties)(p as Handle, &mut props, &mut result) };
        Call { hr, value: self.take_string(props), result: self.take_string(result) }
    }

    pub(crate) fn modify_process(&self, p: RawHandle, settings: &str) -> Result<Call<()>, InteriorNul> {
        Ok(self.system_op(self.fns.modify_process, p, &wide(settings)?))
    }

    pub(crate) fn close_process(&self, p: RawHandle) -> i32 {
        // SAFETY: the safe layer closes each process handle exactly once.
        unsafe { (self.fns.close_process)(p as Handle) }
    }

    pub(crate) fn name_to_guid(&self, name: &str) -> Result<(i32, [u8; 16]), InteriorNul> {
        let name = wide(name)?;
        let mut g = [0u8; 16];
        // SAFETY: NUL-terminated name; `g` is a 16-byte GUID out buffer.
        let hr = unsafe { (self.fns.name_to_guid)(name.as_ptr(), &mut g) };
        Ok((hr, g))
    }
}

/// Where HCS notifications enter Rust. `context` is the integer key the safe layer registered.
extern "system" fn trampoline(kind: u32, context: *mut c_void, status: Hresult, _data: Pcwstr) {
    // Never unwinds into the caller: `dispatch` takes poisoned locks and has no panicking
    // paths, and an abort is preferable to unwinding across C frames anyway.
    crate::hcs::dispatch_notification(context as usize, kind, status);
}

#[cfg(windows)]
fn ole32_free() -> Option<FnFree> {
    // SAFETY: ole32.dll is a system library; it is leaked like vmcompute.dll.
    let lib = unsafe {
        libloading::os::windows::Library::load_with_flags(
            "ole32.dll",
            libloading::os::windows::LOAD_LIBRARY_SEARCH_SYSTEM32,
        )
    }
    .ok()?;
    let lib: &'static libloading::Library = Box::leak(Box::new(libloading::Library::from(lib)));
    // SAFETY: documented signature `void CoTaskMemFree(LPVOID)`.
    unsafe { lib.get::<FnFree>(b"CoTaskMemFree\0") }.ok().map(|s| *s)
}

#[cfg(not(windows))]
fn ole32_free() -> Option<FnFree> {
    None
}

/// Wraps a pipe handle HCS returned (non-zero) as an owned file; 0 means "no pipe". On
/// non-Windows hosts (a stand-in library) the handle is a file descriptor.
pub(crate) fn handle_to_file(h: RawHandle) -> Option<File> {
    if h == 0 {
        return None;
    }
    #[cfg(windows)]
    {
        use std::os::windows::io::{FromRawHandle, OwnedHandle};
        // SAFETY: HCS hands the caller ownership of the pipe handles it returns from
        // HcsCreateProcess; each is wrapped exactly once.
        let owned = unsafe { OwnedHandle::from_raw_handle(h as *mut c_void) };
        Some(File::from(owned))
    }
    #[cfg(unix)]
    {
        use std::os::fd::{FromRawFd, OwnedFd};
        let fd = i32::try_from(h).ok()?;
        // SAFETY: the stand-in hands over ownership of the descriptors it returns, like HCS
        // does with handles; each is wrapped exactly once.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Some(File::from(owned))
    }
}

/// The Windows build number (`RtlGetVersion`), or `None` off Windows.
#[cfg(windows)]
pub(crate) fn windows_build() -> Option<u32> {
    #[repr(C)]
    struct OsVersionInfoW {
        size: u32,
        major: u32,
        minor: u32,
        build: u32,
        platform: u32,
        csd: [u16; 128],
    }
    type FnRtlGetVersion = unsafe extern "system" fn(*mut OsVersionInfoW) -> i32;
    // SAFETY: ntdll.dll is always loaded in a Windows process; RtlGetVersion fills the
    // OSVERSIONINFOW whose size field we set.
    unsafe {
        let lib = libloading::os::windows::Library::load_with_flags(
            "ntdll.dll",
            libloading::os::windows::LOAD_LIBRARY_SEARCH_SYSTEM32,
        )
        .ok()?;
        let f = lib.get::<FnRtlGetVersion>(b"RtlGetVersion\0").ok()?;
        let mut v = OsVersionInfoW {
            size: std::mem::size_of::<OsVersionInfoW>() as u32,
            major: 0,
            minor: 0,
            build: 0,
            platform: 0,
            csd: [0; 128],
        };
        if f(&mut v) != 0 {
            return None;
        }
        Some(v.build)
    }
}

/// The Windows build number, or `None` off Windows.
#[cfg(not(windows))]
pub(crate) fn windows_build() -> Option<u32> {
    None
}
