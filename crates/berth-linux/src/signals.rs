//! Foreground `run`: forwarding signals to the container and proxying its terminal.
//!
//! Signals are blocked before the init is cloned and read from a signalfd, so no handler ever
//! runs asynchronously and the runtime stays single-threaded. One poll loop serves the
//! signalfd, the init's pidfd and, with a terminal, the PTY master and our stdin.

use std::os::fd::{AsFd, OwnedFd};

use berth_sys::signal::{self as sig, SigSet};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::process::{Pid, WaitOptions};

use crate::error::{Context, Error, Result};

/// Blocked signals plus the signalfd that receives them.
#[derive(Debug)]
pub struct Forwarder {
    fd: OwnedFd,
}

impl Forwarder {
    /// Blocks the forwarded signals (the child unblocks them before exec).
    pub fn block() -> Result<Forwarder> {
        let mut set = SigSet::empty();
        // What runc forwards, plus what this loop handles itself (SIGPIPE is forwarded too:
        // runc does, and the container may care).
        for s in sig::forwarded().chain([libc::SIGPIPE, libc::SIGWINCH, libc::SIGCHLD]) {
            set.add(s).ctx(|| "sigaddset".to_string())?;
        }
        sig::set_mask(&set).ctx(|| "blocking signals".to_string())?;
        let fd = sig::signalfd(&set).ctx(|| "signalfd".to_string())?;
        Ok(Forwarder { fd })
    }

    /// Forwards signals (and proxies the terminal) until the init exits; returns its exit
    /// status (128+N for a signal). With `reap_orphans` (a foreground `run` that made itself
    /// a child subreaper, as runc's does), every other child that exits is reaped too.
    pub fn wait(self, pid: i32, pidfd: &OwnedFd, master: Option<OwnedFd>, reap_orphans: bool) -> Result<i32> {
        let raw = RawTerminal::enter(master.is_some());
        if let Some(m) = &master {
            sync_winsize(m);
        }
        let stdin = rustix::stdio::stdin();
        let mut stdin_open = master.is_some();
        let mut master_open = master.is_some();
        let mut buf = vec![0u8; 32 * 1024];
        // The init's status when reaping orphans collected it first.
        let mut init_status = None;
        let code = loop {
            let mut fds = Vec::with_capacity(4);
            fds.push(PollFd::new(&self.fd, PollFlags::IN));
            fds.push(PollFd::new(pidfd, PollFlags::IN));
            if let (Some(m), true) = (&master, master_open) {
                fds.push(PollFd::new(m, PollFlags::IN));
            }
            let stdin_idx = fds.len();
            if stdin_open {
                fds.push(PollFd::new(&stdin, PollFlags::IN));
            }
            match poll(&mut fds, None) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(Error::io("poll", e)),
            }
            let sig_ready = !fds[0].revents().is_empty();
            let exited = !fds[1].revents().is_empty();
            let master_ready = master_open && fds.len() > 2 && !fds[2].revents().is_empty();
            let stdin_ready = stdin_open && !fds[stdin_idx].revents().is_empty();
            drop(fds);
            if sig_ready {
                let mut info = [0u8; sig::SIGINFO_SIZE];
                while let Ok(n) = rustix::io::read(&self.fd, &mut info) {
                    if n != info.len() {
                        break;
                    }
                    let signo = sig::siginfo_signo(&info) as i32;
                    match signo {
                        libc::SIGCHLD if reap_orphans => {
                            while let Ok(Some((p, st))) = rustix::process::wait(WaitOptions::NOHANG) {
                                if p.as_raw_nonzero().get() == pid {
                                    init_status = Some(st);
                                }
                            }
                        }
                        libc::SIGCHLD => {}
                        libc::SIGWINCH => {
                            if let Some(m) = &master {
                                sync_winsize(m);
                            }
                        }
                        s => {
                            let _ = sig::pidfd_send(pidfd.as_fd(), s);
                        }
                    }
                }
            }
            if master_ready {
                if let Some(m) = &master {
                    master_open = copy_once(m.as_fd(), rustix::stdio::stdout(), &mut buf);
                }
            }
            if stdin_ready {
                if let Some(m) = &master {
                    stdin_open = copy_once(stdin, m.as_fd(), &mut buf);
                }
            }
            if exited || init_status.is_some() {
                let status = match init_status.take() {
                    Some(st) => Some(st),
                    None => rustix::process::waitpid(Pid::from_raw(pid), WaitOptions::empty())
                        .ctx(|| "waiting for the container".to_string())?
                        .map(|(_, st)| st),
                };
                let code = match status {
                    Some(st) => st.exit_status().or_else(|| st.terminating_signal().map(|s| 128 + s)).unwrap_or(255),
                    None => 255,
                };
                break code;
            }
        };
        // Drain what the container wrote before exiting.
        if let (Some(m), true) = (&master, master_open) {
            let _ = rustix::io::ioctl_fionbio(m, true);
            while copy_once(m.as_fd(), rustix::stdio::stdout(), &mut buf) {}
        }
        drop(raw);
        Ok(code)
    }
}

/// Copies one read's worth from `from` to `to`; false on EOF or error.
fn copy_once(from: std::os::fd::BorrowedFd<'_>, to: std::os::fd::BorrowedFd<'_>, buf: &mut [u8]) -> bool {
    let n = match rustix::io::read(from, &mut *buf) {
        Ok(0) | Err(_) => return false,
        Ok(n) => n,
    };
    let mut off = 0;
    while off < n {
        match rustix::io::write(to, &buf[off..n]) {
            Ok(w) => off += w,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return false,
        }
    }
    true
}

fn sync_winsize(master: &OwnedFd) {
    if let Ok(ws) = rustix::termios::tcgetwinsize(rustix::stdio::stdin()) {
        let _ = rustix::termios::tcsetwinsize(master, ws);
    }
}

/// Puts the host terminal in raw mode while a container terminal is attached; restores it on
/// drop.
struct RawTerminal {
    saved: Option<rustix::termios::Termios>,
}

impl RawTerminal {
    fn enter(want: bool) -> RawTerminal {
        let stdin = rustix::stdio::stdin();
        if !want || !rustix::termios::isatty(stdin) {
            return RawTerminal { saved: None };
        }
        let Ok(saved) = rustix::termios::tcgetattr(stdin) else {
            return RawTerminal { saved: None };
        };
        let mut raw = saved.clone();
        raw.make_raw();
        let _ = rustix::termios::tcsetattr(stdin, rustix::termios::OptionalActions::Now, &raw);
        RawTerminal { saved: Some(saved) }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = rustix::termios::tcsetattr(rustix::stdio::stdin(), rustix::termios::OptionalActions::Now, t);
        }
    }
}
