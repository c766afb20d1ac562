//! The protocol between the client (in the engine), the helper and the per-container monitors.
//!
//! Transport: `SOCK_SEQPACKET` unix sockets. One message is one JSON document in one packet, so
//! there is no framing to get wrong, and descriptors (stdio pipes, PTY masters, the monitor's
//! end of a new connection) travel with their message as `SCM_RIGHTS`. A spec larger than
//! [`INLINE_LIMIT`] travels in a sealed memfd instead of inline, so no socket buffer limit
//! applies to it.
//!
//! Requests carry an id; the monitor answers each with exactly one [`Msg::Ok`] or [`Msg::Err`]
//! carrying the same id, except id 0 (fire-and-forget). Events ([`Msg::Event`]) are interleaved
//! in the order the monitor produced them, which is the order the engine sees them.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use berth_core::{ErrorKind, EventType, Status};
use oci_spec::runtime::Process;
use rustix::net::{
    recv, sendmsg, socketpair, AddressFamily, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
    SocketFlags, SocketType,
};
use serde::{Deserialize, Serialize};

/// Most descriptors one message carries (stdin, stdout, stderr, plus one spare).
pub const MAX_FDS: usize = berth_sys::fd::MAX_PASSED_FDS;

/// Specs whose JSON is larger than this travel in a memfd.
pub const INLINE_LIMIT: usize = 64 * 1024;

/// Upper bound for one packet we are willing to receive.
const MAX_PACKET: usize = 4 * 1024 * 1024;

/// The argument that makes a helper binary run as berth's helper.
pub const HELPER_ARG: &str = "__berth-helper";

/// A request from the client to a monitor. (Externally tagged: the inline spec is a raw
/// JSON value, which serde cannot buffer inside an internally tagged enum.)
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Request {
    /// Create the container. `spec` is `None` when it comes in the attached memfd.
    Create {
        /// The spec's JSON, inline (serialised once by the client, parsed once by the monitor).
        spec: Option<Box<serde_json::value::RawValue>>,
        /// Absolute bundle directory.
        bundle: PathBuf,
        /// Use `MS_MOVE` instead of `pivot_root`.
        no_pivot: bool,
    },
    /// Hand out the init's stdio (before `Start`).
    InitStdio {
        /// Whether the engine wants a stdin writer.
        with_stdin: bool,
    },
    /// Let the init exec the user process.
    Start {
        /// Without stdin the monitor drops its copy, so the process reads EOF.
        with_stdin: bool,
    },
    /// Start an exec process; its events wait for `Commit`.
    Exec {
        /// Exec id.
        exec_id: String,
        /// The process.
        process: Box<Process>,
        /// Whether the engine wants a stdin writer.
        with_stdin: bool,
    },
    /// The engine attached the exec's stdio: publish it.
    Commit {
        /// Exec id.
        exec_id: String,
    },
    /// Attaching the exec's stdio failed: kill and forget it, publish nothing.
    Abort {
        /// Exec id.
        exec_id: String,
    },
    /// Send a signal.
    Signal {
        /// Container id / `init` / exec id.
        process_id: String,
        /// Signal number.
        signal: i32,
    },
    /// Resize a terminal.
    Resize {
        /// Process.
        process_id: String,
        /// Columns.
        width: u16,
        /// Rows.
        height: u16,
    },
    /// Drop the monitor's copy of stdin (or send EOT to a terminal).
    CloseStdin {
        /// Process.
        process_id: String,
    },
    /// Freeze.
    Pause,
    /// Thaw.
    Resume,
    /// The init's exit status (acknowledges it: it is not re-sent on a later restore).
    DeleteTask,
    /// Tear the container down; the monitor exits after answering.
    Delete,
    /// A new client connection (restore): answer with the container's state and stdio.
    Attach,
    /// The restoring client is ready: deliver the events held back while nobody listened.
    Flush,
}

/// A request with its id.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    /// Request id; 0 = no answer wanted.
    pub id: u64,
    /// The request.
    pub req: Request,
}

/// Which stdio descriptors follow a message, in this order: stdin, stdout, stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StdioFlags {
    /// A stdin writer (or, with a terminal, a second copy of the master for writing).
    pub stdin: bool,
    /// A stdout reader (or the terminal master).
    pub stdout: bool,
    /// A stderr reader.
    pub stderr: bool,
    /// The process has a terminal.
    pub terminal: bool,
}

/// An exit status as the wire carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// Exit code, 128+N for a signal.
    pub code: u32,
    /// Nanoseconds since the Unix epoch.
    pub at_ns: u64,
}

