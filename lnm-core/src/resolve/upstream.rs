//! A small stub resolver that asks explicit upstream DNS servers (`resolver.upstream`).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use domain::base::iana::Rcode;
use domain::base::{Message, MessageBuilder, Rtype};
use domain::rdata::{A, Aaaa};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::watch;

use super::Resolve;
use crate::{Error, Name};

/// The largest UDP answer we accept (we advertise no EDNS, but be lenient).
const MAX_UDP: usize = 4096;

/// Names whose addresses are kept, by default.
const DEFAULT_CACHE_ENTRIES: usize = 1024;

/// The longest an answer is kept, whatever its TTL.
const MAX_CACHE_TTL: Duration = Duration::from_secs(3600);

/// Asks a list of DNS servers, in order, for the A and AAAA records of a name.
///
/// Each server gets `timeout` per attempt; a server that times out, fails or answers `SERVFAIL`/
/// `REFUSED` moves on to the next one. A truncated UDP answer is retried over TCP. `NXDOMAIN` or
/// an empty answer from a server is final. Query IDs and source ports are random.
///
/// Addresses are cached for the smallest TTL of their records (at most an hour; TTL 0 is not
/// cached), so a top-level gateway does not ask for every connection. Failures and empty
/// answers are not cached. Concurrent lookups of one name share one exchange (the others wait
/// for it, then read the cache). Clones share the cache.
#[derive(Debug, Clone)]
pub struct UpstreamResolver {
    servers: Vec<SocketAddr>,
    timeout: Duration,
    cache: Arc<Mutex<AddressCache>>,
    in_flight: Arc<Mutex<HashMap<Name, watch::Receiver<()>>>>,
}

/// Ends a lookup's entry in the in-flight map, whether the lookup finished or was dropped;
/// dropping the sender wakes the lookups waiting for it.
struct Leading<'a> {
    in_flight: &'a Mutex<HashMap<Name, watch::Receiver<()>>>,
    name: &'a Name,
    _done: watch::Sender<()>,
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(self.name);
    }
}

/// Addresses by name until their TTL runs out, bounded in entries.
#[derive(Debug)]
struct AddressCache {
    capacity: usize,
    entries: HashMap<Name, (Vec<IpAddr>, Instant)>,
}

impl AddressCache {
    fn get(&mut self, name: &Name, now: Instant) -> Option<Vec<IpAddr>> {
        match self.entries.get(name) {
            Some((ips, expires)) if *expires > now => Some(ips.clone()),
            Some(_) => {
                self.entries.remove(name);
                None
            }
            None => None,
        }
    }

    fn insert(&mut self, name: &Name, ips: &[IpAddr], ttl: Duration, now: Instant) {
        if self.capacity == 0 || ttl.is_zero() || ips.is_empty() {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(name) {
            self.entries.retain(|_, (_, expires)| *expires > now);
            if self.entries.len() >= self.capacity {
                // Still full of live answers: the one that expires first goes.
                let soonest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, expires))| *expires)
                    .map(|(name, _)| name.clone());
                if let Some(soonest) = soonest {
                    self.entries.remove(&soonest);
                }
            }
        }
        let ttl = ttl.min(MAX_CACHE_TTL);
        self.entries.insert(name.clone(), (ips.to_vec(), now + ttl));
    }
}

impl UpstreamResolver {
    /// Asks `servers` in order with a 2 s timeout per attempt, caching up to 1,024 names.
    pub fn new(servers: Vec<SocketAddr>) -> Self {
        UpstreamResolver {
            servers,
            timeout: Duration::from_secs(2),
            cache: Arc::new(Mutex::new(AddressCache {
                capacity: DEFAULT_CACHE_ENTRIES,
                entries: HashMap::new(),
            })),
            in_flight: Arc::default(),
        }
    }

