//! The DNS rewrite resolver served over UDP and TCP on loopback: rewritten and forwarded
//! answers, the cache, truncation and TCP retry, pipelining, garbage, a dead upstream, and
//! interoperability with `dig` (installed by `scripts/install-test-deps.sh`).

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use domain::base::iana::{Class, Rcode};
use domain::base::{Message, MessageBuilder, Name, Rtype};
use lnm_dns::{
    DnsLimits, DnsServer, Forwarder, ForwarderConfig, Refuser, RewriteConfig, RewriteResolver,
};
use lnm_policy::{Allowlist, AllowlistHandle};
use lnm_tests::init_logging;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// A stub upstream: A → 192.0.2.1 (TTL 300); `big.example` has 100 A records (truncated over
/// UDP, complete over TCP); `nx.example` is NXDOMAIN. Counts the UDP queries it gets.
async fn upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let (udp, tcp) = lnm_dns::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = udp.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, peer) = udp.recv_from(&mut buf).await.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
            let answer = stub_answer(&buf[..n], true);
            udp.send_to(&answer, peer).await.unwrap();
        }
    });
    tokio::spawn(async move {
        loop {
            let (mut s, _) = tcp.accept().await.unwrap();
            tokio::spawn(async move {
                let len = s.read_u16().await.unwrap() as usize;
                let mut q = vec![0u8; len];
                s.read_exact(&mut q).await.unwrap();
                let answer = stub_answer(&q, false);
                s.write_all(&(answer.len() as u16).to_be_bytes())
                    .await
                    .unwrap();
                s.write_all(&answer).await.unwrap();
            });
        }
    });
    (addr, count)
}

fn stub_answer(query: &[u8], udp: bool) -> Vec<u8> {
    let req = Message::from_octets(query.to_vec()).unwrap();
    let q = req.sole_question().unwrap();
    let name = q.qname().to_string();
    let rcode = if name == "nx.example" {
        Rcode::NXDOMAIN
    } else {
        Rcode::NOERROR
    };
    let mut ans = MessageBuilder::new_vec().start_answer(&req, rcode).unwrap();
    if q.qtype() == Rtype::A && rcode == Rcode::NOERROR {
        let count = if name == "big.example" { 100 } else { 1 };
        for i in 0..count {
            ans.push((
                q.qname(),
                Class::IN,
                300,
                domain::rdata::A::new([192, 0, 2, 1 + i as u8].into()),
            ))
            .unwrap();
        }
    }
    let mut bytes = ans.finish();
    if udp && bytes.len() > 512 {
        let mut tc = MessageBuilder::new_vec().start_answer(&req, rcode).unwrap();
        tc.header_mut().set_tc(true);
        bytes = tc.finish();
    }
    bytes
}

fn allowlist(source: &str) -> AllowlistHandle {
    Allowlist::builder()
        .external("management.azure.com")
        .unwrap()
        .external("*.blob.core.windows.net")
        .unwrap()
        .internal("broker.l3.local", 8883)
        .unwrap()
        .source_range(source.parse().unwrap())
        .build()
        .into()
}

fn rewrite() -> RewriteConfig {
    RewriteConfig::new(vec!["10.3.0.1".parse().unwrap()], vec![]).ttl(30)
}

async fn serve<S>(service: S) -> SocketAddr
where
    S: tower::Service<lnm_dns::DnsRequest, Response = lnm_dns::Response>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Error: Into<tower::BoxError> + Send,
    S::Future: Send + 'static,
{
    init_logging();
    let (udp, tcp) = lnm_dns::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = udp.local_addr().unwrap();
    let server = DnsServer::new(service, DnsLimits::default());
    tokio::spawn(async move { server.serve(udp, tcp).await });
    addr
}

