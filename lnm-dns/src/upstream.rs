//! [`UpstreamResolver`]: the top-level gateway's real DNS (`resolver.upstream`), asking
//! through the crate's one DNS client (`client.rs`), as the [`Forwarder`](crate::Forwarder)
//! does.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use domain::base::Rtype;
use domain::base::iana::{Class, Rcode};
use lnm_core::{Error, Name, Resolve, async_trait};

use crate::cache::{Key, cache_ttl, key};
use crate::client::{Answer, Client, ClientConfig, Failure, Source};
use crate::message::{Query, Response};

/// Questions whose answers are kept, by default: 1,024 names, A and AAAA.
const DEFAULT_CACHE_ENTRIES: usize = 2048;

/// The longest an answer is kept, whatever its TTL: an hour.
const MAX_TTL: u32 = 3600;

/// How long one server gets for one question, by default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Asks a list of DNS servers, in order, for the A and AAAA records of a name: an
/// [`lnm_core::Resolve`] for [`Direct`](lnm_core::hop::Direct) hops, the resolver of a
/// top-level gateway whose `resolver.upstream` lists servers.
///
/// It asks through the same client as the [`Forwarder`](crate::Forwarder): each server gets
/// `timeout` per attempt; a server that times out, fails or answers `SERVFAIL`/`REFUSED`
/// moves the question to the next one. A truncated UDP answer is asked again over TCP.
/// `NXDOMAIN` or an empty answer is final. Query IDs and source ports are random, and an
/// answer counts only under its query's ID and question.
///
/// Answers are cached for the smallest TTL of their records (at most an hour; TTL 0 is not
/// cached; an empty AAAA or A answer without SOA is kept as long as the other family's), so a
/// top-level gateway does not ask for every connection. Failures are not cached. Concurrent
/// lookups of one name share one exchange per question (the others wait for it and take its
/// answer, or its failure). Clones share the cache and the sockets, which are opened at the
/// first lookup (on the runtime that makes it).
///
/// ```
/// use std::time::Duration;
/// use lnm_core::hop::Direct;
/// use lnm_core::StaticHosts;
/// use lnm_dns::UpstreamResolver;
///
/// let dns = UpstreamResolver::new(vec!["192.0.2.53:53".parse().unwrap()])
///     .with_timeout(Duration::from_secs(1));
/// let hosts: StaticHosts = [("broker.l4.local".parse().unwrap(), "10.4.0.20".parse().unwrap())]
///     .into_iter()
///     .collect();
/// let to_the_cloud = Direct::with_resolver(hosts.with_fallback(dns));
/// # let _ = to_the_cloud;
/// ```
#[derive(Debug, Clone)]
pub struct UpstreamResolver {
    config: ClientConfig,
    client: Client,
}

/// One question's answer, with what the resolver needs from it.
struct Asked {
    key: Key,
    answer: Answer,
    addrs: Vec<IpAddr>,
}

impl UpstreamResolver {
    /// Asks `servers` in order with a 2 s timeout per attempt, caching the answers of up to
    /// 1,024 names. Needs no runtime: sockets are opened at the first lookup.
    pub fn new(servers: Vec<SocketAddr>) -> Self {
        let config = ClientConfig {
            upstreams: servers,
            timeout: DEFAULT_TIMEOUT,
            cache_entries: DEFAULT_CACHE_ENTRIES,
            max_ttl: MAX_TTL,
        };
        UpstreamResolver {
            client: Client::new(config.clone()),
            config,
        }
    }

    /// Sets how many names the cache keeps (0: no cache). A builder step: call it before
    /// cloning the resolver.
    pub fn with_cache_entries(mut self, entries: usize) -> Self {
        self.config.cache_entries = entries.saturating_mul(2);
        self.client = Client::new(self.config.clone());
        self
    }

