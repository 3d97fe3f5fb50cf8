//! The one upstream DNS client of lnm: the [`Forwarder`](crate::Forwarder) (names a level does
//! not rewrite) and the [`UpstreamResolver`](crate::UpstreamResolver) (the top level's real
//! DNS) both ask through a [`Client`].
//!
//! - Upstreams are asked in order: one that times out, fails, or answers SERVFAIL/REFUSED
//!   moves the question to the next.
//! - UDP goes over a small pool of connected sockets per upstream (random source ports, opened
//!   on first use or by [`Client::open`]) with random query IDs; an answer is taken only from
//!   its upstream, under its query's ID, for its query's question (the name's case aside).
//! - A truncated answer is asked again over TCP.
//! - Answers are kept in a bounded cache (`cache.rs`) as long as their TTLs allow, and served
//!   with their TTLs lowered by their age.
//! - One exchange per question at a time: whoever asks a question already being asked waits
//!   for that exchange and shares its answer or its failure (if the asker that leads it goes
//!   away, the others ask themselves).

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use domain::base::Message;
use domain::base::iana::Rcode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{OnceCell, oneshot, watch};

use crate::cache::{Cache, Key};
use crate::message::qname_end;
use crate::udp::{MAX_UDP, Receiver};

/// UDP sockets per upstream.
const SOCKETS_PER_UPSTREAM: usize = 4;

/// Answers taken by one receive call on an upstream socket.
const UPSTREAM_BATCH: usize = 8;

/// What a [`Client`] is built with.
#[derive(Debug, Clone)]
pub(crate) struct ClientConfig {
    /// Upstream servers, asked in order.
    pub(crate) upstreams: Vec<SocketAddr>,
    /// How long one upstream gets for one exchange (UDP, and again for a TCP retry).
    pub(crate) timeout: Duration,
    /// How many answers the cache keeps (0: no cache).
    pub(crate) cache_entries: usize,
    /// The longest an answer is kept, in seconds, whatever its TTL.
    pub(crate) max_ttl: u32,
}

/// Why no upstream answered: what the last one tried did.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    /// No upstream is configured.
    NoUpstream,
    /// The upstream did not answer within the timeout.
    Timeout {
        /// The upstream.
        server: SocketAddr,
        /// The timeout that elapsed.
        after: Duration,
    },
    /// The upstream answered SERVFAIL or REFUSED.
    Rcode {
        /// The upstream.
        server: SocketAddr,
        /// Its answer's code.
        rcode: Rcode,
    },
    /// Sending, receiving or the TCP retry failed, or the TCP answer did not match.
    Io {
        /// The upstream.
        server: SocketAddr,
        /// What failed (shared: a failure is handed to every asker waiting for it).
        error: Arc<io::Error>,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::NoUpstream => f.write_str("no DNS upstream is configured"),
            Failure::Timeout { server, after } => {
                write!(f, "DNS server {server} did not answer within {after:?}")
            }
            Failure::Rcode { server, rcode } => write!(f, "DNS server {server} answered {rcode}"),
            Failure::Io { server, error } => write!(f, "DNS server {server}: {error}"),
        }
    }
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The cache.
    Cache,
    /// This upstream, just now (asked by this asker or by the one it waited for).
    Upstream(SocketAddr),
}

/// An upstream's answer, under the upstream's query ID.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    /// The wire bytes.
    pub(crate) bytes: Bytes,
    /// Where it came from.
    pub(crate) source: Source,
}

type Outcome = Result<Answer, Failure>;

/// Asks upstream DNS servers; clones share sockets, cache and lookups under way.
#[derive(Clone)]
pub(crate) struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    upstreams: Vec<Upstream>,
    timeout: Duration,
    cache: Mutex<Cache>,
    in_flight: Mutex<HashMap<Key, watch::Receiver<Option<Outcome>>>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("upstreams", &self.servers())
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

