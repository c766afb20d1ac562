//! The parent/child channel used while a container process is being set up.
//!
//! A `SOCK_SEQPACKET` socketpair: message boundaries are kept, descriptors travel as
//! `SCM_RIGHTS`, and when the child execs (the socket is close-on-exec) or dies, the parent
//! reads EOF. Messages are one tag byte plus an optional UTF-8 payload. The protocol is kept
//! to the minimum number of round trips, because each one costs a cross-CPU wake-up
//! (docs/architecture.md, "Process model").

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};

use rustix::net::{
    recvmsg, sendmsg, socketpair, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};

/// A message on the setup channel.
#[derive(Debug, PartialEq, Eq)]
pub enum Msg {
    /// Parent → child: cgroups joined, id maps written; setup may go on. Carries the state
    /// JSON for hooks that run inside the container (empty when there are none).
    Go(String),
    /// Child → parent: setup finished, waiting for start.
    Ready,
    /// Child → parent: setup failed.
    Error(String),
    /// Parent → child: exec the user process now (foreground `run`, `run -d`).
    Start,
    /// Child → parent: run the prestart and createRuntime hooks now.
    Hooks,
    /// Parent → child: hooks finished.
    HooksDone,
    /// Parent → child: a hook failed, abort.
    Abort(String),
    /// Child → parent: the seccomp filter about to be installed has a listener, which will be
    /// the child's descriptor N. The parent takes it with `pidfd_getfd` once it exists, so the
    /// child makes no syscall between installing the filter and the agent holding the
    /// listener (any of them could be one the agent is meant to answer).
    SeccompListener(i32),
    /// Parent → child: the listener was handed to the agent.
    ListenerTaken,
    /// Child → parent: the real init is this pid (forked into a new pid namespace after
    /// joining a user namespace); the sender exits.
    InitPid(i32),
}

impl Msg {
    fn tag(&self) -> u8 {
        match self {
            Msg::Go(_) => b'G',
            Msg::Ready => b'R',
            Msg::Error(_) => b'E',
            Msg::Start => b'S',
            Msg::Hooks => b'H',
            Msg::HooksDone => b'h',
            Msg::Abort(_) => b'A',
            Msg::SeccompListener(_) => b'N',
            Msg::ListenerTaken => b'n',
            Msg::InitPid(_) => b'P',
        }
    }

    fn payload(&self) -> Vec<u8> {
        match self {
            Msg::Error(s) | Msg::Abort(s) | Msg::Go(s) => s.as_bytes().to_vec(),
            Msg::InitPid(p) | Msg::SeccompListener(p) => p.to_string().into_bytes(),
            _ => Vec::new(),
        }
    }

    fn decode(buf: &[u8]) -> io::Result<Msg> {
        let text = || String::from_utf8_lossy(buf.get(1..).unwrap_or_default()).into_owned();
        Ok(match buf.first() {
            Some(b'G') => Msg::Go(text()),
            Some(b'R') => Msg::Ready,
            Some(b'E') => Msg::Error(text()),
            Some(b'S') => Msg::Start,
            Some(b'H') => Msg::Hooks,
            Some(b'h') => Msg::HooksDone,
            Some(b'A') => Msg::Abort(text()),
            Some(b'N') => Msg::SeccompListener(
                text().parse().map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "malformed listener fd"))?,
            ),
            Some(b'n') => Msg::ListenerTaken,
            Some(b'P') => Msg::InitPid(
                text().parse().map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "malformed init pid"))?,
            ),
            _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "malformed setup message")),
        })
    }
}

/// One end of the setup channel, plus a page of memory both ends share (see [`Channel::fail`]).
#[derive(Debug)]
pub struct Channel(OwnedFd, std::rc::Rc<berth_sys::mem::SharedPage>);

/// Largest message (an error text); longer texts are truncated.
const MAX: usize = 16 * 1024;

impl Channel {
    /// A connected pair (both ends close-on-exec).
    pub fn pair() -> io::Result<(Channel, Channel)> {
        let (a, b) = socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?;
        let page = std::rc::Rc::new(berth_sys::mem::SharedPage::new()?);
        Ok((Channel(a, page.clone()), Channel(b, page)))
    }

