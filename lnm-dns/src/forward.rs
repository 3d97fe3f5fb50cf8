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