struct Upstream {
    addr: SocketAddr,
    sockets: OnceCell<Vec<UpstreamSocket>>,
}

/// Queries sent on one socket and waiting for their answer, by query ID: the query (to check
/// the answer's question) and where to hand the answer.
type Pending = Arc<Mutex<HashMap<u16, (Bytes, oneshot::Sender<Bytes>)>>>;

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

/// Ends a query's entry in its socket's pending map, whether an answer came, the wait timed
/// out, or the asker went away (a dropped lookup leaves nothing behind).
struct Waiting<'a> {
    pending: &'a Pending,
    id: u16,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

/// Ends a lookup's entry in the in-flight map, whether the lookup finished or was dropped;
/// dropping the sender without an outcome tells the waiters to ask themselves.
struct Leading<'a> {
    in_flight: &'a Mutex<HashMap<Key, watch::Receiver<Option<Outcome>>>>,
    key: &'a Key,
    done: watch::Sender<Option<Outcome>>,
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(self.key);
    }
}

/// Whether an asker leads the exchange of its question or waits for the one under way.
enum Turn {
    Lead(watch::Sender<Option<Outcome>>),
    Wait(watch::Receiver<Option<Outcome>>),
}

impl Client {
    /// A client of `config.upstreams`; no socket is opened before the first question (or
    /// [`open`](Self::open)), so this needs no runtime.
    pub(crate) fn new(config: ClientConfig) -> Client {
        Client {
            inner: Arc::new(Inner {
                upstreams: config
                    .upstreams
                    .into_iter()
                    .map(|addr| Upstream {
                        addr,
                        sockets: OnceCell::new(),
                    })
                    .collect(),
                timeout: config.timeout,
                cache: Mutex::new(Cache::new(config.cache_entries, config.max_ttl)),
                in_flight: Mutex::default(),
            }),
        }
    }

    /// Opens the sockets of every upstream now (on the current tokio runtime), so that a
    /// socket that cannot be bound is reported at start rather than at the first question.
    pub(crate) async fn open(&self) -> io::Result<()> {
        for upstream in &self.inner.upstreams {
            upstream.sockets().await?;
        }
        Ok(())
    }

    /// The upstreams, in the order they are asked.
    pub(crate) fn servers(&self) -> Vec<SocketAddr> {
        self.inner.upstreams.iter().map(|u| u.addr).collect()
    }

    /// The answer to `query` (whose question `key` names): from the cache, from the exchange
    /// of the same question under way, or from the upstreams in order. Fresh answers are
    /// cached as their TTLs allow.
    pub(crate) async fn ask(&self, key: &Key, query: &[u8]) -> Outcome {
        if let Some(answer) = self.cached(key) {
            return Ok(answer);
        }
        let turn = {
            let mut in_flight = self
                .inner
                .in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match in_flight.get(key) {
                Some(done) => Turn::Wait(done.clone()),
                None => {
                    let (tx, rx) = watch::channel(None);
                    in_flight.insert(key.clone(), rx);
                    Turn::Lead(tx)
                }
            }
        };
        match turn {
            Turn::Lead(done) => {
                let leading = Leading {
                    in_flight: &self.inner.in_flight,
                    key,
                    done,
                };
                let outcome = self.ask_upstreams(key, query).await;
                leading.done.send_replace(Some(outcome.clone()));
                outcome
            }
            Turn::Wait(mut done) => {
                // `Err`: the leading asker went away without an outcome (its sender dropped).
                let shared = done
                    .wait_for(Option::is_some)
                    .await
                    .ok()
                    .and_then(|outcome| outcome.clone());
                match shared {
                    Some(outcome) => outcome,
                    None => match self.cached(key) {
                        Some(answer) => Ok(answer),
                        None => self.ask_upstreams(key, query).await,
                    },
                }
            }
        }
    }

