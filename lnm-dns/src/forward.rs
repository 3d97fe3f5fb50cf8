//! [`Forwarder`]: asks upstream DNS servers for the names this level does not rewrite, through
//! the crate's one DNS client (`client.rs`).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use domain::base::iana::Rcode;
use tower::Service;

use crate::cache::key;
use crate::client::{Client, ClientConfig, Source};
use crate::message::Response;
use crate::resolver::DnsRequest;

/// The longest a forwarded answer is cached, whatever its TTL: a day.
const MAX_TTL: u32 = 86_400;

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

/// Forwards queries upstream, as they came (under its own random IDs): upstreams in order
/// (one that times out, fails, or answers SERVFAIL/REFUSED moves the query to the next), a
/// small pool of UDP sockets per upstream (random ports), TCP retry on truncation, a bounded
/// cache honouring TTLs (negative answers included, TTLs lowered by their age when served),
/// one upstream exchange for concurrent identical questions. SERVFAIL when every upstream
/// failed. Cloning shares sockets and cache.
///
/// The same client is the [`UpstreamResolver`](crate::UpstreamResolver) of a top-level
/// gateway.
#[derive(Debug, Clone)]
pub struct Forwarder {
    client: Client,
}

impl Forwarder {
    /// Opens the upstream sockets (on the current tokio runtime).
    pub async fn new(config: ForwarderConfig) -> io::Result<Forwarder> {
        let client = Client::new(ClientConfig {
            upstreams: config.upstreams,
            timeout: config.timeout,
            cache_entries: config.cache_entries,
            max_ttl: MAX_TTL,
        });
        client.open().await?;
        Ok(Forwarder { client })
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
        match self.client.ask(&key, query.as_bytes()).await {
            Ok(answer) => {
                if answer.source == Source::Cache {
                    metrics::counter!("lnm_dns_cache_hits_total").increment(1);
                }
                query.with_own_id(&answer.bytes)
            }
            Err(failure) => {
                metrics::counter!("lnm_dns_upstream_failures_total").increment(1);
                tracing::warn!(
                    qname = query.qname(),
                    upstreams = ?self.client.servers(),
                    last_error = %failure,
                    "every DNS upstream failed; SERVFAIL"
                );
                query.empty(Rcode::SERVFAIL)
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Query;
    use crate::resolver::Transport;
    use domain::base::iana::Class;
    use domain::base::{Message, MessageBuilder, Rtype};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::net::UdpSocket;

    /// An upstream that answers A queries with 192.0.2.1 after `delay`, first sending a forged
    /// answer (right ID, another name) when `forge`; counts the queries it gets.
    async fn upstream(delay: Duration, forge: bool) -> (SocketAddr, Arc<AtomicUsize>) {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = socket.local_addr().unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let counter = count.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 512];
            loop {
                let (n, peer) = socket.recv_from(&mut buf).await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                let req = Message::from_octets(buf[..n].to_vec()).unwrap();
                let socket = socket.clone();
                tokio::spawn(async move {
                    if forge {
                        let mut forged = Query::build("elsewhere.example", Rtype::A)
                            .unwrap()
                            .answer(Rcode::NOERROR, 60, &["203.0.113.66".parse().unwrap()])
                            .as_bytes()
                            .to_vec();
                        forged[..2].copy_from_slice(&req.header().id().to_be_bytes());
                        socket.send_to(&forged, peer).await.unwrap();
                    }
                    tokio::time::sleep(delay).await;
                    let mut answer = MessageBuilder::new_vec()
                        .start_answer(&req, Rcode::NOERROR)
                        .unwrap();
                    let q = req.sole_question().unwrap();
                    let a = domain::rdata::A::new([192, 0, 2, 1].into());
                    answer.push((q.qname(), Class::IN, 300, a)).unwrap();
                    socket.send_to(&answer.finish(), peer).await.unwrap();
                });
            }
        });
        (addr, count)
    }

    fn request(name: &str) -> DnsRequest {
        DnsRequest {
            query: Query::build(name, Rtype::A).unwrap(),
            source: "10.2.0.9:5353".parse().unwrap(),
            transport: Transport::Udp,
        }
    }

    #[tokio::test]
    async fn concurrent_identical_questions_share_one_upstream_exchange() {
        let (up, count) = upstream(Duration::from_millis(100), false).await;
        let forwarder = Forwarder::new(ForwarderConfig::new(vec![up]).cache_entries(0))
            .await
            .unwrap();
        let asks = (0..20).map(|i| {
            let forwarder = forwarder.clone();
            // Each asker spells the name its own way and gets its own ID and spelling back.
            let name = if i % 2 == 0 {
                "Busy.Example"
            } else {
                "busy.example"
            };
            tokio::spawn(async move {
                let request = request(name);
                let answer = forwarder.forward(&request).await;
                (request.query.id(), name, answer)
            })
        });
        for ask in futures_util::future::join_all(asks).await {
            let (id, name, answer) = ask.unwrap();
            assert_eq!(answer.id(), Some(id));
            assert_eq!(
                answer.answers(),
                ["192.0.2.1".parse::<std::net::IpAddr>().unwrap()]
            );
            let msg = Message::from_octets(answer.as_bytes()).unwrap();
            assert_eq!(msg.sole_question().unwrap().qname().to_string(), name);
        }
        assert_eq!(
            count.load(Ordering::SeqCst),
            1,
            "one upstream query for twenty askers (no cache involved)"
        );
        assert_eq!(forwarder.client.in_flight(), 0);
    }

    #[tokio::test]
    async fn an_answer_to_another_question_under_the_right_id_is_not_taken() {
        let (up, _) = upstream(Duration::from_millis(20), true).await;
        let forwarder = Forwarder::new(ForwarderConfig::new(vec![up]))
            .await
            .unwrap();
        let answer = forwarder.forward(&request("real.example")).await;
        assert_eq!(
            answer.answers(),
            ["192.0.2.1".parse::<std::net::IpAddr>().unwrap()],
            "the forged answer was dropped, the real one taken"
        );
    }
}