    /// Child side: reports a failure. The message goes to the shared page first, which needs
    /// no syscall: a child whose seccomp filter is installed may not be able to send it (or
    /// even to exit cleanly), and the parent still learns why from [`Channel::failure`].
    pub fn fail(&self, msg: &str) -> io::Result<()> {
        self.1.put(msg.as_bytes());
        self.send(&Msg::Error(msg.to_string()), None)
    }

    /// Parent side: the failure the child left in the shared page, if any. Consulted when the
    /// channel closed without an error message: the child died, or exec'd.
    pub fn failure(&self) -> Option<String> {
        self.1.take().map(|m| String::from_utf8_lossy(&m).into_owned())
    }

    /// Sends `msg`, with `fd` attached if given.
    pub fn send(&self, msg: &Msg, fd: Option<std::os::fd::BorrowedFd<'_>>) -> io::Result<()> {
        let mut buf = Vec::with_capacity(1 + msg.payload().len());
        buf.push(msg.tag());
        let payload = msg.payload();
        buf.extend_from_slice(&payload[..payload.len().min(MAX - 1)]);
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut anc = SendAncillaryBuffer::new(&mut space);
        let fds;
        if let Some(fd) = fd {
            fds = [fd];
            anc.push(SendAncillaryMessage::ScmRights(&fds));
        }
        let iov = [io::IoSlice::new(&buf)];
        loop {
            match sendmsg(&self.0, &iov, &mut anc, SendFlags::NOSIGNAL) {
                Ok(_) => return Ok(()),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Receives one message (and a descriptor if one was attached). `Ok(None)` means the peer
    /// closed the channel (exec'd or died).
    pub fn recv(&self) -> io::Result<Option<(Msg, Option<OwnedFd>)>> {
        let mut buf = vec![0u8; MAX];
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut anc = RecvAncillaryBuffer::new(&mut space);
        let mut reset_seen = false;
        let n = loop {
            let mut iov = [io::IoSliceMut::new(&mut buf)];
            match recvmsg(&self.0, &mut iov, &mut anc, RecvFlags::CMSG_CLOEXEC) {
                Ok(r) => break r.bytes,
                Err(rustix::io::Errno::INTR) => continue,
                // A peer that exits with unread messages (an init failing before it read Go)
                // leaves ECONNRESET pending, and the kernel reports it before the messages
                // still queued for us, such as that init's Error. The error is cleared once
                // reported: read on.
                Err(rustix::io::Errno::CONNRESET) if !reset_seen => reset_seen = true,
                Err(e) => return Err(e.into()),
            }
        };
        let mut fd = None;
        for m in anc.drain() {
            if let RecvAncillaryMessage::ScmRights(rights) = m {
                for f in rights {
                    // Keep the first, drop (close) any extra a confused peer sent.
                    if fd.is_none() {
                        fd = Some(f);
                    }
                }
            }
        }
        if n == 0 {
            return Ok(None);
        }
        Ok(Some((Msg::decode(&buf[..n])?, fd)))
    }

    /// The socket, for polling.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_fd() {
        let (a, b) = Channel::pair().unwrap();
        a.send(&Msg::Error("boom: x".into()), None).unwrap();
        let (m, fd) = b.recv().unwrap().unwrap();
        assert_eq!(m, Msg::Error("boom: x".into()));
        assert!(fd.is_none());
        let f = std::fs::File::open("/dev/null").unwrap();
        b.send(&Msg::SeccompListener(7), Some(f.as_fd())).unwrap();
        let (m, fd) = a.recv().unwrap().unwrap();
        assert_eq!(m, Msg::SeccompListener(7));
        assert!(fd.is_some());
        drop(b);
        assert!(a.recv().unwrap().is_none());
    }

    #[test]
    fn error_of_a_peer_that_died_with_unread_messages() {
        let (parent, child) = Channel::pair().unwrap();
        parent.send(&Msg::Go(String::new()), None).unwrap();
        child.send(&Msg::Error("mount failed".into()), None).unwrap();
        // Closed with Go unread: the parent's socket gets ECONNRESET pending.
        drop(child);
        let (m, _) = parent.recv().unwrap().unwrap();
        assert_eq!(m, Msg::Error("mount failed".into()));
        assert!(parent.recv().unwrap().is_none());
    }
}
