//! Terminals: the PTY created inside the container and the `--console-socket` protocol.
//!
//! As in runc, the PTY is allocated by the init after pivot_root, from the container's own
//! devpts, so the container never sees a host PTY. The slave becomes the init's controlling
//! terminal, stdio and /dev/console; the master is sent over `--console-socket` with
//! SCM_RIGHTS, its payload being the slave's path, which is what conmon and the containerd
//! runc shim expect.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use rustix::pty::OpenptFlags;

use crate::error::{Context, Error, Result};
use crate::paths::{proc_fd, Root};
use crate::plan::Plan;

/// Sends `fd` over a connected unix socket with `name` as the payload.
pub fn send_fd(sock: BorrowedFd<'_>, name: &[u8], fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut anc = SendAncillaryBuffer::new(&mut space);
    let fds = [fd];
    anc.push(SendAncillaryMessage::ScmRights(&fds));
    let payload = if name.is_empty() { b"/dev/ptmx".as_slice() } else { name };
    sendmsg(sock, &[io::IoSlice::new(payload)], &mut anc, SendFlags::NOSIGNAL)?;
    Ok(())
}

/// Receives one descriptor sent with [`send_fd`] (the receiving side of a console socket).
pub fn recv_fd(sock: BorrowedFd<'_>) -> io::Result<(Vec<u8>, OwnedFd)> {
    let mut buf = vec![0u8; 4096];
    let (n, fds) = berth_sys::fd::recv_with_fds(sock, &mut buf, rustix::net::RecvFlags::empty())?;
    let got = fds.into_iter().next();
    buf.truncate(n);
    got.map(|f| (buf, f))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no descriptor received on the console socket"))
}

/// Allocates the container's PTY (init side, after pivot_root) and hands the master out.
pub fn setup_console(plan: &Plan) -> Result<()> {
    let sock = plan
        .console_socket
        .as_ref()
        .ok_or_else(|| Error::Invalid("process.terminal: a terminal needs --console-socket".into()))?;
    let (master, slave, name) = open_pty(plan.process.console_size)?;
    // /dev/console is the slave, bind-mounted like runc does.
    let root = Root::open(Path::new("/"))?;
    // Never through a symlink (CVE-2025-52565): with the image's own /dev, /dev/console ->
    // /proc/sys/kernel/core_pattern would put the PTY over that procfs file and leave
    // /dev/console pointing at it. runc refuses the same way (O_NOFOLLOW).
    let console = match root.resolve_no_symlinks("/dev/console") {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => root.create_file("/dev/console")?,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(Error::Invalid(
                "/dev/console in the rootfs is a symlink; refusing to mount the terminal through it".into(),
            ))
        }
        Err(e) => return Err(Error::io("resolving /dev/console", e)),
    };
    berth_sys::mount::mount(Some(&proc_fd(slave.as_fd())), &proc_fd(console.as_fd()), None, libc::MS_BIND, None)
        .ctx(|| "bind-mounting /dev/console".to_string())?;
    make_controlling(&slave)?;
    send_fd(sock.as_fd(), name.as_bytes(), master.as_fd())
        .ctx(|| "sending the PTY master to --console-socket".to_string())?;
    Ok(())
}

/// Opens a new PTY pair from the current /dev/ptmx. Returns (master, slave, slave path).
pub fn open_pty(size: Option<(u16, u16)>) -> Result<(OwnedFd, OwnedFd, String)> {
    let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
        .ctx(|| "opening /dev/ptmx".to_string())?;
    rustix::pty::unlockpt(&master).ctx(|| "unlockpt".to_string())?;
    let name = rustix::pty::ptsname(&master, Vec::new()).map(|c| c.to_string_lossy().into_owned()).unwrap_or_default();
    let slave = rustix::pty::ioctl_tiocgptpeer(&master, OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
        .ctx(|| "opening the PTY slave".to_string())?;
    if let Some((rows, cols)) = size {
        let ws = rustix::termios::Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        rustix::termios::tcsetwinsize(&master, ws)
            .ctx(|| "process.consoleSize: setting the window size".to_string())?;
    }
    Ok((master, slave, name))
}

/// A host PTY for a process whose terminal is relayed (a VM container's init or exec):
/// `(master, slave)`. With `--console-socket` the master is sent there and not kept.
pub fn host_pty(size: Option<(u16, u16)>, console_socket: Option<&Path>) -> Result<(Option<OwnedFd>, OwnedFd)> {
    let (m, s, _) = open_pty(size)?;
    match console_socket {
        Some(p) => {
            let sock = connect_console_socket(p)?;
            send_fd(sock.as_fd(), b"/dev/ptmx", m.as_fd())
                .ctx(|| "sending the PTY master to --console-socket".to_string())?;
            Ok((None, s))
        }
        None => Ok((Some(m), s)),
    }
}

/// Makes `slave` the controlling terminal and stdio of the calling process.
pub fn make_controlling(slave: &OwnedFd) -> Result<()> {
    rustix::process::setsid().ctx(|| "setsid".to_string())?;
    rustix::process::ioctl_tiocsctty(slave).ctx(|| "TIOCSCTTY".to_string())?;
    rustix::stdio::dup2_stdin(slave).ctx(|| "dup2 onto stdin".to_string())?;
    rustix::stdio::dup2_stdout(slave).ctx(|| "dup2 onto stdout".to_string())?;
    rustix::stdio::dup2_stderr(slave).ctx(|| "dup2 onto stderr".to_string())?;
    Ok(())
}

/// Connects to a `--console-socket` listening at `path`.
pub fn connect_console_socket(path: &Path) -> Result<OwnedFd> {
    let sock = rustix::net::socket_with(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .ctx(|| "creating a socket".to_string())?;
    let addr = rustix::net::SocketAddrUnix::new(path).ctx(|| format!("--console-socket {}", path.display()))?;
    rustix::net::connect(&sock, &addr).ctx(|| format!("connecting to --console-socket {}", path.display()))?;
    Ok(sock)
}

/// Where a new process's PTY master goes: `(ours, the process's)`. With `--console-socket`
/// the process sends it there and we keep nothing; with a terminal but no socket we keep
/// one end of a private pair and receive the master ourselves (foreground `run`, `exec -t`,
/// the embedding library).
pub fn console_endpoints(socket: Option<&Path>, terminal: bool) -> Result<(Option<OwnedFd>, Option<OwnedFd>)> {
    if let Some(p) = socket {
        return Ok((None, Some(connect_console_socket(p)?)));
    }
    if !terminal {
        return Ok((None, None));
    }
    let (ours, theirs) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .ctx(|| "creating the console socket pair".to_string())?;
    Ok((Some(ours), Some(theirs)))
}