async fn forwarding_server(upstreams: Vec<SocketAddr>, timeout: Duration) -> SocketAddr {
    let forwarder = Forwarder::new(ForwarderConfig::new(upstreams).timeout(timeout))
        .await
        .unwrap();
    serve(RewriteResolver::new(
        allowlist("127.0.0.0/8"),
        rewrite(),
        forwarder,
    ))
    .await
}

fn query(name: &str, qtype: Rtype, id: u16) -> Vec<u8> {
    let mut msg = MessageBuilder::new_vec();
    msg.header_mut().set_id(id);
    msg.header_mut().set_rd(true);
    let mut q = msg.question();
    q.push((Name::<Vec<u8>>::from_str(name).unwrap(), qtype))
        .unwrap();
    q.finish()
}

async fn udp_ask(server: SocketAddr, bytes: &[u8]) -> Message<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(bytes, server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
        .await
        .expect("answer within 5 s")
        .unwrap();
    buf.truncate(n);
    Message::from_octets(buf).unwrap()
}

fn addrs(msg: &Message<Vec<u8>>) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for r in msg.answer().unwrap().limit_to::<domain::rdata::A>() {
        out.push(r.unwrap().data().addr().into());
    }
    for r in msg.answer().unwrap().limit_to::<domain::rdata::Aaaa>() {
        out.push(r.unwrap().data().addr().into());
    }
    out
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn rewritten_and_forwarded_answers_over_udp() {
    let (up, count) = upstream().await;
    let server = forwarding_server(vec![up], Duration::from_secs(2)).await;

    let a = udp_ask(server, &query("Management.Azure.com", Rtype::A, 1)).await;
    assert_eq!((a.header().id(), a.header().rcode()), (1, Rcode::NOERROR));
    assert_eq!(addrs(&a), [ip("10.3.0.1")]);
    let aaaa = udp_ask(server, &query("management.azure.com", Rtype::AAAA, 2)).await;
    assert_eq!(
        (aaaa.header().rcode(), aaaa.header_counts().ancount()),
        (Rcode::NOERROR, 0)
    );
    let https = udp_ask(
        server,
        &query("acct.blob.core.windows.net", Rtype::HTTPS, 3),
    )
    .await;
    assert_eq!(
        (https.header().rcode(), https.header_counts().ancount()),
        (Rcode::NOERROR, 0)
    );
    let internal = udp_ask(server, &query("broker.l3.local", Rtype::A, 4)).await;
    assert_eq!(addrs(&internal), [ip("10.3.0.1")]);
    assert_eq!(
        count.load(Ordering::SeqCst),
        0,
        "allowlisted names never go upstream"
    );

    let fwd = udp_ask(server, &query("blob.core.windows.net", Rtype::A, 5)).await;
    assert_eq!((fwd.header().id(), addrs(&fwd)), (5, vec![ip("192.0.2.1")]));
    let nx = udp_ask(server, &query("nx.example", Rtype::A, 6)).await;
    assert_eq!(nx.header().rcode(), Rcode::NXDOMAIN);
    assert_eq!(count.load(Ordering::SeqCst), 2);

    // Cached: asked again (different ID and case), upstream not asked.
    let again = udp_ask(server, &query("BLOB.core.windows.net", Rtype::A, 7)).await;
    assert_eq!(
        (again.header().id(), addrs(&again)),
        (7, vec![ip("192.0.2.1")])
    );
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn truncated_over_udp_complete_over_tcp_with_pipelining() {
    let (up, _) = upstream().await;
    let server = forwarding_server(vec![up], Duration::from_secs(2)).await;
    // The forwarder retries upstream over TCP and gets 100 records; our UDP client gets TC.
    let udp = udp_ask(server, &query("big.example", Rtype::A, 9)).await;
    assert!(udp.header().tc(), "more than 512 bytes: truncated");
    assert_eq!(udp.header_counts().ancount(), 0);

    let mut tcp = TcpStream::connect(server).await.unwrap();
    let mut out = Vec::new();
    for (i, name) in ["big.example", "management.azure.com", "nx.example"]
        .iter()
        .enumerate()
    {
        let q = query(name, Rtype::A, 100 + i as u16);
        out.extend_from_slice(&(q.len() as u16).to_be_bytes());
        out.extend_from_slice(&q);
    }
    tcp.write_all(&out).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let len = tcp.read_u16().await.unwrap() as usize;
        let mut buf = vec![0u8; len];
        tcp.read_exact(&mut buf).await.unwrap();
        let msg = Message::from_octets(buf).unwrap();
        seen.push((
            msg.header().id(),
            msg.header().rcode(),
            msg.header_counts().ancount(),
        ));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            (100, Rcode::NOERROR, 100),
            (101, Rcode::NOERROR, 1),
            (102, Rcode::NXDOMAIN, 0)
        ]
    );
}

