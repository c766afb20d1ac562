//! How a seccomp listener gets from the container process to the agent at `listenerPath`.
//!
//! A filter with `SCMP_ACT_NOTIFY` rules suspends every matching syscall until the agent
//! answers it, and the agent can only answer once it holds the listener. If the process that
//! installed the filter had to pass the listener on itself (a `sendmsg`), a profile notifying
//! `sendmsg`, or any syscall the runtime makes before it, would suspend the runtime with the
//! listener still in its own hands: a deadlock. So the child only announces, before
//! installing, the descriptor number the kernel will give the listener (the lowest free one),
//! installs, and waits; the parent takes the descriptor with `pidfd_getfd`, which needs
//! nothing from the child, hands it to the agent, and only then tells the child to go on. Any
//! syscall the child makes meanwhile is the agent's to answer, as it would be later.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};

use crate::error::{Context, Error, Result};
use crate::sync::{Channel, Msg};

/// How long the parent waits for an announced listener to appear.
const TAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Child side: installs `filter`. With a listener, announces its descriptor number first and
/// afterwards waits until the parent has handed it to the agent. Returns the child's copy of
/// the listener, which must stay open until `execve` closes it (close-on-exec): the parent
/// may not have taken it before.
pub(crate) fn install(filter: &berth_seccomp::CompiledFilter, chan: &Channel) -> Result<Option<OwnedFd>> {
    let err = |e: berth_seccomp::SeccompError| Error::Invalid(format!("linux.seccomp: {e}"));
    if !filter.needs_listener() {
        return filter.install().map_err(err);
    }
    // The lowest free descriptor is the one the kernel gives the listener; nothing is opened
    // between here and the install.
    let probe = rustix::io::fcntl_dupfd_cloexec(chan.fd(), 0).ctx(|| "finding a free descriptor".to_string())?;
    let n = probe.as_raw_fd();
    drop(probe);
    chan.send(&Msg::SeccompListener(n), None).ctx(|| "announcing the seccomp listener".to_string())?;
    let listener = filter.install().map_err(err)?;
    if listener.as_ref().map(AsRawFd::as_raw_fd) != Some(n) {
        return Err(Error::Init(format!("the seccomp listener is not descriptor {n} as announced")));
    }
    match chan.recv().ctx(|| "waiting for the seccomp agent hand-off".to_string())? {
        Some((Msg::ListenerTaken, _)) => Ok(listener),
        Some((Msg::Abort(m), _)) => Err(Error::Init(m)),
        None => Err(Error::Init("runtime went away during the seccomp agent hand-off".into())),
        Some((other, _)) => Err(Error::Init(format!("unexpected message from the runtime: {other:?}"))),
    }
}

/// Whether `fd` is a seccomp listener (`anon_inode:seccomp notify`).
fn is_listener(fd: BorrowedFd<'_>) -> bool {
    rustix::fs::readlink(format!("/proc/self/fd/{}", fd.as_raw_fd()), Vec::new())
        .is_ok_and(|t| t.as_bytes() == b"anon_inode:seccomp notify")
}

/// Parent side: takes descriptor `n` of the process behind `pidfd` once it is a seccomp
/// listener. The child announced it before installing the filter, so it may not exist yet;
/// a message on `chan` meanwhile (an error) means it never will.
pub(crate) fn take_listener(pidfd: BorrowedFd<'_>, n: i32, chan: &Channel) -> Result<OwnedFd> {
    let deadline = Instant::now() + TAKE_TIMEOUT;
    let take = || -> Result<Option<OwnedFd>> {
        match rustix::process::pidfd_getfd(pidfd, n, rustix::process::PidfdGetfdFlags::empty()) {
            Ok(fd) if is_listener(fd.as_fd()) => Ok(Some(fd)),
            Ok(_) | Err(rustix::io::Errno::BADF) => Ok(None),
            Err(e) => Err(Error::io("taking the seccomp listener from the container process (pidfd_getfd)", e)),
        }
    };
    loop {
        if let Some(fd) = take()? {
            return Ok(fd);
        }
        let chan_fd = chan.fd();
        let mut fds = [PollFd::new(&chan_fd, PollFlags::IN)];
        let ts = rustix::event::Timespec { tv_sec: 0, tv_nsec: 1_000_000 };
        let news = matches!(rustix::event::poll(&mut fds, Some(&ts)), Ok(n) if n > 0);
        if news {
            if let Some(fd) = take()? {
                return Ok(fd);
            }
            return Err(match chan.recv().ctx(|| "waiting for the seccomp listener".to_string())? {
                Some((Msg::Error(m), _)) => Error::Init(m),
                None => Error::Init("the container process exited before installing its seccomp filter".into()),
                Some((other, _)) => Error::Init(format!("no seccomp listener at descriptor {n}, but {other:?}")),
            });
        }
        if Instant::now() > deadline {
            return Err(Error::Init(format!(
                "the seccomp listener announced as descriptor {n} did not appear within {}s",
                TAKE_TIMEOUT.as_secs()
            )));
        }
    }
}
