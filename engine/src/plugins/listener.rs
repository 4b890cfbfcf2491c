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

/// Whether the listeners may join sockets that another process already has on the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Refuse an address another process listens on (rr's behaviour without SO_REUSEPORT
    /// surprises: two servers silently splitting one port's traffic).
    Exclusive,
    /// Join them (a zero-downtime hand-over: the new server starts on the old one's port,
    /// then the old one stops).
    Shared,
}

/// A bind error in Go's words (`bind: address already in use`), as rr prints it after
/// `listen tcp <address>: `.
#[must_use]
pub fn bind_error_text(error: &std::io::Error) -> String {
    if error.raw_os_error() == Some(rustix::io::Errno::ADDRINUSE.raw_os_error()) {
        "bind: address already in use".into()
    } else {
        error.to_string()
    }
}

/// `count` listening sockets bound to `address` with SO_REUSEPORT (`count` ≥ 1), so the
/// shards share it. With [`Sharing::Exclusive`] an address that another socket is bound
/// to is refused first: a probe without SO_REUSEPORT cannot bind next to any listener.
///
/// # Errors
/// Bind and listen errors (address in use, permission).
pub fn bind_reuseport(
    address: SocketAddr,
    count: usize,
    sharing: Sharing,
) -> std::io::Result<Vec<TcpListener>> {
    if sharing == Sharing::Exclusive && address.port() != 0 {
        let probe = socket_for(address)?;
        // SO_REUSEADDR lets the probe past connections in TIME_WAIT, not past a listener.
        sockopt::set_socket_reuseaddr(&probe, true)?;
        rustix::net::bind(&probe, &address)?;
    }
    let mut address = address;
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let socket = socket_for(address)?;
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

fn socket_for(address: SocketAddr) -> std::io::Result<OwnedFd> {
    let family = if address.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    Ok(rustix::net::socket_with(
        family,
        SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_in_use_is_refused_unless_shared() {
        let first = bind_reuseport("127.0.0.1:0".parse().unwrap(), 2, Sharing::Exclusive).unwrap();
        let taken = first[0].local_addr().unwrap();
        let error = bind_reuseport(taken, 2, Sharing::Exclusive).unwrap_err();
        assert_eq!(bind_error_text(&error), "bind: address already in use");
        let joined = bind_reuseport(taken, 1, Sharing::Shared).unwrap();
        assert_eq!(joined[0].local_addr().unwrap(), taken);
    }
}
