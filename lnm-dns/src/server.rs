//! [`DnsServer`]: serves any DNS tower service over UDP and TCP on one address.
//!
//! - UDP: answers are fitted to the client's size (TC set when they do not fit); queries that
//!   are answered at once are answered inline, the others (forwarded) run as tasks, bounded in
//!   number (over the bound: SERVFAIL at once, so the client retries elsewhere).
//! - TCP: two-byte length framing, several queries in flight per connection (pipelining,
//!   answers in completion order as RFC 7766 allows), bounded connections, idle timeout.
//! - Malformed packets get FORMERR (or are dropped when they have no header, or are responses)
//!   and never stop the server.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use domain::base::iana::Rcode;
use futures_util::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tower::{BoxError, Service, ServiceExt};

use crate::message::{Query, Rejected, Response};
use crate::resolver::{DnsRequest, Transport};
use crate::udp::{BATCH, MAX_QUERY, Receiver, Sender};

/// Bounds of a DNS server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DnsLimits {
    /// Queries being forwarded at once (UDP and TCP together).
    pub max_in_flight: usize,
    /// Open TCP connections.
    pub max_tcp_connections: usize,
    /// Queries in flight on one TCP connection.
    pub max_tcp_pipeline: usize,
    /// A TCP connection with no complete query for this long is closed.
    pub tcp_idle: Duration,
}

impl Default for DnsLimits {
    fn default() -> Self {
        DnsLimits {
            max_in_flight: 4096,
            max_tcp_connections: 256,
            max_tcp_pipeline: 32,
            tcp_idle: Duration::from_secs(10),
        }
    }
}

/// Binds UDP and TCP on the same address. With port 0, TCP takes the port UDP got, trying
/// again with a new port when that TCP port happens to be in use.
pub async fn bind(addr: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    let (udp, tcp) = bind_workers(addr, 1)?
        .pop()
        .ok_or_else(|| io::Error::other("cannot bind DNS"))?;
    Ok((UdpSocket::from_std(udp)?, TcpListener::from_std(tcp)?))
}

/// Binds `workers` UDP + TCP socket pairs on the same address, for thread-per-core serving:
/// with more than one, every socket has `SO_REUSEPORT` and the kernel spreads clients over
/// them. The sockets are non-blocking and not yet tied to a runtime: each worker turns its pair
/// into tokio sockets (`from_std`) on its own event loop and serves them with
/// [`DnsServer::serve`]. With port 0, all take the port the first UDP socket got (trying again
/// with a new port when TCP cannot have it).
pub fn bind_workers(
    addr: SocketAddr,
    workers: usize,
) -> io::Result<Vec<(std::net::UdpSocket, std::net::TcpListener)>> {
    use lnm_core::socket::{Bind, tcp_listeners, udp_sockets};

    let bind = Bind::new(workers, TCP_BACKLOG);
    let attempts = if addr.port() == 0 { 16 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let udp = udp_sockets(addr, bind)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot bind DNS UDP {addr}: {e}")))?;
        let bound = udp[0].local_addr()?;
        match tcp_listeners(bound, bind) {
            Ok(tcp) => return Ok(udp.into_iter().zip(tcp).collect()),
            Err(e) => {
                last = Some(io::Error::new(
                    e.kind(),
                    format!("cannot bind DNS TCP {bound}: {e}"),
                ))
            }
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("cannot bind DNS")))
}

/// The listen backlog of a DNS TCP socket (tokio's default for its listeners).
const TCP_BACKLOG: u32 = 1024;

/// Serves a DNS service (such as a [`RewriteResolver`](crate::RewriteResolver)) until shut down.
#[derive(Debug, Clone)]
pub struct DnsServer<S> {
    service: S,
    limits: DnsLimits,
    in_flight: Arc<Semaphore>,
    tcp_slots: Arc<Semaphore>,
    shutdown: CancellationToken,
}