#[tokio::test]
async fn garbage_then_a_valid_query() {
    let server = serve(RewriteResolver::new(
        allowlist("127.0.0.0/8"),
        rewrite(),
        Refuser,
    ))
    .await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for junk in [
        &b""[..],
        b"\x00",
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        &[0u8; 3000],
    ] {
        socket.send_to(junk, server).await.unwrap();
    }
    // A header announcing a question that is not there: FORMERR, same ID.
    let formerr = udp_ask(
        server,
        b"\x42\x42\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example",
    )
    .await;
    assert_eq!(
        (formerr.header().id(), formerr.header().rcode()),
        (0x4242, Rcode::FORMERR)
    );
    // TCP garbage: a frame that is not DNS, then a real query on a new connection.
    let mut tcp = TcpStream::connect(server).await.unwrap();
    tcp.write_all(b"\x00\x05hello").await.unwrap();
    drop(tcp);
    let ok = udp_ask(server, &query("management.azure.com", Rtype::A, 77)).await;
    assert_eq!(addrs(&ok), [ip("10.3.0.1")]);
    // Not allowlisted, no upstream: REFUSED.
    let refused = udp_ask(server, &query("evil.example.com", Rtype::A, 78)).await;
    assert_eq!(refused.header().rcode(), Rcode::REFUSED);
}

#[tokio::test]
async fn sources_outside_the_range_are_refused() {
    let server = serve(RewriteResolver::new(
        allowlist("10.2.0.0/16"),
        rewrite(),
        Refuser,
    ))
    .await;
    let refused = udp_ask(server, &query("management.azure.com", Rtype::A, 1)).await;
    assert_eq!(refused.header().rcode(), Rcode::REFUSED);
}

#[tokio::test]
async fn dead_upstreams_give_servfail_within_the_timeout_and_the_next_one_is_used() {
    let dead = UdpSocket::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let server = forwarding_server(vec![dead], Duration::from_millis(300)).await;
    let started = Instant::now();
    let fail = udp_ask(server, &query("evil.example.com", Rtype::A, 1)).await;
    assert_eq!(fail.header().rcode(), Rcode::SERVFAIL);
    assert!(started.elapsed() < Duration::from_secs(2));

    let (up, _) = upstream().await;
    let server = forwarding_server(vec![dead, up], Duration::from_millis(300)).await;
    let ok = udp_ask(server, &query("evil.example.com", Rtype::A, 2)).await;
    assert_eq!(addrs(&ok), [ip("192.0.2.1")]);
}

