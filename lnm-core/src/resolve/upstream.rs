//! A small stub resolver that asks explicit upstream DNS servers (`resolver.upstream`).

use std::hash::{BuildHasher, Hasher, RandomState};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use domain::base::iana::Rcode;
use domain::base::{Message, MessageBuilder, Rtype};
use domain::rdata::{A, Aaaa};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::Resolve;
use crate::{Error, Name};

/// The largest UDP answer we accept (we advertise no EDNS, but be lenient).
const MAX_UDP: usize = 4096;

/// Asks a list of DNS servers, in order, for the A and AAAA records of a name.
///
/// Each server gets `timeout` per attempt; a server that times out, fails or answers `SERVFAIL`/
/// `REFUSED` moves on to the next one. A truncated UDP answer is retried over TCP. `NXDOMAIN` or
/// an empty answer from a server is final. Query IDs and source ports are random.
#[derive(Debug, Clone)]
pub struct UpstreamResolver {
    servers: Vec<SocketAddr>,
    timeout: Duration,
}

impl UpstreamResolver {
    /// Asks `servers` in order with a 2 s timeout per attempt.
    pub fn new(servers: Vec<SocketAddr>) -> Self {
        UpstreamResolver {
            servers,
            timeout: Duration::from_secs(2),
        }
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

    async fn ask_server(&self, server: SocketAddr, name: &Name) -> Result<Vec<IpAddr>, Error> {
        let (a, aaaa) = tokio::join!(
            self.query(server, name, Rtype::A),
            self.query(server, name, Rtype::AAAA)
        );
        let mut ips = match (a, aaaa) {
            (Err(e), Err(_)) => return Err(e),
            (a, aaaa) => {
                let mut v = a.unwrap_or_default();
                v.extend(aaaa.unwrap_or_default());
                v
            }
        };
        ips.dedup();
        Ok(ips)
    }

    async fn query(
        &self,
        server: SocketAddr,
        name: &Name,
        rtype: Rtype,
    ) -> Result<Vec<IpAddr>, Error> {
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
) -> Result<Vec<IpAddr>, Error> {
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
    Ok(ips)
}

#[async_trait]
impl Resolve for UpstreamResolver {
    async fn resolve(&self, name: &Name) -> Result<Vec<IpAddr>, Error> {
        let mut last = Error::NoDestination {
            hop: "upstream resolver",
        };
        for &server in &self.servers {
            match self.ask_server(server, name).await {
                Ok(ips) if ips.is_empty() => return Err(Error::NoAddress { name: name.clone() }),
                Ok(ips) => return Ok(ips),
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

    /// A one-shot DNS server on loopback that answers A queries with `ip` (or with `rcode`).
    async fn stub(ip: std::net::Ipv4Addr, rcode: Rcode) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 512];
            loop {
                let (n, peer) = socket.recv_from(&mut buf).await.unwrap();
                let req = Message::from_octets(buf[..n].to_vec()).unwrap();
                let mut answer = MessageBuilder::new_vec().start_answer(&req, rcode).unwrap();
                let q = req.sole_question().unwrap();
                if q.qtype() == Rtype::A && rcode == Rcode::NOERROR {
                    answer.push((q.qname(), Class::IN, 60, A::new(ip))).unwrap();
                }
                socket.send_to(&answer.finish(), peer).await.unwrap();
            }
        });
        addr
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