    /// Sets the timeout of one attempt at one server. A builder step: call it before cloning
    /// the resolver.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self.client = Client::new(self.config.clone());
        self
    }

    /// The configured servers, in the order they are asked.
    pub fn servers(&self) -> &[SocketAddr] {
        &self.config.upstreams
    }

    /// The answer to the `rtype` question for `name`: NOERROR or NXDOMAIN, else an error.
    async fn ask(&self, name: &Name, rtype: Rtype) -> Result<Asked, Error> {
        let query = Query::build(name.as_str(), rtype).map_err(|e| Error::Resolve {
            name: name.clone(),
            source: io::Error::new(io::ErrorKind::InvalidInput, e),
        })?;
        let key = key(name.as_str(), rtype, Class::IN, false);
        let answer = self
            .client
            .ask(&key, query.as_bytes())
            .await
            .map_err(|failure| self.error(name, failure))?;
        let response = Response::new(answer.bytes.clone());
        match response.rcode() {
            Some(Rcode::NOERROR | Rcode::NXDOMAIN) => {}
            rcode => {
                let server = match answer.source {
                    Source::Upstream(server) => server,
                    // Only NOERROR and NXDOMAIN answers are cached; name a server anyway.
                    Source::Cache => self
                        .servers()
                        .first()
                        .copied()
                        .unwrap_or(([0; 4], 0).into()),
                };
                return Err(Error::DnsRcode {
                    server,
                    name: name.clone(),
                    rcode: rcode.map_or_else(|| "no header".to_owned(), |r| r.to_string()),
                });
            }
        }
        let addrs = response
            .answers()
            .into_iter()
            .filter(|ip| ip.is_ipv4() == (rtype == Rtype::A))
            .collect();
        Ok(Asked { key, answer, addrs })
    }

    /// The resolver's error for a question no server answered.
    fn error(&self, name: &Name, failure: Failure) -> Error {
        let name = name.clone();
        match failure {
            Failure::NoUpstream => Error::NoDestination {
                hop: "upstream resolver",
            },
            Failure::Rcode { server, rcode } => Error::DnsRcode {
                server,
                name,
                rcode: rcode.to_string(),
            },
            Failure::Timeout { .. } => Error::Resolve {
                name,
                source: io::Error::new(io::ErrorKind::TimedOut, failure.to_string()),
            },
            Failure::Io { ref error, .. } => Error::Resolve {
                name,
                source: io::Error::new(error.kind(), failure.to_string()),
            },
        }
    }

    /// Keeps `empty` (an answer without a TTL of its own: no records, no SOA) as long as its
    /// sibling `other` (the other address family of the same name) is kept, so that a name is
    /// answered from the cache whole or asked again whole.
    fn keep_with(&self, empty: &Asked, other: &Asked) {
        if empty.answer.source == Source::Cache
            || cache_ttl(&empty.answer.bytes).is_some()
            || Response::new(empty.answer.bytes.clone()).is_truncated()
        {
            return;
        }
        if let Some(ttl) = cache_ttl(&other.answer.bytes) {
            self.client
                .store(empty.key.clone(), empty.answer.bytes.clone(), ttl);
        }
    }
}