async fn dig(server: SocketAddr, args: &[&str]) -> String {
    let out = tokio::process::Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+time=3", "+tries=1"])
        .args(args)
        .output()
        .await
        .expect("dig is installed (scripts/install-test-deps.sh)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn dig_interop() {
    lnm_tests::require_tool("dig", "bind9-dnsutils", "dig_interop");
    let (up, _) = upstream().await;
    let server = forwarding_server(vec![up], Duration::from_secs(2)).await;
    assert_eq!(
        dig(server, &["management.azure.com", "A", "+short"])
            .await
            .trim(),
        "10.3.0.1"
    );
    assert_eq!(
        dig(server, &["management.azure.com", "A", "+short", "+tcp"])
            .await
            .trim(),
        "10.3.0.1"
    );
    assert_eq!(
        dig(
            server,
            &["x.blob.core.windows.net", "A", "+short", "+noedns"]
        )
        .await
        .trim(),
        "10.3.0.1"
    );
    assert_eq!(
        dig(server, &["evil.example.com", "A", "+short"])
            .await
            .trim(),
        "192.0.2.1"
    );
    let aaaa = dig(server, &["management.azure.com", "AAAA"]).await;
    assert!(
        aaaa.contains("status: NOERROR") && aaaa.contains("ANSWER: 0"),
        "{aaaa}"
    );
    let big = dig(server, &["big.example", "A", "+ignore", "+noedns"]).await;
    assert!(big.contains(" tc") || big.contains("tc "), "{big}");
    let big_tcp = dig(server, &["big.example", "A", "+short", "+tcp"]).await;
    assert_eq!(big_tcp.lines().count(), 100);
}

/// Many queries waiting on the server socket at once are taken in batches (recvmmsg/sendmmsg
/// on Linux): rewritten, forwarded, cached, malformed and oversized queries mixed in one burst
/// from several clients all get their own answer, under their own ID.
#[tokio::test]
async fn a_burst_of_mixed_queries_gets_every_answer() {
    let (up, _) = upstream().await;
    let server = forwarding_server(vec![up], Duration::from_secs(2)).await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    }
    // Oversized: a valid header followed by 5,000 bytes (more than any query needs).
    let mut oversized = query("management.azure.com", Rtype::A, 0);
    oversized.resize(5000, 0);
    let mut expected = Vec::new();
    for round in 0..50u16 {
        for (c, socket) in clients.iter().enumerate() {
            let id = round * 4 + c as u16 + 1;
            let (bytes, want) = match id % 5 {
                0 => (query("management.azure.com", Rtype::A, id), Rcode::NOERROR),
                1 => (
                    query(&format!("h{id}.example.org"), Rtype::A, id),
                    Rcode::NOERROR,
                ),
                2 => (query("nx.example", Rtype::A, id), Rcode::NXDOMAIN),
                3 => {
                    let mut b = b"\x00\x00\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07ex".to_vec();
                    b[..2].copy_from_slice(&id.to_be_bytes());
                    (b, Rcode::FORMERR)
                }
                _ => {
                    let mut b = oversized.clone();
                    b[..2].copy_from_slice(&id.to_be_bytes());
                    (b, Rcode::FORMERR)
                }
            };
            socket.send_to(&bytes, server).await.unwrap();
            expected.push((c, id, want));
        }
        // Let the server take what is queued (a few datagrams per batch) before the socket's
        // receive buffer overflows and the kernel drops datagrams, as UDP may.
        tokio::task::yield_now().await;
    }
    let mut got = std::collections::HashMap::new();
    let mut buf = vec![0u8; 65535];
    for (c, socket) in clients.iter().enumerate() {
        for _ in 0..50 {
            let Ok(n) = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf)).await
            else {
                break;
            };
            let msg = Message::from_octets(buf[..n.unwrap()].to_vec()).unwrap();
            got.insert((c, msg.header().id()), msg);
        }
    }
    let missing: Vec<_> = expected
        .iter()
        .filter(|(c, id, _)| !got.contains_key(&(*c, *id)))
        .collect();
    assert!(missing.is_empty(), "unanswered: {missing:?}");
    for (c, id, want) in expected {
        let msg = &got[&(c, id)];
        assert_eq!(msg.header().rcode(), want, "query {id} of client {c}");
        if id % 5 == 0 {
            assert_eq!(addrs(msg), [ip("10.3.0.1")]);
        }
        if id % 5 == 1 {
            assert_eq!(addrs(msg), [ip("192.0.2.1")]);
        }
    }
}
