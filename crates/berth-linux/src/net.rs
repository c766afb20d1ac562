//! The container's network namespace: runc's "loopback" strategy.

use std::os::fd::AsFd;

use rustix::net::{AddressFamily, SocketFlags, SocketType};

use crate::error::{Error, Result};

/// Brings `lo` up in the current network namespace, as runc does for a network namespace it
/// creates (never for a joined one, whose owner configured it). Without it nothing in the
/// container can reach 127.0.0.1.
pub(crate) fn loopback_up() -> Result<()> {
    let fail = |what: &str, e: std::io::Error| Error::io(format!("linux.namespaces (network): {what}"), e);
    let sock = rustix::net::socket_with(AddressFamily::INET, SocketType::DGRAM, SocketFlags::CLOEXEC, None)
        .map_err(|e| fail("creating a socket to configure lo", e.into()))?;
    let flags = berth_sys::net::interface_flags(sock.as_fd(), "lo").map_err(|e| fail("reading the flags of lo", e))?;
    if flags & libc::IFF_UP == 0 {
        berth_sys::net::set_interface_flags(sock.as_fd(), "lo", flags | libc::IFF_UP)
            .map_err(|e| fail("bringing lo up", e))?;
    }
    Ok(())
}
