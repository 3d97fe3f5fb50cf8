//! Listening sockets as a gateway binds them: the options every lnm listener shares, and the
//! `SO_REUSEPORT` copies that let each thread-per-core worker accept on its own socket.
//!
//! The sockets are returned as `std::net` types in non-blocking mode, not registered with any
//! runtime: each worker turns its copy into a tokio socket (`from_std`) on its own event loop,
//! so readiness is delivered to the thread that serves the socket.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// How many sockets share one address, and how many connections each queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bind {
    /// Sockets on the address (one per worker). More than one sets `SO_REUSEPORT`: the kernel
    /// spreads new connections and datagrams over the sockets by their address hash.
    pub copies: usize,
    /// The listen backlog of each TCP socket (the kernel caps it at `net.core.somaxconn`).
    pub backlog: u32,
}

impl Bind {
    /// `copies` sockets with a backlog of `backlog` connections each.
    pub fn new(copies: usize, backlog: u32) -> Self {
        Bind {
            copies: copies.max(1),
            backlog,
        }
    }

    fn shared(&self) -> bool {
        self.copies > 1
    }
}

fn socket(addr: SocketAddr, kind: Type, protocol: Protocol, bind: &Bind) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), kind, Some(protocol))?;
    if kind == Type::STREAM {
        // As std and tokio do: a restarted gateway rebinds at once despite TIME_WAIT
        // connections.
        socket.set_reuse_address(true)?;
    }
    if bind.shared() {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// Claims `addr` for one gateway: a socket without `SO_REUSEPORT` is bound there first and
/// closed again, so an address another process (or another gateway of this process) already
/// listens on fails with `AddrInUse` instead of being shared by the kernel. With port 0 the
/// claim picks the free port the copies then take. Returns the address to bind the copies to.
fn claim(addr: SocketAddr, kind: Type, protocol: Protocol, bind: &Bind) -> io::Result<SocketAddr> {
    if !bind.shared() {
        return Ok(addr);
    }
    let single = Bind { copies: 1, ..*bind };
    let probe = socket(addr, kind, protocol, &single)?;
    if kind == Type::STREAM {
        // A listening socket is what makes later binds of the port conflict.
        probe.listen(1)?;
    }
    probe
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("bound socket has no IP address"))
}

/// `bind.copies` TCP listeners on `addr` (non-blocking, `SO_REUSEADDR`, `SO_REUSEPORT` when
/// more than one). With port 0 the copies share one free port. An address something else
/// listens on fails with `AddrInUse`, copies or not.
pub fn tcp_listeners(addr: SocketAddr, bind: Bind) -> io::Result<Vec<std::net::TcpListener>> {
    let at = claim(addr, Type::STREAM, Protocol::TCP, &bind)?;
    let mut out = Vec::with_capacity(bind.copies);
    for _ in 0..bind.copies {
        let socket = socket(at, Type::STREAM, Protocol::TCP, &bind)?;
        socket.listen(i32::try_from(bind.backlog).unwrap_or(i32::MAX))?;
        out.push(socket.into());
    }
    Ok(out)
}

/// `bind.copies` UDP sockets on `addr` (non-blocking, `SO_REUSEPORT` when more than one). With
/// port 0 the copies share one free port. An address something else is bound to fails with
/// `AddrInUse`, copies or not.
pub fn udp_sockets(addr: SocketAddr, bind: Bind) -> io::Result<Vec<std::net::UdpSocket>> {
    let at = claim(addr, Type::DGRAM, Protocol::UDP, &bind)?;
    (0..bind.copies)
        .map(|_| Ok(socket(at, Type::DGRAM, Protocol::UDP, &bind)?.into()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_share_the_port_the_first_one_got() {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let tcp = tcp_listeners(any, Bind::new(3, 16)).unwrap();
        let udp = udp_sockets(any, Bind::new(3, 16)).unwrap();
        for sockets in [
            tcp.iter()
                .map(|l| l.local_addr().unwrap())
                .collect::<Vec<_>>(),
            udp.iter().map(|s| s.local_addr().unwrap()).collect(),
        ] {
            assert_eq!(sockets.len(), 3);
            assert_ne!(sockets[0].port(), 0);
            assert!(sockets.iter().all(|a| *a == sockets[0]), "{sockets:?}");
        }
    }

    #[test]
    fn one_copy_does_not_share_its_port() {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let first = tcp_listeners(any, Bind::new(1, 16)).unwrap();
        let taken = first[0].local_addr().unwrap();
        // Without SO_REUSEPORT on the first socket, a second bind of its port fails: another
        // process cannot take a share of a single-worker gateway's connections.
        let err = tcp_listeners(taken, Bind::new(2, 16)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn copies_do_not_join_a_port_someone_else_holds() {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        // Another gateway with copies of its own (SO_REUSEPORT, same user): the kernel would
        // share the port; the claim refuses it.
        let tcp = tcp_listeners(any, Bind::new(2, 16)).unwrap();
        let err = tcp_listeners(tcp[0].local_addr().unwrap(), Bind::new(2, 16)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        let udp = udp_sockets(any, Bind::new(2, 16)).unwrap();
        let err = udp_sockets(udp[0].local_addr().unwrap(), Bind::new(2, 16)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn every_copy_accepts() {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let listeners = tcp_listeners(any, Bind::new(2, 64)).unwrap();
        let addr = listeners[0].local_addr().unwrap();
        // Connections from many source ports land on both sockets.
        let clients: Vec<_> = (0..64)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let accepted: Vec<usize> = listeners
            .iter()
            .map(|l| std::iter::from_fn(|| l.accept().ok()).count())
            .collect();
        assert_eq!(accepted.iter().sum::<usize>(), clients.len());
        assert!(accepted.iter().all(|&n| n > 0), "{accepted:?}");
    }
}