    fn cached(&self, name: &Name) -> Option<Vec<IpAddr>> {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name, Instant::now())
    }

    /// Sets how many names the cache keeps (0: no cache).
    pub fn with_cache_entries(self, entries: usize) -> Self {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .capacity = entries;
        self
    }

    /// Sets the timeout of one attempt at one server.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The configured servers.
    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// The addresses of `name` from `server`, and how long they may be kept.
    async fn ask_server(
        &self,
        server: SocketAddr,
        name: &Name,
    ) -> Result<(Vec<IpAddr>, Duration), Error> {
        let (a, aaaa) = tokio::join!(
            self.query(server, name, Rtype::A),
            self.query(server, name, Rtype::AAAA)
        );
        let (mut ips, ttl) = match (a, aaaa) {
            (Err(e), Err(_)) => return Err(e),
            (a, aaaa) => {
                let (mut v, ttl_a) = a.unwrap_or_default();
                let (v6, ttl_aaaa) = aaaa.unwrap_or_default();
                v.extend(v6);
                (v, ttl_a.into_iter().chain(ttl_aaaa).min())
            }
        };
        ips.dedup();
        let ttl = Duration::from_secs(ttl.map_or(0, u64::from));
        Ok((ips, ttl))
    }

    async fn query(
        &self,
        server: SocketAddr,
        name: &Name,
        rtype: Rtype,
    ) -> Result<(Vec<IpAddr>, Option<u32>), Error> {
        let io_err = |source: io::Error| Error::Resolve {
            name: name.clone(),
            source,
        };
        let id = random_id();
        let query = build_query(name, rtype, id).map_err(io_err)?;
        let answer = tokio::time::timeout(self.timeout, async {
            let answer = udp_exchange(server, &query).await?;
            if Message::from_octets(answer.as_slice()).is_ok_and(|m| m.header().tc()) {
                return tcp_exchange(server, &query).await;
            }
            Ok(answer)
        })
        .await
        .map_err(|_| {
            io_err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "DNS server {server} did not answer within {:?}",
                    self.timeout
                ),
            ))
        })?
        .map_err(io_err)?;
        parse_answer(&answer, id, name, server, rtype)
    }
}

fn random_id() -> u16 {
    // RandomState is seeded from the OS and advances per instance: no extra dependency needed.
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u8(0);
    hasher.finish() as u16
}

fn build_query(name: &Name, rtype: Rtype, id: u16) -> io::Result<Vec<u8>> {
    let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
    let qname = domain::base::Name::<Vec<u8>>::from_str(name.as_str())
        .map_err(|e| invalid(e.to_string()))?;
    let mut msg = MessageBuilder::new_vec();
    msg.header_mut().set_id(id);
    msg.header_mut().set_rd(true);
    let mut question = msg.question();
    question
        .push((qname, rtype))
        .map_err(|e| invalid(e.to_string()))?;
    Ok(question.finish())
}