/// The payload of a successful answer. Fields are filled as the request needs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Body {
    /// Host pid of the process concerned (the init for container requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The monitor's pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_pid: Option<u32>,
    /// The container's cgroup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<berth_cgroups::Cgroup>,
    /// Stdio descriptors that follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdio: Option<StdioFlags>,
    /// Container status (attach).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// The init's exit (delete-task, attach).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitInfo>,
    /// Whether the init was started (attach).
    #[serde(default)]
    pub started: bool,
}

/// An event as the monitor produced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEvent {
    /// Event type.
    pub kind: EventType,
    /// Container id for the init, exec id otherwise.
    pub process_id: String,
    /// Host pid (0 when not applicable).
    pub pid: u32,
    /// Exit (exit events only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitInfo>,
    /// Sticky OOM flag.
    #[serde(default)]
    pub oom_killed: bool,
    /// A failure attached to an exit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A message from a monitor to the client.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "kebab-case")]
pub enum Msg {
    /// Success.
    Ok {
        /// Request id.
        id: u64,
        /// Payload.
        #[serde(default)]
        body: Body,
    },
    /// Failure, with the API error class.
    Err {
        /// Request id.
        id: u64,
        /// [`ErrorKind::as_str`].
        kind: String,
        /// Message.
        message: String,
    },
    /// An event.
    Event {
        /// The event.
        event: WireEvent,
    },
    /// Last message on a connection another client has taken over (a restore from a second
    /// engine): the container is fine, this client just no longer speaks for it.
    Replaced,
}

/// Client → helper.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum HelperRequest {
    /// Fork a monitor for container `id`; its connection is the attached descriptor.
    Spawn {
        /// Container id.
        id: String,
    },
}

/// Helper → client, once per connection.
#[derive(Debug, Serialize, Deserialize)]
pub struct HelperHello {
    /// The helper's pid.
    pub pid: u32,
}

/// Parses an [`ErrorKind`] name; unknown names are system errors.
pub fn kind_from_str(s: &str) -> ErrorKind {
    match s {
        "not-found" => ErrorKind::NotFound,
        "conflict" => ErrorKind::Conflict,
        "invalid-parameter" => ErrorKind::InvalidParameter,
        "not-modified" => ErrorKind::NotModified,
        "not-implemented" => ErrorKind::NotImplemented,
        "unavailable" => ErrorKind::Unavailable,
        _ => ErrorKind::System,
    }
}

/// A connected `SOCK_SEQPACKET` pair, both ends close-on-exec.
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?)
}