#[async_trait]
impl Resolve for UpstreamResolver {
    async fn resolve(&self, name: &Name) -> Result<Vec<IpAddr>, Error> {
        let (a, aaaa) = tokio::join!(self.ask(name, Rtype::A), self.ask(name, Rtype::AAAA));
        let mut ips = Vec::new();
        match (a, aaaa) {
            (Err(e), Err(_)) => return Err(e),
            (Ok(a), Ok(aaaa)) => {
                self.keep_with(&a, &aaaa);
                self.keep_with(&aaaa, &a);
                ips.extend(a.addrs);
                ips.extend(aaaa.addrs);
            }
            (Ok(one), Err(_)) | (Err(_), Ok(one)) => ips.extend(one.addrs),
        }
        ips.dedup();
        if ips.is_empty() {
            return Err(Error::NoAddress { name: name.clone() });
        }
        Ok(ips)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::base::iana::{Class, Rcode};
    use domain::base::{Message, MessageBuilder};
    use domain::rdata::A;
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::net::UdpSocket;

    /// A DNS server on loopback that answers A queries with `ip` (or with `rcode`).
    async fn stub(ip: std::net::Ipv4Addr, rcode: Rcode) -> SocketAddr {
        stub_with_ttl(ip, rcode, 60).await.0
    }

    /// [`stub`] with the TTL of its records, counting the queries it gets.
    async fn stub_with_ttl(
        ip: std::net::Ipv4Addr,
        rcode: Rcode,
        ttl: u32,
    ) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = count.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 512];
            loop {
                let (n, peer) = socket.recv_from(&mut buf).await.unwrap();
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let req = Message::from_octets(buf[..n].to_vec()).unwrap();
                let mut answer = MessageBuilder::new_vec().start_answer(&req, rcode).unwrap();
                let q = req.sole_question().unwrap();
                if q.qtype() == Rtype::A && rcode == Rcode::NOERROR {
                    answer
                        .push((q.qname(), Class::IN, ttl, A::new(ip)))
                        .unwrap();
                }
                socket.send_to(&answer.finish(), peer).await.unwrap();
            }
        });
        (addr, count)
    }

    fn queries(count: &std::sync::atomic::AtomicUsize) -> usize {
        count.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test]
    async fn answers_are_cached_for_their_ttl() {
        let (server, count) = stub_with_ttl([192, 0, 2, 9].into(), Rcode::NOERROR, 1).await;
        let resolver = UpstreamResolver::new(vec![server]);
        let name: Name = "cached.example".parse().unwrap();
        let first = resolver.resolve(&name).await.unwrap();
        assert_eq!(queries(&count), 2, "A and AAAA asked");
        let again = resolver.clone().resolve(&name).await.unwrap();
        assert_eq!(again, first);
        assert_eq!(
            queries(&count),
            2,
            "answered from the cache (clones share it)"
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
        resolver.resolve(&name).await.unwrap();
        assert_eq!(queries(&count), 4, "asked again once the 1 s TTL ran out");
    }

    #[tokio::test]
    async fn concurrent_lookups_of_one_name_share_one_exchange() {
        let (server, count) = stub_with_ttl([192, 0, 2, 9].into(), Rcode::NOERROR, 60).await;
        let resolver = UpstreamResolver::new(vec![server]);
        let name: Name = "busy.example".parse().unwrap();
        let lookups = (0..20).map(|_| {
            let resolver = resolver.clone();
            let name = name.clone();
            tokio::spawn(async move { resolver.resolve(&name).await })
        });
        for lookup in futures_util::future::join_all(lookups).await {
            assert_eq!(
                lookup.unwrap().unwrap(),
                ["192.0.2.9".parse::<IpAddr>().unwrap()]
            );
        }
        assert_eq!(
            queries(&count),
            2,
            "one A and one AAAA query for twenty lookups"
        );
        assert_eq!(resolver.client.in_flight(), 0);
    }

    #[tokio::test]
    async fn waiters_ask_themselves_when_the_first_lookup_is_dropped() {
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let resolver = UpstreamResolver::new(vec![silent.local_addr().unwrap()])
            .with_timeout(Duration::from_millis(200));
        let name: Name = "slow.example".parse().unwrap();
        let first = {
            let (resolver, name) = (resolver.clone(), name.clone());
            tokio::spawn(async move { resolver.resolve(&name).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let second = {
            let (resolver, name) = (resolver.clone(), name.clone());
            tokio::spawn(async move { resolver.resolve(&name).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        first.abort();
        let err = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("the waiter is released when the first lookup is dropped")
            .unwrap()
            .unwrap_err();
        assert!(err.to_string().contains("did not answer within"), "{err}");
        assert_eq!(resolver.client.in_flight(), 0);
        assert_eq!(
            resolver.client.pending(),
            0,
            "the dropped lookup left no query behind"
        );
    }

    #[tokio::test]
    async fn ttl_zero_and_a_disabled_cache_ask_every_time() {
        let (server, count) = stub_with_ttl([192, 0, 2, 9].into(), Rcode::NOERROR, 0).await;
        let name: Name = "fresh.example".parse().unwrap();
        let resolver = UpstreamResolver::new(vec![server]);
        resolver.resolve(&name).await.unwrap();
        resolver.resolve(&name).await.unwrap();
        assert_eq!(queries(&count), 4, "TTL 0 is not cached");
        let (server, count) = stub_with_ttl([192, 0, 2, 9].into(), Rcode::NOERROR, 300).await;
        let resolver = UpstreamResolver::new(vec![server]).with_cache_entries(0);
        resolver.resolve(&name).await.unwrap();
        resolver.resolve(&name).await.unwrap();
        assert_eq!(queries(&count), 4, "no cache");
    }

    #[tokio::test]
    async fn asks_servers_in_order_and_skips_servfail() {
        let bad = stub([0, 0, 0, 0].into(), Rcode::SERVFAIL).await;
        let good = stub([192, 0, 2, 7].into(), Rcode::NOERROR).await;
        let resolver = UpstreamResolver::new(vec![bad, good]);
        let ips = resolver
            .resolve(&"Cloud.Example.".parse().unwrap())
            .await
            .unwrap();
        assert_eq!(ips, ["192.0.2.7".parse::<IpAddr>().unwrap()]);
    }

    #[tokio::test]
    async fn silent_server_times_out_with_a_clear_error() {
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let resolver = UpstreamResolver::new(vec![silent.local_addr().unwrap()])
            .with_timeout(Duration::from_millis(50));
        let err = resolver
            .resolve(&"x.example".parse().unwrap())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("did not answer within"), "{err}");
    }

    #[tokio::test]
    async fn nxdomain_is_no_address() {
        let nx = stub([0, 0, 0, 0].into(), Rcode::NXDOMAIN).await;
        let err = UpstreamResolver::new(vec![nx])
            .resolve(&"x.example".parse().unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NoAddress { .. }), "{err}");
    }
}