    /// Keeps `answer` (to the question `key` names) for `ttl` seconds: for an answer that
    /// carries no TTL of its own but is known to be good that long.
    pub(crate) fn store(&self, key: Key, answer: Bytes, ttl: u32) {
        self.inner
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert_for(key, answer, ttl, Instant::now());
    }

    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.inner
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Queries sent and waiting for their answer, on every socket.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        let waiting = |socket: &UpstreamSocket| {
            socket
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .len()
        };
        self.inner
            .upstreams
            .iter()
            .filter_map(|upstream| upstream.sockets.get())
            .flat_map(|sockets| sockets.iter().map(waiting))
            .sum()
    }

    fn cached(&self, key: &Key) -> Option<Answer> {
        let bytes = self
            .inner
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key, Instant::now())?;
        Some(Answer {
            bytes,
            source: Source::Cache,
        })
    }

    /// Asks the upstreams in order (no cache lookup, no sharing) and caches the answer.
    async fn ask_upstreams(&self, key: &Key, query: &[u8]) -> Outcome {
        let mut last = Failure::NoUpstream;
        for upstream in &self.inner.upstreams {
            let server = upstream.addr;
            match self.exchange(upstream, query).await {
                Ok(bytes) => {
                    let rcode = Message::from_octets(bytes.as_ref()).map(|m| m.header().rcode());
                    if let Ok(rcode @ (Rcode::SERVFAIL | Rcode::REFUSED)) = rcode {
                        tracing::debug!(%server, ?key, %rcode, "DNS upstream refused or failed, trying the next");
                        last = Failure::Rcode { server, rcode };
                        continue;
                    }
                    self.inner
                        .cache
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(key.clone(), bytes.clone(), Instant::now());
                    return Ok(Answer {
                        bytes,
                        source: Source::Upstream(server),
                    });
                }
                Err(failure) => {
                    tracing::debug!(%server, ?key, error = %failure, "DNS upstream failed, trying the next");
                    last = failure;
                }
            }
        }
        Err(last)
    }

    /// One exchange with one upstream: UDP under a random ID, then TCP if the answer is
    /// truncated.
    async fn exchange(&self, upstream: &Upstream, query: &[u8]) -> Result<Bytes, Failure> {
        let server = upstream.addr;
        let timeout = self.inner.timeout;
        let io = |error: io::Error| Failure::Io {
            server,
            error: Arc::new(error),
        };
        if query.len() < 12 {
            return Err(io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a DNS query is at least a 12-byte header",
            )));
        }
        let sockets = upstream.sockets().await.map_err(io)?;
        let r = lnm_core::random_u64();
        let socket = &sockets[(r as usize) % sockets.len()];
        let (tx, rx) = oneshot::channel();
        let mut out = query.to_vec();
        let waiting = {
            let mut pending = socket.pending.lock().unwrap_or_else(|e| e.into_inner());
            let mut id = (r >> 16) as u16;
            while pending.contains_key(&id) {
                id = id.wrapping_add(1);
            }
            out[..2].copy_from_slice(&id.to_be_bytes());
            pending.insert(id, (Bytes::copy_from_slice(&out), tx));
            Waiting {
                pending: &socket.pending,
                id,
            }
        };
        let result = tokio::time::timeout(timeout, async {
            socket.socket.send(&out).await?;
            rx.await
                .map_err(|_| io::Error::other("the upstream socket's receiver stopped"))
        })
        .await;
        drop(waiting);
        let answer = match result {
            Ok(answer) => answer.map_err(io)?,
            Err(_) => {
                return Err(Failure::Timeout {
                    server,
                    after: timeout,
                });
            }
        };
        if Message::from_octets(answer.as_ref()).is_ok_and(|m| m.header().tc()) {
            return match tokio::time::timeout(timeout, tcp_exchange(server, &out)).await {
                Ok(answer) => answer.map_err(io),
                Err(_) => Err(Failure::Timeout {
                    server,
                    after: timeout,
                }),
            };
        }
        Ok(answer)
    }
}

