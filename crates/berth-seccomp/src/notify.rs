//! Handing the seccomp notify fd to the agent at `linux.seccomp.listenerPath`.
//!
//! runtime-spec (config-linux.md, "The Container Process State"): the runtime connects an
//! `AF_UNIX`/`SOCK_STREAM` socket to `listenerPath`, sends one JSON `containerProcessState`
//! with the listener fd attached as `SCM_RIGHTS` (named `"seccompFd"` in `fds`), and closes
//! the connection. The fds travel with the first `sendmsg` only; the rest of a long payload
//! follows in plain sends. A failure is an error: the container must not start with NOTIFY
//! rules nobody can answer.

use std::io::{IoSlice, Write};
use std::mem::MaybeUninit;
use std::net::Shutdown;
use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

use oci_spec::runtime::{LinuxSeccomp, State};
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use serde::{Deserialize, Serialize};

use crate::SeccompError;

/// The name of the listener fd in [`ContainerProcessState::fds`].
pub const SECCOMP_FD_NAME: &str = "seccompFd";

/// runtime-spec `containerProcessState`, sent to the seccomp agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerProcessState {
    /// runtime-spec version this message follows.
    pub oci_version: String,
    /// Names of the fds in the `SCM_RIGHTS` array, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fds: Vec<String>,
    /// The container process, as seen by the runtime.
    pub pid: i32,
    /// `linux.seccomp.listenerMetadata`, passed through untouched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
    /// The container's OCI state.
    pub state: State,
}

impl ContainerProcessState {
    /// The message for a single seccomp fd, with `ociVersion` taken from `state`.
    pub fn new(state: State, pid: i32, metadata: Option<String>) -> Self {
        ContainerProcessState {
            oci_version: state.version().clone(),
            fds: vec![SECCOMP_FD_NAME.to_owned()],
            pid,
            metadata,
            state,
        }
    }
}

/// Connects to `listener_path`, sends `state_json` with `fd` attached as `SCM_RIGHTS`, then
/// closes the connection.
pub fn send_listener_fd(listener_path: &Path, state_json: &[u8], fd: BorrowedFd<'_>) -> Result<(), SeccompError> {
    let err = |op, source| SeccompError::Listener { path: listener_path.to_owned(), op, source };
    // std connects with SOCK_STREAM | SOCK_CLOEXEC.
    let mut stream = UnixStream::connect(listener_path).map_err(|e| err("connect", e))?;

    let fds = [fd];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(err("sendmsg", std::io::Error::other("control buffer too small")));
    }
    // The fd must ride with at least one byte of payload.
    let first = if state_json.is_empty() { &b"{}"[..] } else { state_json };
    let sent = rustix::net::sendmsg(&stream, &[IoSlice::new(first)], &mut control, SendFlags::NOSIGNAL)
        .map_err(|e| err("sendmsg", e.into()))?;
    let rest = first.get(sent..).unwrap_or_default();
    stream.write_all(rest).map_err(|e| err("write", e))?;
    // Tell the agent the message is complete even if it reads until EOF before we exit.
    stream.shutdown(Shutdown::Write).map_err(|e| err("shutdown", e))?;
    Ok(())
}

/// Builds the `containerProcessState` for `seccomp` (metadata from `listenerMetadata`) and
/// sends `fd` to `listenerPath`. What the runtime parent calls once it holds the listener fd.
pub fn send_to_listener(
    seccomp: &LinuxSeccomp,
    state: &State,
    pid: i32,
    fd: BorrowedFd<'_>,
) -> Result<(), SeccompError> {
    let Some(path) = seccomp.listener_path() else {
        return Err(SeccompError::invalid(
            "linux.seccomp.listenerPath",
            "must be set to receive the seccomp notify fd",
        ));
    };
    let msg = ContainerProcessState::new(state.clone(), pid, seccomp.listener_metadata().clone());
    let json = serde_json::to_vec(&msg).map_err(SeccompError::Json)?;
    send_listener_fd(path, &json, fd)
}
