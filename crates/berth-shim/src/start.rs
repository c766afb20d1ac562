//! The `start` and `delete` actions containerd runs, and where a group's shim lives.
//!
//! **Grouping.** One server process serves a group of containers, and a crash of that
//! process costs containerd every container of the group (it cleans them up with `delete`).
//! So groups are small by default, as containerd's runc shim makes them: the containers of
//! one pod (CRI's `io.kubernetes.cri.sandbox-id`, which the pod's sandbox container carries
//! with its own id) share a shim; any other container has one of its own. The runtime option
//! `group = "namespace"` ([`crate::options`]) puts every container outside a pod into one
//! shim per containerd namespace, for density; the `io.berth.shim.group` annotation names a
//! group explicitly and wins over both. The group's socket is
//! `/run/containerd/s/<sha256(containerd address, namespace, group key)>`.
//!
//! **start** (containerd 1.6 reads a bare address from its stdout and stderr together, and
//! waits for both to close, so nothing else may be printed and the server must not inherit
//! them; the runtime options come on stdin): bind the group's socket; if that works, this is
//! the group's first container: spawn the server with the listening socket. If the socket is
//! taken, ask the running server to `Reserve` the id (so it does not exit between now and
//! containerd's `Create`, should its last container be deleted meanwhile). A socket left by a
//! dead server (connection refused) is removed and the bind retried. Either way the
//! reservation stays provisional until `start` has printed the address and confirms it (a
//! byte on a pipe to a server it spawned, `Confirm` on the `Reserve` connection otherwise):
//! a `start` killed before that never reaches containerd, so the server drops the
//! reservation, and a server left with nothing exits at once instead of lingering.
//!
//! **delete** (containerd's cleanup after a dead shim or a failed start): kill and remove the
//! container's runtime state, unmount its rootfs, print a `DeleteResponse` (exit 137).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use containerd_shim_protos::api::DeleteResponse;
use containerd_shim_protos::protobuf::Message;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
use sha2::{Digest, Sha256};

use crate::args::Args;
use crate::error::{Error, Result};
use crate::options::Grouping;

/// Directory of shim sockets (containerd's runc shim uses the same).
pub const SOCKET_DIR: &str = "/run/containerd/s";
/// Environment variable carrying the inherited listening socket's descriptor number.
pub const LISTEN_FD_ENV: &str = "BERTH_SHIM_LISTEN_FD";
/// Environment variable carrying the read end of the pipe on which `start` confirms.
pub const START_FD_ENV: &str = "BERTH_SHIM_START_FD";
/// Annotation naming a container's shim group.
pub const GROUP_ANNOTATION: &str = "io.berth.shim.group";
/// CRI's sandbox annotation: containers of one pod share a shim.
pub const SANDBOX_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";

/// berth's state root for containerd namespace `ns`: `/run/containerd/berth/<ns>`, or
/// `$BERTH_SHIM_ROOT/<ns>`.
pub fn state_root(ns: &str) -> PathBuf {
    let base =
        std::env::var_os("BERTH_SHIM_ROOT").map_or_else(|| PathBuf::from("/run/containerd/berth"), PathBuf::from);
    base.join(ns)
}

/// The group key of container `id` (bundle `bundle`) under `grouping`: `group:NAME` for an
/// explicit `io.berth.shim.group`, `pod:SANDBOX` for a CRI pod, `namespace` for the
/// namespace-wide group, `container:ID` for a shim of its own. The kinds are spelled out so
/// that a group name can never meet a container id or a sandbox id.
pub fn group_of(bundle: &Path, id: &str, grouping: Grouping) -> String {
    let spec = std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|data| serde_json::from_slice::<serde_json::Value>(&data).ok());
    let ann = spec.as_ref().and_then(|v| v.get("annotations"));
    let get = |k: &str| ann.and_then(|a| a.get(k)).and_then(|x| x.as_str()).filter(|v| !v.is_empty());
    if let Some(g) = get(GROUP_ANNOTATION) {
        return format!("group:{g}");
    }
    if let Some(s) = get(SANDBOX_ANNOTATION) {
        return format!("pod:{s}");
    }
    match grouping {
        Grouping::Namespace => "namespace".into(),
        Grouping::Pod => format!("container:{id}"),
    }
}

