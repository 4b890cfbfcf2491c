//! TCP listeners: one socket per shard on the same address with SO_REUSEPORT, so the kernel
//! spreads connections over the shards and a connection lives on one shard.

use rustix::net::{sockopt, AddressFamily, SocketType};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::OwnedFd;

/// Resolves rr's `host:port` (an empty host means every interface, as in Go).
///
/// # Errors
/// An address that does not resolve.
pub fn resolve(address: &str) -> std::io::Result<SocketAddr> {
    let address = if address.starts_with(':') {
        format!("0.0.0.0{address}")
    } else {
        address.to_owned()
    };
    address.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "address resolves to nothing",
        )
    })
}

/// `count` listening sockets bound to `address` with SO_REUSEPORT (`count` ≥ 1).
///
/// # Errors
/// Bind and listen errors (address in use, permission).
pub fn bind_reuseport(address: SocketAddr, count: usize) -> std::io::Result<Vec<TcpListener>> {
    let mut address = address;
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let family = if address.is_ipv4() {
            AddressFamily::INET
        } else {
            AddressFamily::INET6
        };
        let socket: OwnedFd = rustix::net::socket_with(
            family,
            SocketType::STREAM,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )?;
        sockopt::set_socket_reuseaddr(&socket, true)?;
        sockopt::set_socket_reuseport(&socket, true)?;
        rustix::net::bind(&socket, &address)?;
        rustix::net::listen(&socket, 1024)?;
        let listener = TcpListener::from(socket);
        // Port 0: the first bind picks the port, the others join it.
        address = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}