/// Sends one packet with `fds` attached. `nonblocking` uses `MSG_DONTWAIT`.
pub fn send(sock: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>], nonblocking: bool) -> io::Result<()> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut anc = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && (fds.len() > MAX_FDS || !anc.push(SendAncillaryMessage::ScmRights(fds))) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many descriptors for one message"));
    }
    let mut flags = SendFlags::NOSIGNAL;
    if nonblocking {
        flags |= SendFlags::DONTWAIT;
    }
    loop {
        match sendmsg(sock, &[io::IoSlice::new(data)], &mut anc, flags) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Serialises `msg` and sends it.
pub fn send_json<T: Serialize>(
    sock: BorrowedFd<'_>,
    msg: &T,
    fds: &[BorrowedFd<'_>],
    nonblocking: bool,
) -> io::Result<()> {
    let data = serde_json::to_vec(msg).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    send(sock, &data, fds, nonblocking)
}

/// One received packet: payload and descriptors.
pub type Packet = (Vec<u8>, Vec<OwnedFd>);

/// Receives one packet. `Ok(None)` is end of stream. With `nonblocking`, an empty socket is
/// `Err(WouldBlock)`. The payload buffer is sized to the packet (peeked first), so a large
/// request does not make every later receive allocate a large buffer.
pub fn recv_packet(sock: BorrowedFd<'_>, nonblocking: bool) -> io::Result<Option<Packet>> {
    let mut flags = RecvFlags::CMSG_CLOEXEC;
    if nonblocking {
        flags |= RecvFlags::DONTWAIT;
    }
    let size = loop {
        let mut probe = [0u8; 0];
        match recv(sock, &mut probe[..], flags | RecvFlags::PEEK | RecvFlags::TRUNC) {
            Ok((_, n)) => break n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    if size > MAX_PACKET {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("message of {size} bytes is too large")));
    }
    let mut buf = vec![0u8; size];
    let (bytes, fds) = berth_sys::fd::recv_with_fds(sock, &mut buf, flags)?;
    if bytes == 0 && size == 0 && fds.is_empty() {
        // SEQPACKET: a zero-length read with nothing peeked is end of stream.
        return Ok(None);
    }
    buf.truncate(bytes);
    Ok(Some((buf, fds)))
}

/// Writes `data` into a new sealed memfd (for specs above [`INLINE_LIMIT`]).
pub fn memfd_with(data: &[u8]) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create(
        "berth-spec",
        rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
    )?;
    let mut off = 0;
    while off < data.len() {
        match rustix::io::write(&fd, data.get(off..).unwrap_or_default()) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => off += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    rustix::fs::fcntl_add_seals(
        &fd,
        rustix::fs::SealFlags::WRITE | rustix::fs::SealFlags::GROW | rustix::fs::SealFlags::SHRINK,
    )?;
    Ok(fd)
}

/// Reads a whole memfd from offset 0.
pub fn read_memfd(fd: &OwnedFd) -> io::Result<Vec<u8>> {
    let len = rustix::fs::fstat(fd)?.st_size;
    let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    if len > MAX_PACKET * 4 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("spec of {len} bytes is too large")));
    }
    let mut buf = vec![0u8; len];
    let mut off = 0;
    while off < len {
        match rustix::io::pread(fd, buf.get_mut(off..).unwrap_or_default(), off as u64) {
            Ok(0) => break,
            Ok(n) => off += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    buf.truncate(off);
    Ok(buf)
}

/// Duplicates a descriptor (close-on-exec).
pub fn dup(fd: impl AsFd) -> io::Result<OwnedFd> {
    Ok(rustix::io::fcntl_dupfd_cloexec(fd, 3)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_keep_boundaries_and_descriptors() {
        let (a, b) = seqpacket_pair().unwrap();
        let (r, w) = rustix::pipe::pipe().unwrap();
        send(a.as_fd(), b"one", &[r.as_fd(), w.as_fd()], false).unwrap();
        send(a.as_fd(), b"two", &[], false).unwrap();
        let (d, fds) = recv_packet(b.as_fd(), false).unwrap().unwrap();
        assert_eq!((d.as_slice(), fds.len()), (&b"one"[..], 2));
        rustix::io::write(&fds[1], b"x").unwrap();
        let mut got = [0u8; 1];
        rustix::io::read(&r, &mut got).unwrap();
        assert_eq!(&got, b"x");
        let (d, fds) = recv_packet(b.as_fd(), false).unwrap().unwrap();
        assert_eq!((d.as_slice(), fds.len()), (&b"two"[..], 0));
        assert!(matches!(recv_packet(b.as_fd(), true), Err(e) if e.kind() == io::ErrorKind::WouldBlock));
        drop(a);
        assert!(recv_packet(b.as_fd(), false).unwrap().is_none());
    }

    #[test]
    fn too_many_descriptors_is_an_error_not_a_truncation() {
        let (a, _b) = seqpacket_pair().unwrap();
        let (r, _w) = rustix::pipe::pipe().unwrap();
        let fds: Vec<BorrowedFd<'_>> = (0..MAX_FDS + 1).map(|_| r.as_fd()).collect();
        assert!(send(a.as_fd(), b"x", &fds, false).is_err());
    }

    #[test]
    fn memfd_round_trip() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let fd = memfd_with(&data).unwrap();
        assert_eq!(read_memfd(&fd).unwrap(), data);
        // Sealed: the receiver can trust the size it read.
        assert!(rustix::io::write(&fd, b"more").is_err());
    }

    #[test]
    fn messages_round_trip() {
        let m = Msg::Event {
            event: WireEvent {
                kind: EventType::ExecStarted,
                process_id: "e1".into(),
                pid: 7,
                exit: None,
                oom_killed: false,
                error: None,
            },
        };
        let v = serde_json::to_vec(&m).unwrap();
        match serde_json::from_slice::<Msg>(&v).unwrap() {
            Msg::Event { event } => assert_eq!(event.kind, EventType::ExecStarted),
            other => panic!("{other:?}"),
        }
        for k in [
            ErrorKind::NotFound,
            ErrorKind::Conflict,
            ErrorKind::InvalidParameter,
            ErrorKind::NotModified,
            ErrorKind::NotImplemented,
            ErrorKind::Unavailable,
            ErrorKind::System,
        ] {
            assert_eq!(kind_from_str(k.as_str()), k);
        }
    }
}