impl<S> DnsServer<S>
where
    S: Service<DnsRequest, Response = Response> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError> + Send,
    S::Future: Send + 'static,
{
    /// A server for `service`.
    pub fn new(service: S, limits: DnsLimits) -> Self {
        DnsServer {
            service,
            limits,
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
            tcp_slots: Arc::new(Semaphore::new(limits.max_tcp_connections)),
            shutdown: CancellationToken::new(),
        }
    }

    /// Stops every serve loop of this server.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Serves UDP and TCP (see [`bind`]) until [`shutdown`](Self::shutdown).
    pub async fn serve(&self, udp: UdpSocket, tcp: TcpListener) {
        tokio::join!(self.serve_udp(udp), self.serve_tcp(tcp));
    }

    /// Serves queries arriving on `socket`.
    ///
    /// Queries are taken in batches (see the `udp` module); the ones answered at once are
    /// answered together at the end of the batch, the others when their answer comes.
    pub async fn serve_udp(&self, socket: UdpSocket) {
        let socket = Arc::new(socket);
        let mut receiver = Receiver::new(BATCH, MAX_QUERY);
        let mut sender = Sender::new();
        loop {
            let received = tokio::select! {
                () = self.shutdown.cancelled() => return,
                received = receiver.recv(&socket) => received,
            };
            let count = match received {
                Ok(count) => count,
                // A transient failure (ICMP errors of earlier answers, memory): keep serving.
                Err(e) => {
                    tracing::debug!(error = %e, "DNS UDP receive failed");
                    continue;
                }
            };
            for i in 0..count {
                let (datagram, bytes) = receiver.get(i);
                let Some(client) = datagram.from else {
                    continue;
                };
                self.udp_query(&socket, &mut sender, client, bytes, datagram.truncated);
            }
            sender.flush(&socket).await;
        }
    }

    /// One UDP query: its answer is queued on `sender` when it is ready at once, otherwise a
    /// task sends it when it comes.
    fn udp_query(
        &self,
        socket: &Arc<UdpSocket>,
        sender: &mut Sender,
        client: SocketAddr,
        bytes: &[u8],
        truncated: bool,
    ) {
        let parsed = if truncated {
            Query::oversized(bytes)
        } else {
            Query::parse(Bytes::copy_from_slice(bytes))
        };
        let query = match parsed {
            Ok(query) => query,
            Err(Rejected::Drop) => return,
            Err(Rejected::Reply(response)) => {
                tracing::debug!(%client, len = bytes.len(), truncated, "malformed DNS query answered with an error");
                sender.push(response, client);
                return;
            }
        };
        let limit_query = query.clone();
        let request = DnsRequest {
            query,
            source: client,
            transport: Transport::Udp,
        };
        let mut service = self.service.clone();
        let answer = async move {
            match service.ready().await {
                Ok(ready) => ready.call(request).await.map_err(Into::into),
                Err(e) => Err(e.into()),
            }
        };
        let mut answer = Box::pin(answer);
        // Answered locally: the future is ready at once, no task needed.
        if let Some(result) = (&mut answer).now_or_never() {
            sender.push(udp_answer(client, &limit_query, result), client);
            return;
        }
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            tracing::warn!(%client, limit = self.limits.max_in_flight, "too many DNS queries in flight; SERVFAIL");
            sender.push(limit_query.empty(Rcode::SERVFAIL), client);
            return;
        };
        let socket = socket.clone();
        tokio::spawn(async move {
            let result = answer.await;
            let response = udp_answer(client, &limit_query, result);
            if let Err(e) = socket.send_to(response.as_bytes(), client).await {
                tracing::debug!(%client, error = %e, "DNS UDP send failed");
            }
            drop(permit);
        });
    }

    /// Serves TCP connections accepted on `listener`.
    pub async fn serve_tcp(&self, listener: TcpListener) {
        loop {
            let accepted = tokio::select! {
                () = self.shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let (stream, client) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::debug!(error = %e, "DNS TCP accept failed");
                    // Resource exhaustion must not spin the loop.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let Ok(slot) = self.tcp_slots.clone().try_acquire_owned() else {
                tracing::warn!(%client, limit = self.limits.max_tcp_connections, "too many DNS TCP connections; closed");
                continue;
            };
            let this = self.clone();
            tokio::spawn(async move {
                this.tcp_connection(stream, client).await;
                drop(slot);
            });
        }
    }

    async fn tcp_connection(&self, stream: TcpStream, client: SocketAddr) {
        let (mut reader, mut writer) = stream.into_split();
        let (tx, mut rx) = mpsc::channel::<Response>(self.limits.max_tcp_pipeline);
        let write_loop = async move {
            while let Some(response) = rx.recv().await {
                let bytes = response.as_bytes();
                let Ok(len) = u16::try_from(bytes.len()) else {
                    continue;
                };
                let mut framed = Vec::with_capacity(bytes.len() + 2);
                framed.extend_from_slice(&len.to_be_bytes());
                framed.extend_from_slice(bytes);
                if writer.write_all(&framed).await.is_err() {
                    return;
                }
            }
            let _ = writer.shutdown().await;
        };
        let pipeline = Arc::new(Semaphore::new(self.limits.max_tcp_pipeline));
        // The read loop owns the sender: when it ends, the write loop drains and closes.
        let read_loop = async move {
            loop {
                let read = tokio::time::timeout(self.limits.tcp_idle, async {
                    let len = usize::from(reader.read_u16().await?);
                    let mut msg = vec![0u8; len];
                    reader.read_exact(&mut msg).await?;
                    Ok::<_, io::Error>(msg)
                });
                let msg = tokio::select! {
                    () = self.shutdown.cancelled() => return,
                    read = read => match read {
                        Ok(Ok(msg)) => msg,
                        // EOF, reset, or idle: done with this connection.
                        _ => return,
                    },
                };
                let query = match Query::parse(Bytes::from(msg)) {
                    Ok(query) => query,
                    Err(Rejected::Drop) => continue,
                    Err(Rejected::Reply(response)) => {
                        if tx.send(response).await.is_err() {
                            return;
                        }
                        continue;
                    }
                };
                let Ok(permit) = pipeline.clone().acquire_owned().await else {
                    return;
                };
                let service = self.service.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let fallback = query.clone();
                    let request = DnsRequest {
                        query,
                        source: client,
                        transport: Transport::Tcp,
                    };
                    let response = match service.oneshot(request).await {
                        Ok(response) => response,
                        Err(_) => fallback.empty(Rcode::SERVFAIL),
                    };
                    let _ = tx.send(response).await;
                    drop(permit);
                });
            }
        };
        tokio::join!(read_loop, write_loop);
    }
}

/// The UDP answer to `query`: fitted to the client's size, SERVFAIL when the service failed.
fn udp_answer(client: SocketAddr, query: &Query, result: Result<Response, BoxError>) -> Response {
    match result {
        Ok(response) => query.fit_udp(response),
        Err(e) => {
            tracing::warn!(%client, error = %e, "DNS service failed; SERVFAIL");
            query.empty(Rcode::SERVFAIL)
        }
    }
}