impl Upstream {
    /// The upstream's sockets, opened (and their receivers started) on first use.
    async fn sockets(&self) -> io::Result<&[UpstreamSocket]> {
        let sockets = self
            .sockets
            .get_or_try_init(|| open_sockets(self.addr))
            .await?;
        Ok(sockets)
    }
}

async fn open_sockets(addr: SocketAddr) -> io::Result<Vec<UpstreamSocket>> {
    let mut sockets = Vec::with_capacity(SOCKETS_PER_UPSTREAM);
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
    Ok(sockets)
}

/// Dispatches the answers arriving on one upstream socket to the queries waiting for them,
/// taking every answer waiting on the socket at once. Datagrams that are not an answer to a
/// waiting query (unknown ID, another question, not a response) are dropped.
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
            let matches = pending
                .get(&id)
                .is_some_and(|(query, _)| answers_question(answer, query));
            if let Some((_, waiter)) = matches.then(|| pending.remove(&id)).flatten() {
                let _ = waiter.send(Bytes::copy_from_slice(answer));
            }
        }
    }
}

/// Whether `answer` is for `query`'s question: the same name (ASCII case aside), type and
/// class. An answer without a question section (some servers' FORMERR or NOTIMP) is taken on
/// its ID alone, and so is any answer to a query whose question cannot be delimited.
pub(crate) fn answers_question(answer: &[u8], query: &[u8]) -> bool {
    if answer.get(4..6) == Some(&[0, 0][..]) {
        return true;
    }
    let Some(name_end) = qname_end(query) else {
        return true;
    };
    let (Some(asked), Some(echoed)) = (query.get(12..name_end + 4), answer.get(12..name_end + 4))
    else {
        return false;
    };
    let name = name_end - 12;
    asked[..name].eq_ignore_ascii_case(&echoed[..name]) && asked[name..] == echoed[name..]
}

/// One DNS exchange over TCP (RFC 1035 §4.2.2 two-byte length framing): sends `query`,
/// returns the answer if it carries the query's ID and question.
async fn tcp_exchange(server: SocketAddr, query: &[u8]) -> io::Result<Bytes> {
    let mut stream = TcpStream::connect(server).await?;
    let len = u16::try_from(query.len()).map_err(|_| io::Error::other("query too long"))?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let len = usize::from(stream.read_u16().await?);
    let mut answer = vec![0u8; len];
    stream.read_exact(&mut answer).await?;
    if answer.len() < 12
        || answer[..2] != query[..2]
        || answer[2] & 0x80 == 0
        || !answers_question(&answer, query)
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "TCP answer does not match the query",
        ));
    }
    Ok(Bytes::from(answer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Query, Rtype};

    #[test]
    fn answers_must_echo_the_question() {
        let query = Query::build("Cloud.Example", Rtype::A).unwrap();
        let query = query.as_bytes();
        let mut answer = query.to_vec();
        answer[2] |= 0x80;
        assert!(answers_question(&answer, query));
        // Another case of the same name: still the question (0x20 randomisation).
        let lower = answer.to_ascii_lowercase();
        assert!(answers_question(&lower, query));
        // Another type, another name, a cut question: not the answer.
        let mut other_type = answer.clone();
        let at = qname_end(query).unwrap() + 1;
        other_type[at] = 28;
        assert!(!answers_question(&other_type, query));
        let mut other_name = answer.clone();
        other_name[13] = b'x';
        assert!(!answers_question(&other_name, query));
        assert!(!answers_question(&answer[..20], query));
        // No question echoed: taken on the ID.
        let mut bare = answer[..12].to_vec();
        bare[5] = 0;
        assert!(answers_question(&bare, query));
    }

    proptest::proptest! {
        #[test]
        fn checking_garbage_never_panics(
            answer in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            query in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            let _ = answers_question(&answer, &query);
        }
    }
}
