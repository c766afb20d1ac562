//! Descriptors inherited across `execve` by number (socket activation style hand-offs).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Takes ownership of descriptor `n`, which the parent passed across `execve` and named (for
/// example in an environment variable). Fails with `EBADF` if `n` is not open, and refuses the
/// standard streams.
///
/// Call it once per descriptor, early in `main`, before anything else could have taken or
/// closed `n`: two owners of one descriptor would close it twice.
pub fn take_inherited(n: RawFd) -> io::Result<OwnedFd> {
    if n < 3 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: F_GETFD only queries the descriptor table entry; no memory is passed.
    if unsafe { libc::fcntl(n, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `n` is open (checked above) and, per this function's contract, owned by no
    // other object in this process.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// The most descriptors [`recv_with_fds`] takes from one message: every hand-off of the
/// project passes at most four (stdin, stdout, stderr and a terminal or pidfd).
pub const MAX_PASSED_FDS: usize = 4;

/// One `recvmsg` into `buf` with up to [`MAX_PASSED_FDS`] descriptors (always received
/// close-on-exec), retried on `EINTR`: `(bytes, descriptors)`. Descriptors the control buffer
/// could not hold are an error rather than silently lost (a process's stdio would be missing).
pub fn recv_with_fds(
    sock: std::os::fd::BorrowedFd<'_>,
    buf: &mut [u8],
    flags: rustix::net::RecvFlags,
) -> io::Result<(usize, Vec<OwnedFd>)> {
    use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags};
    let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_PASSED_FDS))];
    let mut anc = RecvAncillaryBuffer::new(&mut space);
    let got = loop {
        let mut iov = [io::IoSliceMut::new(&mut *buf)];
        match recvmsg(sock, &mut iov, &mut anc, flags | RecvFlags::CMSG_CLOEXEC) {
            Ok(r) => break r,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let mut fds = Vec::new();
    for m in anc.drain() {
        if let RecvAncillaryMessage::ScmRights(r) = m {
            fds.extend(r);
        }
    }
    if got.flags.contains(ReturnFlags::CTRUNC) {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "descriptors were truncated"));
    }
    Ok((got.bytes, fds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, IntoRawFd};

    #[test]
    fn takes_open_descriptors_and_refuses_closed_and_standard_ones() {
        let f = std::fs::File::open("/dev/null").unwrap().into_raw_fd();
        let owned = take_inherited(f).unwrap();
        assert_eq!(owned.as_raw_fd(), f);
        drop(owned);
        // (Not `f` again: another test thread may have reused the number by now.)
        assert_eq!(take_inherited(1 << 24).unwrap_err().raw_os_error(), Some(libc::EBADF));
        assert_eq!(take_inherited(1).unwrap_err().raw_os_error(), Some(libc::EBADF));
    }
}