/// The socket path for a group.
pub fn socket_path(containerd_address: &str, ns: &str, group: &str) -> PathBuf {
    let mut h = Sha256::new();
    h.update(containerd_address.as_bytes());
    h.update([0]);
    h.update(ns.as_bytes());
    h.update([0]);
    h.update(group.as_bytes());
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Path::new(SOCKET_DIR).join(hex)
}

/// Holds the lock under which berth's shims add a socket to [`SOCKET_DIR`] or remove one
/// found dead, so that the socket found dead is the one removed (a new server's socket can
/// appear at the same path at any moment). Released when dropped.
struct DirLock {
    _fd: OwnedFd,
}

impl DirLock {
    fn take() -> std::io::Result<DirLock> {
        let fd = rustix::fs::open(SOCKET_DIR, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        loop {
            match rustix::fs::flock(&fd, rustix::fs::FlockOperation::LockExclusive) {
                Err(Errno::INTR) => continue,
                r => return r.map(|()| DirLock { _fd: fd }).map_err(Into::into),
            }
        }
    }
}

/// Binds and listens on `path`, under the directory lock: a socket that refuses connections
/// when looked at under the lock is a dead server's (never one between its bind and its
/// listen), and may be removed. `EADDRINUSE` if `path` exists. The descriptor is inheritable
/// (not close-on-exec): it is meant for the server process.
fn bind(path: &Path) -> std::io::Result<OwnedFd> {
    let fd = rustix::net::socket_with(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::empty(), None)?;
    let addr = SocketAddrUnix::new(path)?;
    let _lock = DirLock::take()?;
    rustix::net::bind(&fd, &addr)?;
    if let Err(e) = rustix::net::listen(&fd, 128) {
        let _ = std::fs::remove_file(path);
        return Err(e.into());
    }
    Ok(fd)
}

/// Removes the socket at `path` if no server listens on it any more.
fn remove_if_dead(path: &Path) {
    let Ok(_lock) = DirLock::take() else { return };
    if UnixStream::connect(path).is_err_and(|e| e.raw_os_error() == Some(libc::ECONNREFUSED)) {
        let _ = std::fs::remove_file(path);
    }
}

/// Reserves `id` on the running server at `address`; the reservation lasts while the
/// returned connection is open, until [`Started::confirm`] makes it stand.
fn reserve(address: &str, id: &str) -> std::io::Result<UnixStream> {
    let mut s = crate::ttrpc::connect(address, Duration::from_secs(5))?;
    crate::ttrpc::call_on(&mut s, 1, crate::server::GROUP_SERVICE, "Reserve", id.as_bytes().to_vec())?;
    Ok(s)
}

/// Writes `path` atomically (temp file + rename), as containerd's shims do for `address`.
fn write_atomic(path: &Path, data: &str) -> std::io::Result<()> {
    let tmp = path.with_file_name(format!(".{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("tmp")));
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

/// A successful `start`: the address to print, and the server's provisional reservation of
/// the id, which [`Started::confirm`] makes stand once the address is printed.
pub struct Started {
    /// The address to print.
    pub address: String,
    confirm: Confirm,
}

enum Confirm {
    /// The write end of the pipe a server we spawned reads.
    Spawned(OwnedFd),
    /// The connection that made the reservation on a running server, and the id.
    Joined(UnixStream, String),
}

impl Started {
    /// Tells the server that containerd has the address: the reservation stands until
    /// containerd's `Create` (or its expiry). A failure is only logged: containerd is about to
    /// connect, and will see a dead server for itself.
    pub fn confirm(self) {
        match self.confirm {
            Confirm::Spawned(w) => {
                if let Err(e) = rustix::io::write(&w, b"1") {
                    log::warn!("confirming the start to the new shim: {e}");
                }
            }
            Confirm::Joined(mut s, id) => {
                if let Err(e) =
                    crate::ttrpc::call_on(&mut s, 3, crate::server::GROUP_SERVICE, "Confirm", id.into_bytes())
                {
                    log::warn!("confirming the start to the group's shim: {e}");
                }
            }
        }
    }
}

/// The `start` action.
pub fn start(args: &Args) -> Result<Started> {
    if args.namespace.is_empty() || args.id.is_empty() {
        return Err(Error::Invalid("start: -namespace and -id are required".into()));
    }
    let mut opts = Vec::new();
    std::io::stdin()
        .lock()
        .take(1 << 20)
        .read_to_end(&mut opts)
        .map_err(|e| Error::io("start: reading the runtime options from stdin", e))?;
    let opts = crate::options::parse(&opts)?;
    for w in &opts.warnings {
        log::warn!("{w}");
    }
    let bundle = std::env::current_dir().map_err(|e| Error::io("start: the working directory (bundle)", e))?;
    let group = group_of(&bundle, &args.id, opts.settings.grouping);
    log::debug!("start {}: shim group {group:?}", args.id);
    let path = socket_path(&args.address, &args.namespace, &group);
    let address = format!("unix://{}", path.display());
    std::fs::create_dir_all(SOCKET_DIR).map_err(|e| Error::io(format!("creating {SOCKET_DIR}"), e))?;
    let mut last = String::new();
    for _ in 0..200 {
        match bind(&path) {
            Ok(listener) => {
                let confirm = spawn_server(args, &bundle, &path, listener)?;
                write_atomic(&bundle.join("address"), &address)
                    .map_err(|e| Error::io(format!("writing {}/address", bundle.display()), e))?;
                return Ok(Started { address, confirm: Confirm::Spawned(confirm) });
            }
            Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => {}
            Err(e) => return Err(Error::io(format!("binding {}", path.display()), e)),
        }
        match reserve(&address, &args.id) {
            Ok(conn) => {
                write_atomic(&bundle.join("address"), &address)
                    .map_err(|e| Error::io(format!("writing {}/address", bundle.display()), e))?;
                return Ok(Started { address, confirm: Confirm::Joined(conn, args.id.clone()) });
            }
            Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
                // A dead server's socket.
                remove_if_dead(&path);
            }
            Err(e) => {
                // A server on its way out: it removes the socket before exiting.
                last = e.to_string();
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    Err(Error::State(format!("start: no usable shim at {address}: {last}")))
}

/// Spawns the group's server on `listener`. Returns the write end of the pipe on which the
/// server waits for [`Started::confirm`].
fn spawn_server(args: &Args, bundle: &Path, path: &Path, listener: OwnedFd) -> Result<OwnedFd> {
    let exe = std::env::current_exe().map_err(|e| Error::io("locating the shim binary", e))?;
    // The server's log goes to the bundle's `log` fifo, which containerd copies into its own
    // log; without a reader, to /dev/null. Non-blocking: a stalled reader must not stall the
    // server (lines are dropped instead).
    let log = rustix::fs::open(bundle.join("log"), OFlags::WRONLY | OFlags::NONBLOCK | OFlags::CLOEXEC, Mode::empty())
        .or_else(|_| rustix::fs::open("/dev/null", OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty()))
        .map_err(|e| Error::io("opening the shim log", e))?;
    // Only the read end is inherited; the write end stays here, so the server sees EOF when
    // this process dies, whether or not it confirmed first.
    let (confirm_r, confirm_w) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| Error::io("start: pipe", e))?;
    rustix::io::fcntl_setfd(&confirm_r, rustix::io::FdFlags::empty()).map_err(|e| Error::io("start: F_SETFD", e))?;
    let mut cmd = Command::new(exe);
    cmd.args(["-namespace", &args.namespace, "-id", &args.id, "-address", &args.address])
        .args(["-publish-binary", &args.publish_binary])
        .arg("-socket")
        .arg(path);
    if args.debug {
        cmd.arg("-debug");
    }
    cmd.arg("serve")
        .env(LISTEN_FD_ENV, listener.as_raw_fd().to_string())
        .env(START_FD_ENV, confirm_r.as_raw_fd().to_string())
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .process_group(0);
    let child = cmd.spawn().map_err(|e| {
        let _ = std::fs::remove_file(path);
        Error::io("starting the shim server", e)
    })?;
    drop(listener);
    drop(confirm_r);
    // The server outlives this process (and is reparented); nothing to wait for.
    drop(child);
    Ok(confirm_w)
}

/// The `delete` action: writes the protobuf `DeleteResponse` to stdout.
pub fn delete(args: &Args) -> Result<()> {
    if args.namespace.is_empty() || args.id.is_empty() {
        return Err(Error::Invalid("delete: -namespace and -id are required".into()));
    }
    let bundle = if args.bundle.is_empty() {
        std::env::current_dir().map_err(|e| Error::io("delete: the working directory (bundle)", e))?
    } else {
        PathBuf::from(&args.bundle)
    };
    let resp = DeleteResponse {
        exit_status: 128 + libc::SIGKILL as u32,
        exited_at: Some(crate::events::timestamp(SystemTime::now())).into(),
        ..Default::default()
    };
    // containerd runs `delete` whenever its connection for a task closes, also after a normal
    // delete, asynchronously. By then the task's bundle is normally gone (nothing to do); if a
    // bundle is there, it may belong to a new container with the same id, which a live server
    // owns (it reserved the id in `start`): leave it alone.
    if !bundle.exists() || owned_by_live_server(&bundle, &args.id) {
        return write_response(&resp);
    }
    let root = state_root(&args.namespace);
    let mut pid = 0;
    if let Ok(st) = berth_linux::state::ContainerState::load(&root, &args.id) {
        pid = st.pid.max(0) as u32;
    }
    match berth_linux::container::delete(&root, &args.id, true) {
        Ok(()) | Err(berth_linux::Error::NotFound(_)) => {}
        Err(e) => log::warn!("delete {}: {e}", args.id),
    }
    crate::mounts::unmount_all(&bundle.join("rootfs"));
    // The dead server's socket (its group's other containers, if any, are being cleaned up
    // too: containerd saw their connections close with it).
    if let Ok(address) = std::fs::read_to_string(bundle.join("address")) {
        let path = Path::new(crate::ttrpc::socket_path(address.trim()));
        if path.parent() == Some(Path::new(SOCKET_DIR)) {
            remove_if_dead(path);
        }
    }
    write_response(&DeleteResponse { pid, ..resp })
}

fn owned_by_live_server(bundle: &Path, id: &str) -> bool {
    let Ok(address) = std::fs::read_to_string(bundle.join("address")) else { return false };
    crate::ttrpc::call(
        address.trim(),
        crate::server::GROUP_SERVICE,
        "Owns",
        id.as_bytes().to_vec(),
        Duration::from_secs(5),
    )
    .is_ok_and(|r| r == [1])
}

fn write_response(resp: &DeleteResponse) -> Result<()> {
    let bytes = resp.write_to_bytes().map_err(|e| Error::Invalid(format!("encoding the delete response: {e}")))?;
    std::io::stdout().lock().write_all(&bytes).map_err(|e| Error::io("writing the delete response", e))
}

/// The listening socket inherited by a server process.
pub fn inherited_listener() -> Result<OwnedFd> {
    let n: i32 = std::env::var(LISTEN_FD_ENV).ok().and_then(|v| v.parse().ok()).ok_or_else(|| {
        Error::Invalid(format!("serve: ${LISTEN_FD_ENV} is not set (the server is started by `start`)"))
    })?;
    std::env::remove_var(LISTEN_FD_ENV);
    let fd = berth_sys::fd::take_inherited(n).map_err(|e| Error::io(format!("serve: inherited socket {n}"), e))?;
    // Not inherited further: containers and hooks must never see it.
    rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC).map_err(|e| Error::io("serve: F_SETFD", e))?;
    match rustix::net::sockopt::socket_type(&fd) {
        Ok(SocketType::STREAM) => Ok(fd),
        Ok(_) | Err(Errno::NOTSOCK) => Err(Error::Invalid(format!("serve: descriptor {n} is not a stream socket"))),
        Err(e) => Err(Error::io(format!("serve: descriptor {n}"), e)),
    }
}

/// The read end of the pipe on which `start` confirms, if the server was given one.
pub fn inherited_start_pipe() -> Result<Option<OwnedFd>> {
    let Some(v) = std::env::var_os(START_FD_ENV) else { return Ok(None) };
    std::env::remove_var(START_FD_ENV);
    let n: i32 = v
        .to_str()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::Invalid(format!("serve: ${START_FD_ENV} is not a descriptor number")))?;
    let fd = berth_sys::fd::take_inherited(n).map_err(|e| Error::io(format!("serve: inherited pipe {n}"), e))?;
    rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC).map_err(|e| Error::io("serve: F_SETFD", e))?;
    Ok(Some(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_paths_differ_per_address_namespace_and_group_and_fit() {
        let a = socket_path("/run/containerd/containerd.sock", "default", "");
        assert_ne!(a, socket_path("/tmp/x/containerd.sock", "default", ""));
        assert_ne!(a, socket_path("/run/containerd/containerd.sock", "k8s.io", ""));
        assert_ne!(a, socket_path("/run/containerd/containerd.sock", "default", "pod1"));
        assert_eq!(a, socket_path("/run/containerd/containerd.sock", "default", ""));
        // sun_path holds 108 bytes.
        assert!(a.as_os_str().len() < 100);
    }

    #[test]
    fn group_comes_from_annotations_then_the_option() {
        let d = tempfile::tempdir().unwrap();
        let write = |j: &str| std::fs::write(d.path().join("config.json"), j).unwrap();
        // No pod, no annotation: a shim of its own, or the namespace's with the option.
        assert_eq!(group_of(d.path(), "c1", Grouping::Pod), "container:c1");
        assert_eq!(group_of(d.path(), "c1", Grouping::Namespace), "namespace");
        write(r#"{"annotations":{"other":"x"}}"#);
        assert_eq!(group_of(d.path(), "c1", Grouping::Pod), "container:c1");
        // A pod's sandbox carries its own id as the sandbox id; its containers the same id.
        write(r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"pod","io.kubernetes.cri.container-type":"sandbox"}}"#);
        assert_eq!(group_of(d.path(), "pod", Grouping::Pod), "pod:pod");
        write(
            r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"pod","io.kubernetes.cri.container-type":"container"}}"#,
        );
        assert_eq!(group_of(d.path(), "c2", Grouping::Pod), "pod:pod");
        assert_eq!(group_of(d.path(), "c2", Grouping::Namespace), "pod:pod");
        // The explicit group wins.
        write(r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"pod","io.berth.shim.group":"g"}}"#);
        assert_eq!(group_of(d.path(), "c2", Grouping::Pod), "group:g");
        // A container named like a group or a pod is not in it.
        assert_ne!(group_of(tempfile::tempdir().unwrap().path(), "g", Grouping::Pod), "group:g");
        // Empty values are no annotation; an unreadable spec is no annotation.
        write(r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"","io.berth.shim.group":""}}"#);
        assert_eq!(group_of(d.path(), "c3", Grouping::Pod), "container:c3");
        write("not json");
        assert_eq!(group_of(d.path(), "c3", Grouping::Pod), "container:c3");
    }
}
