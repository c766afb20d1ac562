//! Network interface flags (`SIOCGIFFLAGS`/`SIOCSIFFLAGS`): rustix covers `SIOCGIFINDEX` and
//! `SIOCGIFNAME` only.

use std::io;
use std::os::fd::BorrowedFd;

use crate::{cvt_int, raw};

/// An `ifreq` naming `name`, everything else zero. Refuses names the kernel cannot hold
/// (empty, `IFNAMSIZ` bytes or more with the NUL, or containing a NUL).
fn request(name: &str) -> io::Result<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: ifreq is a byte array and a union of integers, sockaddrs and a pointer, for all
    // of which all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Ok(req)
}

/// `ioctl(sock, SIOCGIFFLAGS)`: the `IFF_*` flags of interface `name` in the network
/// namespace of `sock` (any socket, e.g. `AF_INET`/`SOCK_DGRAM`).
pub fn interface_flags(sock: BorrowedFd<'_>, name: &str) -> io::Result<i32> {
    let mut req = request(name)?;
    // SAFETY: SIOCGIFFLAGS reads the name from and writes the flags into the ifreq, which is
    // valid, initialised and exclusively borrowed for the duration of the call.
    cvt_int(unsafe { libc::ioctl(raw(sock), libc::SIOCGIFFLAGS as _, &mut req as *mut libc::ifreq) })?;
    // SAFETY: on success the kernel filled ifru_flags; the union was zeroed before, so every
    // byte of the field is initialised either way.
    Ok(i32::from(unsafe { req.ifr_ifru.ifru_flags }) & 0xffff)
}

/// `ioctl(sock, SIOCSIFFLAGS)`: sets the flags of interface `name` (the low 16 bits of
/// `flags`, as the ioctl carries them). Needs `CAP_NET_ADMIN` over the socket's network
/// namespace.
pub fn set_interface_flags(sock: BorrowedFd<'_>, name: &str, flags: i32) -> io::Result<()> {
    let mut req = request(name)?;
    req.ifr_ifru.ifru_flags = flags as libc::c_short;
    // SAFETY: SIOCSIFFLAGS only reads the ifreq, which is valid and initialised; the kernel
    // keeps no pointer to it.
    cvt_int(unsafe { libc::ioctl(raw(sock), libc::SIOCSIFFLAGS as _, &req as *const libc::ifreq) }).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn names_the_kernel_cannot_hold_are_refused() {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for bad in ["", "a-name-of-16-chr", "l\0o"] {
            let e = interface_flags(sock.as_fd(), bad).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{bad:?}");
        }
        // The host's lo is up (the test could not bind 127.0.0.1 otherwise) and a loopback.
        let lo = interface_flags(sock.as_fd(), "lo").unwrap();
        assert_eq!(lo & (libc::IFF_UP | libc::IFF_LOOPBACK), libc::IFF_UP | libc::IFF_LOOPBACK, "{lo:#x}");
        assert_eq!(interface_flags(sock.as_fd(), "berth-nonexist").unwrap_err().raw_os_error(), Some(libc::ENODEV));
    }
}
