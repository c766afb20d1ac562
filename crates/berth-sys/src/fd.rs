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
