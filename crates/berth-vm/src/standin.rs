//! The exec stand-in: a process on the host that stands for a process in the guest, so that
//! the caller of `exec` (the CLI, a library monitor) gets what it gets for a native exec — a
//! child with a pid to wait for and signal, exiting with the process's status. It is forked
//! by the caller (single-threaded), hands its stdio (or a terminal) to the supervisor over
//! the control socket, forwards the signals it receives, and exits with the status the
//! supervisor reports. If it is killed outright, the supervisor sees the connection close and
//! kills the guest process.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use berth_sys::signal::{self as sig, SigSet};
use rustix::event::{poll, PollFd, PollFlags};

use crate::ctl::{self, CtlReply, CtlRequest};

/// Asks the supervisor to start `process` with these descriptors (stdin, stdout, stderr,
/// or the terminal alone); returns the connection once it runs, or the agent's error.
pub fn start(ctl_path: &Path, process: serde_json::Value, fds: &[std::os::fd::BorrowedFd<'_>]) -> io::Result<OwnedFd> {
    let c = ctl::connect(ctl_path).map_err(|e| {
        io::Error::new(e.kind(), format!("connecting to the VM supervisor ({}): {e}", ctl_path.display()))
    })?;
    ctl::send(c.as_fd(), &CtlRequest::Exec { process }, fds)?;
    match ctl::recv::<CtlReply>(c.as_fd())? {
        Some((CtlReply::Started(_), _)) => Ok(c),
        Some((CtlReply::Error(e), _)) => Err(io::Error::other(e)),
        Some((other, _)) => Err(io::Error::other(format!("unexpected reply from the VM supervisor: {other:?}"))),
        None => Err(io::Error::other("the VM supervisor closed the connection")),
    }
}

/// The stand-in's life after [`start`]: forward signals, exit with the process's status.
/// Never returns.
pub fn wait(conn: OwnedFd) -> ! {
    let mut set = SigSet::empty();
    // SIGWINCH is passed on to the exec'd process as well, as it always was here.
    for s in sig::forwarded().chain([libc::SIGWINCH]) {
        let _ = set.add(s);
    }
    let _ = sig::set_mask(&set);
    let Ok(sigfd) = sig::signalfd(&set) else { berth_sys::process::exit_immediately(255) };
    loop {
        let mut fds = [PollFd::new(&conn, PollFlags::IN), PollFd::new(&sigfd, PollFlags::IN)];
        match poll(&mut fds, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => berth_sys::process::exit_immediately(255),
        }
        let (conn_ready, sig_ready) = (!fds[0].revents().is_empty(), !fds[1].revents().is_empty());
        if sig_ready {
            let mut info = [0u8; sig::SIGINFO_SIZE];
            while let Ok(n) = rustix::io::read(&sigfd, &mut info) {
                if n != info.len() {
                    break;
                }
                let signal = sig::siginfo_signo(&info) as i32;
                let _ = ctl::send(conn.as_fd(), &CtlRequest::Signal { signal }, &[]);
            }
        }
        if conn_ready {
            match ctl::recv::<CtlReply>(conn.as_fd()) {
                Ok(Some((CtlReply::Exit(code), _))) => berth_sys::process::exit_immediately(code),
                Ok(Some(_)) => {}
                _ => berth_sys::process::exit_immediately(crate::supervisor::VM_FAILURE_EXIT),
            }
        }
    }
}

/// `kill --all`: every process of the container, in the guest.
pub fn signal_all(ctl_path: &Path, signal: i32) -> io::Result<()> {
    match ctl::call(ctl_path, &CtlRequest::SignalAll { signal })? {
        CtlReply::Ok => Ok(()),
        CtlReply::Error(e) => Err(io::Error::other(e)),
        other => Err(io::Error::other(format!("unexpected reply from the VM supervisor: {other:?}"))),
    }
}
