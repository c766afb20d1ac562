//! The supervisor's control socket (`vm/ctl.sock`, `SOCK_SEQPACKET`): how processes on the
//! host that are not the supervisor reach the guest — an exec stand-in hands over its stdio
//! and waits for the exit status; `kill --all` signals every process in the guest; `ps` and
//! stats ask the guest for its processes and its container cgroup's statistics. One JSON
//! document per packet, descriptors as `SCM_RIGHTS`.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::net::{
    sendmsg, AddressFamily, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix,
    SocketFlags, SocketType,
};
use serde::{Deserialize, Serialize};

use crate::proto::GuestProcess;

const MAX_FDS: usize = 3;
const MAX_PACKET: usize = 1 << 20;

/// Client → supervisor.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum CtlRequest {
    /// Run `process` in the container. Descriptors: stdin, stdout, stderr, or one terminal
    /// (the slave of a host PTY whose master the caller keeps).
    Exec {
        /// The OCI process.
        process: serde_json::Value,
    },
    /// Signal the exec this connection started.
    Signal {
        /// Signal number.
        signal: i32,
    },
    /// Signal every process of the container (`kill --all`).
    SignalAll {
        /// Signal number.
        signal: i32,
    },
    /// SIGKILL for the container (`kill ID KILL`, `delete --force`): the supervisor stops
    /// the VM, reaps QEMU and virtiofsd, and exits with 137, as an init killed by SIGKILL
    /// would. (A SIGKILL to the supervisor itself would leave QEMU and virtiofsd to die of
    /// their parent-death signal as orphans of whatever reaper is above.) No reply: the caller
    /// waits for the supervisor's exit, and it may be frozen until the caller thaws it.
    Kill,
    /// The container's processes in the guest (`ps`, `list_pids`, the shim's `Pids`).
    Processes,
    /// The guest container cgroup's statistics (`events --stats`, `stats`, the shim's
    /// `Stats`).
    Stats,
}

/// Supervisor → client.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum CtlReply {
    /// The exec runs (its guest pid).
    Started(i32),
    /// The exec exited with this status (128+N for a signal).
    Exit(i32),
    /// Done.
    Ok,
    /// The request failed.
    Error(String),
    /// The answer to [`CtlRequest::Processes`].
    Processes(Vec<GuestProcess>),
    /// The answer to [`CtlRequest::Stats`].
    Stats(Box<berth_cgroups::Stats>),
}

/// Sends one packet with descriptors.
pub fn send<T: Serialize>(sock: BorrowedFd<'_>, msg: &T, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let data = serde_json::to_vec(msg).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut anc = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && (fds.len() > MAX_FDS || !anc.push(SendAncillaryMessage::ScmRights(fds))) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many descriptors"));
    }
    loop {
        match sendmsg(sock, &[io::IoSlice::new(&data)], &mut anc, SendFlags::NOSIGNAL) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives one packet; `Ok(None)` at end of stream.
pub fn recv<T: for<'a> Deserialize<'a>>(sock: BorrowedFd<'_>) -> io::Result<Option<(T, Vec<OwnedFd>)>> {
    let mut buf = vec![0u8; MAX_PACKET];
    let (bytes, fds) = berth_sys::fd::recv_with_fds(sock, &mut buf, RecvFlags::empty())?;
    if bytes == 0 && fds.is_empty() {
        return Ok(None);
    }
    let msg = serde_json::from_slice(&buf[..bytes]).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(Some((msg, fds)))
}

/// Connects to a supervisor.
pub fn connect(path: &Path) -> io::Result<OwnedFd> {
    let s = rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?;
    rustix::net::connect(&s, &SocketAddrUnix::new(path)?)?;
    Ok(s)
}

/// Listens on `path`.
pub fn listen(path: &Path) -> io::Result<OwnedFd> {
    let s = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    rustix::net::bind(&s, &SocketAddrUnix::new(path)?)?;
    rustix::net::listen(&s, 16)?;
    Ok(s)
}

/// Sends `req` without waiting for a reply (a frozen supervisor answers only once thawed,
/// but the connection and the packet queue in the kernel meanwhile).
pub fn post(path: &Path, req: &CtlRequest) -> io::Result<()> {
    let s = connect(path)?;
    send(s.as_fd_borrowed(), req, &[])
}

/// One request/reply exchange (for `kill --all`).
pub fn call(path: &Path, req: &CtlRequest) -> io::Result<CtlReply> {
    call_within(path, req, None)
}

/// One request/reply exchange that gives up after `timeout` (a frozen or wedged supervisor
/// never answers; the caller must not hang on it).
pub fn call_within(path: &Path, req: &CtlRequest, timeout: Option<std::time::Duration>) -> io::Result<CtlReply> {
    let s = connect(path)
        .map_err(|e| io::Error::new(e.kind(), format!("connecting to the VM supervisor ({}): {e}", path.display())))?;
    if timeout.is_some() {
        rustix::net::sockopt::set_socket_timeout(&s, rustix::net::sockopt::Timeout::Recv, timeout)?;
    }
    send(s.as_fd_borrowed(), req, &[])?;
    match recv::<CtlReply>(s.as_fd_borrowed()) {
        Ok(Some((r, _))) => Ok(r),
        Ok(None) => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the VM supervisor closed the connection")),
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the VM supervisor did not answer within {}s", timeout.unwrap_or_default().as_secs()),
        )),
        Err(e) => Err(e),
    }
}

