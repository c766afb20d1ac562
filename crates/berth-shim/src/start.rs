//! The `start` and `delete` actions containerd runs, and where a group's shim lives.
//!
//! **Grouping.** One server process serves a whole group of containers. The group is the
//! value of the bundle's `io.berth.shim.group` annotation, else the CRI sandbox
//! (`io.kubernetes.cri.sandbox-id`, as containerd's runc shim groups a pod), else the whole
//! containerd namespace. The group's socket is
//! `/run/containerd/s/<sha256(containerd address, namespace, group)>`.
//!
//! **start** (containerd 1.6 reads a bare address from its stdout, and waits for stdout and
//! stderr to close, so nothing else may be printed and the server must not inherit them):
//! bind the group's socket; if that works, this is the group's first container: spawn the
//! server with the listening socket and return. If the socket is taken, ask the running
//! server to `Reserve` the id (so it does not exit between now and containerd's `Create`,
//! should its last container be deleted meanwhile) and return its address. A socket left by
//! a dead server (connection refused) is removed and the bind retried.
//!
//! **delete** (containerd's cleanup after a dead shim or a failed start): kill and remove the
//! container's runtime state, unmount its rootfs, print a `DeleteResponse` (exit 137).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
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

/// Directory of shim sockets (containerd's runc shim uses the same).
pub const SOCKET_DIR: &str = "/run/containerd/s";
/// Environment variable carrying the inherited listening socket's descriptor number.
pub const LISTEN_FD_ENV: &str = "BERTH_SHIM_LISTEN_FD";
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

/// The group a bundle's container belongs to (empty: the namespace-wide group).
pub fn group_of(bundle: &Path) -> String {
    let Ok(data) = std::fs::read(bundle.join("config.json")) else { return String::new() };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&data) else { return String::new() };
    let ann = v.get("annotations");
    let get = |k: &str| ann.and_then(|a| a.get(k)).and_then(|x| x.as_str()).map(String::from);
    get(GROUP_ANNOTATION).or_else(|| get(SANDBOX_ANNOTATION)).unwrap_or_default()
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

/// Binds and listens on `path`. The descriptor is inheritable (not close-on-exec): it is
/// meant for the server process.
fn bind(path: &Path) -> std::io::Result<OwnedFd> {
    let fd = rustix::net::socket_with(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::empty(), None)?;
    let addr = SocketAddrUnix::new(path)?;
    rustix::net::bind(&fd, &addr)?;
    rustix::net::listen(&fd, 128)?;
    Ok(fd)
}

fn reserve(address: &str, id: &str) -> std::io::Result<()> {
    crate::ttrpc::call(address, crate::server::GROUP_SERVICE, "Reserve", id.as_bytes().to_vec(), Duration::from_secs(5))
        .map(drop)
}

/// Writes `path` atomically (temp file + rename), as containerd's shims do for `address`.
fn write_atomic(path: &Path, data: &str) -> std::io::Result<()> {
    let tmp = path.with_file_name(format!(".{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("tmp")));
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

/// The `start` action. Returns the address to print.
pub fn start(args: &Args) -> Result<String> {
    if args.namespace.is_empty() || args.id.is_empty() {
        return Err(Error::Invalid("start: -namespace and -id are required".into()));
    }
    // The runtime options arrive on stdin; nothing in them applies to berth's shim.
    let mut opts = Vec::new();
    let _ = std::io::stdin().lock().take(1 << 20).read_to_end(&mut opts);
    let bundle = std::env::current_dir().map_err(|e| Error::io("start: the working directory (bundle)", e))?;
    let group = group_of(&bundle);
    let path = socket_path(&args.address, &args.namespace, &group);
    let address = format!("unix://{}", path.display());
    std::fs::create_dir_all(SOCKET_DIR).map_err(|e| Error::io(format!("creating {SOCKET_DIR}"), e))?;
    let mut last = String::new();
    for _ in 0..200 {
        match bind(&path) {
            Ok(listener) => {
                spawn_server(args, &bundle, &path, listener)?;
                write_atomic(&bundle.join("address"), &address)
                    .map_err(|e| Error::io(format!("writing {}/address", bundle.display()), e))?;
                return Ok(address);
            }
            Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => {}
            Err(e) => return Err(Error::io(format!("binding {}", path.display()), e)),
        }
        match reserve(&address, &args.id) {
            Ok(()) => {
                write_atomic(&bundle.join("address"), &address)
                    .map_err(|e| Error::io(format!("writing {}/address", bundle.display()), e))?;
                return Ok(address);
            }
            Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
                // A dead server's socket.
                let _ = std::fs::remove_file(&path);
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

fn spawn_server(args: &Args, bundle: &Path, path: &Path, listener: OwnedFd) -> Result<()> {
    let exe = std::env::current_exe().map_err(|e| Error::io("locating the shim binary", e))?;
    // The server's log goes to the bundle's `log` fifo, which containerd copies into its own
    // log; without a reader, to /dev/null. Non-blocking: a stalled reader must not stall the
    // server (lines are dropped instead).
    let log = rustix::fs::open(bundle.join("log"), OFlags::WRONLY | OFlags::NONBLOCK | OFlags::CLOEXEC, Mode::empty())
        .or_else(|_| rustix::fs::open("/dev/null", OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty()))
        .map_err(|e| Error::io("opening the shim log", e))?;
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
    // The server outlives this process (and is reparented); nothing to wait for.
    drop(child);
    Ok(())
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
    let resp = DeleteResponse {
        pid,
        exit_status: 128 + libc::SIGKILL as u32,
        exited_at: Some(crate::events::timestamp(SystemTime::now())).into(),
        ..Default::default()
    };
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
    fn group_comes_from_annotations() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(group_of(d.path()), "");
        std::fs::write(d.path().join("config.json"), r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"pod"}}"#)
            .unwrap();
        assert_eq!(group_of(d.path()), "pod");
        std::fs::write(
            d.path().join("config.json"),
            r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"pod","io.berth.shim.group":"g"}}"#,
        )
        .unwrap();
        assert_eq!(group_of(d.path()), "g");
        std::fs::write(d.path().join("config.json"), "not json").unwrap();
        assert_eq!(group_of(d.path()), "");
    }
}