async fn udp_exchange(server: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
    let bind: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(server).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; MAX_UDP];
    loop {
        let n = socket.recv(&mut buf).await?;
        // Ignore stray datagrams that do not carry our ID; the timeout bounds the wait.
        if n >= 2 && buf[..2] == query[..2] {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

/// One DNS exchange over TCP (RFC 1035 §4.2.2 two-byte length framing): sends `query`, returns
/// the answer's bytes. Used for the retry after a truncated UDP answer.
pub async fn tcp_exchange(server: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(server).await?;
    let len = u16::try_from(query.len()).map_err(|_| io::Error::other("query too long"))?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let len = stream.read_u16().await? as usize;
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

fn parse_answer(
    answer: &[u8],
    id: u16,
    name: &Name,
    server: SocketAddr,
    rtype: Rtype,
) -> Result<(Vec<IpAddr>, Option<u32>), Error> {
    let malformed = |what: &str| Error::Resolve {
        name: name.clone(),
        source: io::Error::new(
            io::ErrorKind::InvalidData,
            format!("DNS server {server}: {what}"),
        ),
    };
    let msg = Message::from_octets(answer).map_err(|_| malformed("answer too short"))?;
    let header = msg.header();
    if header.id() != id || !header.qr() {
        return Err(malformed("answer does not match the query"));
    }
    match header.rcode() {
        Rcode::NOERROR | Rcode::NXDOMAIN => {}
        rcode => {
            return Err(Error::DnsRcode {
                server,
                name: name.clone(),
                rcode: rcode.to_string(),
            });
        }
    }
    let section = msg
        .answer()
        .map_err(|_| malformed("malformed answer section"))?;
    let mut ips = Vec::new();
    // The smallest TTL of the records used (CNAMEs on the way included).
    let mut ttl: Option<u32> = None;
    let mut seen = |t: u32| ttl = Some(ttl.map_or(t, |m| m.min(t)));
    for record in section {
        let record = record.map_err(|_| malformed("malformed record"))?;
        if matches!(record.rtype(), Rtype::A | Rtype::AAAA | Rtype::CNAME) {
            seen(record.ttl().as_secs());
        }
    }
    if rtype == Rtype::A {
        for record in section.limit_to::<A>() {
            let record = record.map_err(|_| malformed("malformed A record"))?;
            ips.push(IpAddr::V4(record.data().addr()));
        }
    } else {
        for record in section.limit_to::<Aaaa>() {
            let record = record.map_err(|_| malformed("malformed AAAA record"))?;
            ips.push(IpAddr::V6(record.data().addr()));
        }
    }
    Ok((ips, ttl))
}

#[async_trait]
impl Resolve for UpstreamResolver {
    async fn resolve(&self, name: &Name) -> Result<Vec<IpAddr>, Error> {
        if let Some(ips) = self.cached(name) {
            return Ok(ips);
        }
        // One exchange per name at a time: wait for a lookup already under way, then take its
        // answer from the cache (or ask ourselves if it failed or was not cacheable).
        let turn = {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            match in_flight.get(name) {
                Some(done) => Turn::Wait(done.clone()),
                None => {
                    let (tx, rx) = watch::channel(());
                    in_flight.insert(name.clone(), rx);
                    Turn::Lead(tx)
                }
            }
        };
        match turn {
            Turn::Lead(done) => {
                let _leading = Leading {
                    in_flight: &self.in_flight,
                    name,
                    _done: done,
                };
                self.ask_servers(name).await
            }
            Turn::Wait(mut done) => {
                // The sender is dropped when that lookup ends: `changed` then returns.
                let _ = done.changed().await;
                match self.cached(name) {
                    Some(ips) => Ok(ips),
                    None => self.ask_servers(name).await,
                }
            }
        }
    }
}

/// Whether a lookup asks the servers or waits for one already asking.
enum Turn {
    Lead(watch::Sender<()>),
    Wait(watch::Receiver<()>),
}

impl UpstreamResolver {
    /// Asks the servers in order (no cache, no sharing) and caches what they say.
    async fn ask_servers(&self, name: &Name) -> Result<Vec<IpAddr>, Error> {
        let mut last = Error::NoDestination {
            hop: "upstream resolver",
        };
        for &server in &self.servers {
            match self.ask_server(server, name).await {
                Ok((ips, _)) if ips.is_empty() => {
                    return Err(Error::NoAddress { name: name.clone() });
                }
                Ok((ips, ttl)) => {
                    self.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(
                        name,
                        &ips,
                        ttl,
                        Instant::now(),
                    );
                    return Ok(ips);
                }
                Err(e) => {
                    tracing::debug!(%server, %name, error = %e, "DNS upstream failed, trying the next");
                    last = e;
                }
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::base::iana::Class;

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
        assert!(resolver.in_flight.lock().unwrap().is_empty());
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
        assert!(resolver.in_flight.lock().unwrap().is_empty());
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

    #[test]
    fn a_full_cache_drops_expired_then_soonest_entries() {
        let mut cache = AddressCache {
            capacity: 2,
            entries: HashMap::new(),
        };
        let now = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let name = |s: &str| -> Name { s.parse().unwrap() };
        cache.insert(&name("a.example"), &[ip], Duration::from_secs(10), now);
        cache.insert(&name("b.example"), &[ip], Duration::from_secs(100), now);
        cache.insert(&name("c.example"), &[ip], Duration::from_secs(100), now);
        assert_eq!(cache.entries.len(), 2);
        assert!(
            cache.get(&name("a.example"), now).is_none(),
            "soonest to expire went"
        );
        assert!(cache.get(&name("b.example"), now).is_some());
        let later = now + Duration::from_secs(200);
        assert!(cache.get(&name("b.example"), later).is_none(), "expired");
        cache.insert(&name("d.example"), &[ip], Duration::from_secs(100_000), now);
        let (_, expires) = cache.entries[&name("d.example")];
        assert_eq!(expires, now + MAX_CACHE_TTL, "TTLs are capped");
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