fn unexpected(r: CtlReply) -> io::Error {
    match r {
        CtlReply::Error(e) => io::Error::other(e),
        other => io::Error::other(format!("unexpected reply from the VM supervisor: {other:?}")),
    }
}

/// The container's processes in the guest.
pub fn processes(path: &Path, timeout: std::time::Duration) -> io::Result<Vec<GuestProcess>> {
    match call_within(path, &CtlRequest::Processes, Some(timeout))? {
        CtlReply::Processes(p) => Ok(p),
        other => Err(unexpected(other)),
    }
}

/// The guest container cgroup's statistics.
pub fn stats(path: &Path, timeout: std::time::Duration) -> io::Result<berth_cgroups::Stats> {
    match call_within(path, &CtlRequest::Stats, Some(timeout))? {
        CtlReply::Stats(s) => Ok(*s),
        other => Err(unexpected(other)),
    }
}

trait AsFdBorrowed {
    fn as_fd_borrowed(&self) -> BorrowedFd<'_>;
}

impl AsFdBorrowed for OwnedFd {
    fn as_fd_borrowed(&self) -> BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_supervisor_that_never_answers_is_a_timeout_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl.sock");
        // Listening but never accepting: what a frozen (paused) supervisor looks like.
        let _l = listen(&path).unwrap();
        let e = processes(&path, std::time::Duration::from_millis(200)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(e.to_string().contains("did not answer"), "{e}");
        // Nobody listening at all: the connect error, at once.
        drop(_l);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(stats(&path, std::time::Duration::from_secs(60)).unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn replies_round_trip_through_a_socket() {
        let (a, b) =
            rustix::net::socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None).unwrap();
        let p = GuestProcess { pid: 7, ppid: 1, args: vec!["sleep".into(), "9".into()], ..Default::default() };
        send(a.as_fd_borrowed(), &CtlReply::Processes(vec![p.clone()]), &[]).unwrap();
        let (got, _) = recv::<CtlReply>(b.as_fd_borrowed()).unwrap().unwrap();
        assert_eq!(got, CtlReply::Processes(vec![p]));
        let mut s = berth_cgroups::Stats::default();
        s.pids.current = 1;
        send(a.as_fd_borrowed(), &CtlReply::Stats(Box::new(s.clone())), &[]).unwrap();
        let (got, _) = recv::<CtlReply>(b.as_fd_borrowed()).unwrap().unwrap();
        assert_eq!(got, CtlReply::Stats(Box::new(s)));
    }
}
