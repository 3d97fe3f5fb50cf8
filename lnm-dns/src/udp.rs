//! Datagrams in batches: one `recvmmsg(2)` takes every query waiting on a socket (up to
//! [`BATCH`]) and one `sendmmsg(2)` sends the answers of a batch, so a busy server pays one
//! system call per batch instead of two per query (Linux, feature `batch`). Elsewhere the same
//! interface loops over `recv_from`/`send_to`.
//!
//! The server keeps [`MAX_QUERY`] bytes of a query: no DNS query needs more (one question and
//! an OPT record), and a longer one is reported as truncated and answered with FORMERR.
//! Answers from upstream servers are kept whole (up to 64 KiB). Buffers are allocated zeroed
//! and only the pages that datagrams touch become resident.

use std::io;
use std::net::SocketAddr;

use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::message::Response;

/// Datagrams taken by one receive call on a server socket.
pub(crate) const BATCH: usize = 32;

/// The longest query kept whole.
pub(crate) const MAX_QUERY: usize = 4096;

/// The longest UDP payload.
pub(crate) const MAX_UDP: usize = 65_535;

/// One received datagram.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Datagram {
    len: usize,
    /// The sender (a connected socket's peer when the kernel gives none).
    pub(crate) from: Option<SocketAddr>,
    /// Longer than the receiver's slot: only the first bytes were kept.
    pub(crate) truncated: bool,
}

/// Receive buffers for one socket.
#[derive(Debug)]
pub(crate) struct Receiver {
    bufs: Vec<u8>,
    slot: usize,
    got: Vec<Datagram>,
}

impl Receiver {
    /// Up to `batch` datagrams of up to `slot` bytes each per call.
    pub(crate) fn new(batch: usize, slot: usize) -> Self {
        Receiver {
            bufs: vec![0u8; batch * slot],
            slot,
            got: Vec::with_capacity(batch),
        }
    }

    /// Waits for datagrams and takes all that are waiting, up to [`BATCH`].
    pub(crate) async fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        loop {
            socket.readable().await?;
            self.got.clear();
            match socket.try_io(Interest::READABLE, || {
                recv_batch(socket, &mut self.bufs, self.slot, &mut self.got)
            }) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Datagram `i` of the last batch and its bytes.
    pub(crate) fn get(&self, i: usize) -> (Datagram, &[u8]) {
        let datagram = self.got[i];
        let start = i * self.slot;
        (datagram, &self.bufs[start..start + datagram.len])
    }
}

#[cfg(all(target_os = "linux", feature = "batch"))]
fn recv_batch(
    socket: &UdpSocket,
    bufs: &mut [u8],
    slot: usize,
    got: &mut Vec<Datagram>,
) -> io::Result<usize> {
    use std::io::IoSliceMut;
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};

    let mut slices: Vec<[IoSliceMut<'_>; 1]> = bufs
        .chunks_mut(slot)
        .map(|chunk| [IoSliceMut::new(chunk)])
        .collect();
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(slices.len(), None);
    let results = recvmmsg(
        socket.as_raw_fd(),
        &mut headers,
        slices.iter_mut(),
        MsgFlags::MSG_DONTWAIT,
        None,
    )
    .map_err(io::Error::from)?;
    for message in results {
        got.push(Datagram {
            len: message.bytes.min(slot),
            from: message.address.as_ref().and_then(socket_addr),
            truncated: message.flags.contains(MsgFlags::MSG_TRUNC),
        });
    }
    Ok(got.len())
}

#[cfg(all(target_os = "linux", feature = "batch"))]
fn socket_addr(storage: &nix::sys::socket::SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = storage.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    storage
        .as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}

#[cfg(not(all(target_os = "linux", feature = "batch")))]
fn recv_batch(
    socket: &UdpSocket,
    bufs: &mut [u8],
    slot: usize,
    got: &mut Vec<Datagram>,
) -> io::Result<usize> {
    for chunk in bufs.chunks_mut(slot) {
        match socket.try_recv_from(chunk) {
            // Without MSG_TRUNC, a full buffer is the sign of a datagram that did not fit.
            Ok((len, from)) => got.push(Datagram {
                len,
                from: Some(from),
                truncated: len == slot && slot < MAX_UDP,
            }),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && !got.is_empty() => break,
            Err(e) => return Err(e),
        }
    }
    Ok(got.len())
}

/// Answers waiting to be sent together.
#[derive(Debug, Default)]
pub(crate) struct Sender {
    out: Vec<(Response, SocketAddr)>,
}

impl Sender {
    pub(crate) fn new() -> Self {
        Sender {
            out: Vec::with_capacity(BATCH),
        }
    }

    /// Queues `response` for `to`.
    pub(crate) fn push(&mut self, response: Response, to: SocketAddr) {
        self.out.push((response, to));
    }

    /// Sends everything queued. A datagram the kernel refuses (an unreachable client, a full
    /// buffer for too long) is dropped and logged: UDP clients retry.
    pub(crate) async fn flush(&mut self, socket: &UdpSocket) {
        let mut sent = 0;
        while sent < self.out.len() {
            match socket.try_io(Interest::WRITABLE, || send_batch(socket, &self.out[sent..])) {
                Ok(n) => sent += n.max(1),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // The send buffer is full: wait for room once, then go on.
                    let (response, to) = &self.out[sent];
                    if let Err(e) = socket.send_to(response.as_bytes(), to).await {
                        tracing::debug!(client = %to, error = %e, "DNS UDP send failed");
                    }
                    sent += 1;
                }
                Err(e) => {
                    let (_, to) = &self.out[sent];
                    tracing::debug!(client = %to, error = %e, "DNS UDP send failed");
                    sent += 1;
                }
            }
        }
        self.out.clear();
    }
}

#[cfg(all(target_os = "linux", feature = "batch"))]
fn send_batch(socket: &UdpSocket, out: &[(Response, SocketAddr)]) -> io::Result<usize> {
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};

    if out.len() == 1 {
        let (response, to) = &out[0];
        return socket.try_send_to(response.as_bytes(), *to).map(|_| 1);
    }
    let slices: Vec<[IoSlice<'_>; 1]> = out
        .iter()
        .map(|(response, _)| [IoSlice::new(response.as_bytes())])
        .collect();
    let addrs: Vec<Option<SockaddrStorage>> = out
        .iter()
        .map(|(_, to)| Some(SockaddrStorage::from(*to)))
        .collect();
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(out.len(), None);
    let no_cmsgs: [ControlMessage<'_>; 0] = [];
    let results = sendmmsg(
        socket.as_raw_fd(),
        &mut headers,
        &slices,
        &addrs,
        no_cmsgs,
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    Ok(results.count())
}

#[cfg(not(all(target_os = "linux", feature = "batch")))]
fn send_batch(socket: &UdpSocket, out: &[(Response, SocketAddr)]) -> io::Result<usize> {
    let (response, to) = &out[0];
    socket.try_send_to(response.as_bytes(), *to).map(|_| 1)
}
