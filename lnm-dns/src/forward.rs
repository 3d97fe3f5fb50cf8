//! [`Forwarder`]: asks upstream DNS servers for the names this level does not rewrite.
//!
//! Queries go out over a small pool of UDP sockets per upstream (random source ports, random
//! query IDs, answers matched by ID and source), with a TCP retry when an answer is truncated.
//! Upstreams are asked in order: one that times out, fails, or answers SERVFAIL/REFUSED moves
//! the query to the next. Answers are cached as long as their TTLs allow (negative answers
//! included), in a bounded cache.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use domain::base::Message;
use domain::base::iana::Rcode;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tower::Service;

use crate::cache::{Cache, key};
use crate::message::Response;
use crate::resolver::DnsRequest;
use crate::udp::{MAX_UDP, Receiver};

/// UDP sockets per upstream.
const SOCKETS_PER_UPSTREAM: usize = 4;

/// Answers taken by one receive call on an upstream socket.
const UPSTREAM_BATCH: usize = 8;

/// Forwarder settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ForwarderConfig {
    /// Upstream servers, asked in order.
    pub upstreams: Vec<SocketAddr>,
    /// How long one upstream gets for one query.
    pub timeout: Duration,
    /// How many answers the cache keeps (0: no cache).
    pub cache_entries: usize,
}

impl ForwarderConfig {
    /// Asks `upstreams` in order, 2 s each, caching up to 10,000 answers.
    pub fn new(upstreams: Vec<SocketAddr>) -> Self {
        ForwarderConfig {
            upstreams,
            timeout: Duration::from_secs(2),
            cache_entries: 10_000,
        }
    }

    /// Sets the per-upstream timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the cache size (0 disables caching).
    pub fn cache_entries(mut self, entries: usize) -> Self {
        self.cache_entries = entries;
        self
    }
}

type Pending = Arc<Mutex<HashMap<u16, oneshot::Sender<Bytes>>>>;

#[derive(Debug)]
struct UpstreamSocket {
    socket: Arc<UdpSocket>,
    pending: Pending,
    receiver: tokio::task::JoinHandle<()>,
}

impl Drop for UpstreamSocket {
    fn drop(&mut self) {
        self.receiver.abort();
    }
}

#[derive(Debug)]
struct Upstream {
    addr: SocketAddr,
    sockets: Vec<UpstreamSocket>,
}

#[derive(Debug)]
struct Inner {
    upstreams: Vec<Upstream>,
    timeout: Duration,
    cache: Mutex<Cache>,
}

/// Forwards queries upstream: a small pool of UDP sockets per upstream (random ports and IDs),
/// TCP retry on truncation, upstreams in order, a bounded cache honouring TTLs (negative answers
/// included). Cloning shares sockets and cache.
#[derive(Debug, Clone)]
pub struct Forwarder {
    inner: Arc<Inner>,
}

fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u8(0);
    hasher.finish()
}

