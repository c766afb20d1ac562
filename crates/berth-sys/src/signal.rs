//! Signal masks, dispositions and signalfd.
//!
//! The runtime forwards signals with a blocked mask plus a `signalfd` (no handlers, so nothing
//! runs asynchronously). Children must undo both before `execve`: a blocked mask and ignored
//! dispositions survive exec, and Rust's runtime ignores SIGPIPE at start-up, which would
//! otherwise leak into every container process.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use crate::{cvt, cvt_int, owned};

/// The signals a runtime passes on to the container's process, as runc does: every
/// asynchronous one it does not handle itself (SIGCHLD, SIGWINCH and SIGPIPE are each caller's
/// own business), then the real-time ones from glibc's SIGRTMIN (32 and 33 belong to its
/// threading) to 64; systemd in a container stops on SIGRTMIN+3.
pub fn forwarded() -> impl Iterator<Item = i32> {
    const CLASSIC: &[i32] = &[
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGALRM,
        libc::SIGTERM,
        libc::SIGCONT,
        libc::SIGTSTP,
        libc::SIGTTIN,
        libc::SIGTTOU,
        libc::SIGURG,
        libc::SIGVTALRM,
        libc::SIGPROF,
        libc::SIGIO,
        libc::SIGPWR,
        libc::SIGSYS,
    ];
    CLASSIC.iter().copied().chain(34..=64)
}

/// A set of signals.
#[derive(Clone, Copy)]
pub struct SigSet(libc::sigset_t);

impl SigSet {
    /// The empty set.
    pub fn empty() -> Self {
        // SAFETY: sigset_t is plain data; sigemptyset initialises it fully.
        let mut s = unsafe { std::mem::zeroed::<libc::sigset_t>() };
        // SAFETY: `s` is a valid, writable sigset_t.
        unsafe { libc::sigemptyset(&mut s) };
        SigSet(s)
    }

    /// Every signal.
    pub fn full() -> Self {
        let mut s = Self::empty();
        // SAFETY: `s.0` is a valid, initialised sigset_t.
        unsafe { libc::sigfillset(&mut s.0) };
        s
    }

    /// Adds `sig`.
    pub fn add(&mut self, sig: i32) -> io::Result<()> {
        // SAFETY: `self.0` is a valid, initialised sigset_t.
        cvt_int(unsafe { libc::sigaddset(&mut self.0, sig) }).map(drop)
    }

    /// Removes `sig`.
    pub fn remove(&mut self, sig: i32) -> io::Result<()> {
        // SAFETY: `self.0` is a valid, initialised sigset_t.
        cvt_int(unsafe { libc::sigdelset(&mut self.0, sig) }).map(drop)
    }
}

impl std::fmt::Debug for SigSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigSet")
    }
}

/// Sets the calling thread's signal mask to `set`, returning the previous mask.
pub fn set_mask(set: &SigSet) -> io::Result<SigSet> {
    let mut old = SigSet::empty();
    // SAFETY: both pointers refer to valid sigset_t values owned by this frame.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &set.0, &mut old.0) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(old)
}

/// Resets every catchable signal to `SIG_DFL` and unblocks everything. Called in a child
/// right before `execve`.
pub fn reset_all() -> io::Result<()> {
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP || (32..34).contains(&sig) {
            continue;
        }
        // SAFETY: SIG_DFL is a valid disposition for every catchable signal; glibc-reserved
        // signals 32 and 33 are skipped. No handler function is installed.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    set_mask(&SigSet::empty()).map(drop)
}

/// Restores `SIG_DFL` for one signal.
pub fn set_default(sig: i32) -> io::Result<()> {
    // SAFETY: SIG_DFL installs no handler function.
    if unsafe { libc::signal(sig, libc::SIG_DFL) } == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Creates a non-blocking, close-on-exec `signalfd` for `set` (the signals must be blocked).
pub fn signalfd(set: &SigSet) -> io::Result<OwnedFd> {
    // SAFETY: -1 asks for a new descriptor; `set` is a valid sigset_t.
    let fd = unsafe { libc::signalfd(-1, &set.0, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    owned(libc::c_long::from(cvt_int(fd)?))
}

/// Size of `struct signalfd_siginfo`.
pub const SIGINFO_SIZE: usize = std::mem::size_of::<libc::signalfd_siginfo>();

/// The signal number in a `struct signalfd_siginfo` read from a signalfd.
pub fn siginfo_signo(buf: &[u8; SIGINFO_SIZE]) -> u32 {
    // ssi_signo is the first field, a native-endian u32.
    u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]])
}

/// The highest signal number Linux has (`SIGRTMAX` without glibc's adjustment).
pub const SIGMAX: i32 = 64;

/// Signal `n` (1 to 64, the real-time ones included) as a rustix [`Signal`], which offers
/// only the named standard signals through its safe constructors.
///
/// [`Signal`]: rustix::process::Signal
pub fn number(n: i32) -> Option<rustix::process::Signal> {
    if !(1..=SIGMAX).contains(&n) {
        return None;
    }
    // SAFETY: `n` is a valid Linux signal number (1..=64); rustix's only requirement for an
    // unchecked signal is that it is not one libc reserves for itself, and the values 32 and
    // 33 (glibc's) are still valid for the kernel, which is all this is used for: kill(2) and
    // pidfd_send_signal(2) of a caller-chosen number, as `runc kill` sends it.
    Some(unsafe { rustix::process::Signal::from_raw_unchecked(n) })
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)` for any signal number 0 to 64; 0 only checks
/// that the process exists (the liveness probe of `kill ID 0`).
pub fn pidfd_send(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    if !(0..=SIGMAX).contains(&sig) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: a raw syscall with a borrowed, open descriptor, a plain integer and a null
    // siginfo (allowed: the kernel then fills in the usual kill(2) siginfo).
    cvt(unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), sig, std::ptr::null::<libc::siginfo_t>(), 0u32)
    })
    .map(drop)
}

/// `kill(pid, sig)` for any signal number 0 to 64.
pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    if pid <= 0 || !(0..=SIGMAX).contains(&sig) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: kill with a positive pid (one process, never a group or everyone) and a
    // signal number the kernel validates.
    cvt_int(unsafe { libc::kill(pid, sig) }).map(drop)
}