impl Forwarder {
    /// Opens the upstream sockets (on the current tokio runtime).
    pub async fn new(config: ForwarderConfig) -> io::Result<Forwarder> {
        let mut upstreams = Vec::new();
        for addr in config.upstreams {
            let mut sockets = Vec::new();
            for _ in 0..SOCKETS_PER_UPSTREAM {
                let bind: SocketAddr = if addr.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    ([0u16; 8], 0).into()
                };
                let socket = Arc::new(UdpSocket::bind(bind).await?);
                socket.connect(addr).await?;
                let pending: Pending = Arc::default();
                let receiver = tokio::spawn(receive(socket.clone(), pending.clone()));
                sockets.push(UpstreamSocket {
                    socket,
                    pending,
                    receiver,
                });
            }
            upstreams.push(Upstream { addr, sockets });
        }
        let cache = Mutex::new(Cache::new(config.cache_entries));
        Ok(Forwarder {
            inner: Arc::new(Inner {
                upstreams,
                timeout: config.timeout,
                cache,
            }),
        })
    }

    /// Answers `request` from the cache or the upstreams; SERVFAIL when every upstream failed.
    pub async fn forward(&self, request: &DnsRequest) -> Response {
        let query = &request.query;
        let key = key(
            query.qname(),
            query.qtype(),
            query.qclass(),
            query.edns_udp_size().is_some(),
        );
        let cached = self
            .inner
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key, Instant::now());
        if let Some(answer) = cached {
            metrics::counter!("lnm_dns_cache_hits_total").increment(1);
            return query.with_own_id(&answer);
        }
        for upstream in &self.inner.upstreams {
            match self.ask(upstream, query.as_bytes()).await {
                Ok(answer) => {
                    let rcode = Message::from_octets(answer.as_ref()).map(|m| m.header().rcode());
                    if matches!(rcode, Ok(Rcode::SERVFAIL | Rcode::REFUSED)) {
                        tracing::debug!(upstream = %upstream.addr, qname = query.qname(), "upstream answered {rcode:?}, trying the next");
                        continue;
                    }
                    self.inner
                        .cache
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(key, answer.clone(), Instant::now());
                    return query.with_own_id(&answer);
                }
                Err(e) => {
                    tracing::debug!(upstream = %upstream.addr, qname = query.qname(), error = %e, "upstream failed, trying the next");
                }
            }
        }
        metrics::counter!("lnm_dns_upstream_failures_total").increment(1);
        tracing::warn!(
            qname = query.qname(),
            upstreams = self.inner.upstreams.len(),
            "every DNS upstream failed; SERVFAIL"
        );
        query.empty(Rcode::SERVFAIL)
    }

    /// One exchange with one upstream: UDP, then TCP if the answer is truncated.
    async fn ask(&self, upstream: &Upstream, query: &[u8]) -> io::Result<Bytes> {
        let r = random_u64();
        let socket = &upstream.sockets[(r as usize) % upstream.sockets.len()];
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut pending = socket.pending.lock().unwrap_or_else(|e| e.into_inner());
            let mut id = (r >> 16) as u16;
            while pending.contains_key(&id) {
                id = id.wrapping_add(1);
            }
            pending.insert(id, tx);
            id
        };
        let mut out = query.to_vec();
        out[..2].copy_from_slice(&id.to_be_bytes());
        let result = tokio::time::timeout(self.inner.timeout, async {
            socket.socket.send(&out).await?;
            rx.await
                .map_err(|_| io::Error::other("upstream receiver stopped"))
        })
        .await;
        socket
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        let answer = match result {
            Ok(answer) => answer?,
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no answer from {} within {:?}",
                        upstream.addr, self.inner.timeout
                    ),
                ));
            }
        };
        if Message::from_octets(answer.as_ref()).is_ok_and(|m| m.header().tc()) {
            return tokio::time::timeout(self.inner.timeout, tcp_exchange(upstream.addr, &out))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TCP retry timed out"))?;
        }
        Ok(answer)
    }
}

/// Dispatches the answers arriving on one upstream socket to the queries waiting for them,
/// taking every answer waiting on the socket at once.
async fn receive(socket: Arc<UdpSocket>, pending: Pending) {
    let mut receiver = Receiver::new(UPSTREAM_BATCH, MAX_UDP);
    loop {
        let count = match receiver.recv(&socket).await {
            Ok(count) => count,
            // ICMP port unreachable and the like: the waiting query times out.
            Err(_) => continue,
        };
        let mut pending = pending.lock().unwrap_or_else(|e| e.into_inner());
        for i in 0..count {
            let (datagram, answer) = receiver.get(i);
            if datagram.truncated || answer.len() < 12 || answer[2] & 0x80 == 0 {
                continue;
            }
            let id = u16::from_be_bytes([answer[0], answer[1]]);
            if let Some(waiter) = pending.remove(&id) {
                let _ = waiter.send(Bytes::copy_from_slice(answer));
            }
        }
    }
}

async fn tcp_exchange(server: SocketAddr, query: &[u8]) -> io::Result<Bytes> {
    let buf = lnm_core::resolve::tcp_exchange(server, query).await?;
    if buf.len() < 2 || buf[..2] != query[..2] {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "TCP answer does not match the query",
        ));
    }
    Ok(Bytes::from(buf))
}

impl Service<DnsRequest> for Forwarder {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: DnsRequest) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.forward(&request).await) })
    }
}
