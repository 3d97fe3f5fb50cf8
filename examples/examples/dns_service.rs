//! The DNS rewrite resolver in **your** tower stack: lnm-dns's [`RewriteResolver`] under a
//! layer of yours, asked in process, then served over UDP and TCP by a [`DnsServer`].
//!
//! ```sh
//! cargo run -p lnm-examples --example dns_service
//! ```
//!
//! The stack is a `tower::ServiceBuilder` (through `lnm_dns::tower`, the version lnm-dns is
//! written for) whose `map_request` logs each query and whose `map_response` tallies the
//! answers by outcome, over a rewrite resolver that answers allowlisted names with this
//! level's gateway and refuses the others (a [`Refuser`] fallback; a
//! [`Forwarder`](lnm_dns::Forwarder) would ask upstream servers instead).
//!
//! Queries are built with [`Query::build`] and answers read with [`Response::rcode`] and
//! [`Response::answers`]: no DNS crate besides lnm-dns is needed. The example checks every
//! answer and the tally (exit 0) or says what failed.
#![allow(clippy::print_stdout)]

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lnm_dns::tower::{Service, ServiceBuilder, ServiceExt};
use lnm_dns::{
    DnsLimits, DnsRequest, DnsServer, Query, Rcode, Refuser, Response, RewriteConfig,
    RewriteResolver, Rtype, Transport,
};
use lnm_policy::Allowlist;
use tokio::net::UdpSocket;

/// What the layer saw: queries, and answers by outcome.
#[derive(Debug, Default)]
struct Tally {
    queries: AtomicUsize,
    with_addresses: AtomicUsize,
    empty: AtomicUsize,
    refused: AtomicUsize,
}

/// A host of level 2, asking in process.
const LEVEL2_HOST: &str = "10.2.0.7:53000";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let allowlist = Allowlist::builder()
        .external("management.azure.com")
        .and_then(|b| b.external("*.blob.core.windows.net"));
    let allowlist = match allowlist {
        Ok(builder) => builder
            .source_range("10.2.0.0/16".parse().expect("a range"))
            .source_range("127.0.0.0/8".parse().expect("a range"))
            .build(),
        Err(e) => return fail(&format!("allowlist: {e}")),
    };
    let answers = RewriteConfig::new(
        vec!["10.3.0.1".parse().expect("an address")],
        vec!["fd00::3:1".parse().expect("an address")],
    )
    .ttl(30);
    let resolver = RewriteResolver::new(allowlist.into(), answers, Refuser);

    // Your layer over the resolver: log each query, tally each answer.
    let tally = Arc::new(Tally::default());
    let (seen, answered) = (tally.clone(), tally.clone());
    let stack = ServiceBuilder::new()
        .map_request(move |request: DnsRequest| {
            seen.queries.fetch_add(1, Ordering::Relaxed);
            println!(
                "  query  {} {} from {} over {:?}",
                request.query.qname(),
                request.query.qtype(),
                request.source,
                request.transport
            );
            request
        })
        .map_response(move |response: Response| {
            let counter = match (response.rcode(), response.answers().is_empty()) {
                (Some(Rcode::NOERROR), false) => &answered.with_addresses,
                (Some(Rcode::NOERROR), true) => &answered.empty,
                _ => &answered.refused,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            response
        })
        .service(resolver);

    let mut failures = 0;
    let mut check = |what: &str, ok: bool, detail: String| {
        println!("[{}] {what}: {detail}", if ok { " ok " } else { "FAIL" });
        failures += usize::from(!ok);
    };
    let ip = |s: &str| -> IpAddr { s.parse().expect("an address") };

    // In process: a query built from a name, a response read as an rcode and addresses.
    let client: SocketAddr = LEVEL2_HOST.parse().expect("an address");
    for (name, qtype, rcode, addrs) in [
        (
            "management.azure.com",
            Rtype::A,
            Rcode::NOERROR,
            vec![ip("10.3.0.1")],
        ),
        (
            "acct.blob.core.windows.net",
            Rtype::AAAA,
            Rcode::NOERROR,
            vec![ip("fd00::3:1")],
        ),
        // HTTPS records could point clients around the proxy: an empty NOERROR.
        (
            "acct.blob.core.windows.net",
            Rtype::HTTPS,
            Rcode::NOERROR,
            vec![],
        ),
        // Not allowlisted, no upstream: REFUSED.
        ("evil.example", Rtype::A, Rcode::REFUSED, vec![]),
    ] {
        let answer = ask(&stack, name, qtype, client).await;
        let got = answer
            .as_ref()
            .map(|response| (response.rcode(), response.answers()));
        check(
            &format!("{name} {qtype} in process"),
            matches!(&got, Ok((Some(r), a)) if *r == rcode && *a == addrs),
            format!("{got:?}"),
        );
    }
    let invalid = Query::build("two..dots.example", Rtype::A);
    check(
        "an invalid name is refused by Query::build",
        invalid.is_err(),
        match invalid {
            Ok(query) => format!("built {query:?}"),
            Err(e) => e.to_string(),
        },
    );

    // The same stack served over UDP and TCP on loopback, asked once over UDP.
    let (udp, tcp) = match lnm_dns::bind("127.0.0.1:0".parse().expect("an address")).await {
        Ok(sockets) => sockets,
        Err(e) => return fail(&format!("bind: {e}")),
    };
    let addr = match udp.local_addr() {
        Ok(addr) => addr,
        Err(e) => return fail(&format!("bound address: {e}")),
    };
    let server = DnsServer::new(stack.clone(), DnsLimits::default());
    let serving = server.clone();
    tokio::spawn(async move { serving.serve(udp, tcp).await });
    println!("DNS server on {addr} (UDP and TCP)");
    let over_udp = ask_udp(addr, "management.azure.com").await;
    check(
        "management.azure.com A over UDP",
        matches!(&over_udp, Ok(addrs) if *addrs == [ip("10.3.0.1")]),
        format!("{over_udp:?}"),
    );
    server.shutdown();

    let counts = [
        &tally.queries,
        &tally.with_addresses,
        &tally.empty,
        &tally.refused,
    ]
    .map(|c| c.load(Ordering::Relaxed));
    check(
        "the layer saw every query and answer",
        counts == [5, 3, 1, 1],
        format!("queries, with addresses, empty, refused: {counts:?}"),
    );
    if failures == 0 {
        println!("every expectation held");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Asks `service` in process, as `client` would over UDP.
async fn ask<S>(
    service: &S,
    name: &str,
    qtype: Rtype,
    client: SocketAddr,
) -> Result<Response, String>
where
    S: Service<DnsRequest, Response = Response, Error = Infallible> + Clone,
{
    let query = Query::build(name, qtype).map_err(|e| e.to_string())?;
    let request = DnsRequest {
        query,
        source: client,
        transport: Transport::Udp,
    };
    service
        .clone()
        .oneshot(request)
        .await
        .map_err(|never| match never {})
}

/// Asks the DNS server at `server` for the A records of `name` over UDP: the addresses, once
/// the answer carries the query's ID and NOERROR.
async fn ask_udp(server: SocketAddr, name: &str) -> Result<Vec<IpAddr>, String> {
    let query = Query::build(name, Rtype::A).map_err(|e| e.to_string())?;
    let socket = UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("client socket: {e}"))?;
    socket
        .send_to(query.as_bytes(), server)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
        .await
        .map_err(|_| "no answer within 5 s".to_owned())?
        .map_err(|e| format!("receive: {e}"))?;
    buf.truncate(n);
    let response = Response::new(buf);
    if response.id() != Some(query.id()) {
        return Err(format!(
            "answer under ID {:?}, not {}",
            response.id(),
            query.id()
        ));
    }
    match response.rcode() {
        Some(Rcode::NOERROR) => Ok(response.answers()),
        rcode => Err(format!("answered {rcode:?}")),
    }
}

fn fail(why: &str) -> ExitCode {
    println!("[FAIL] {why}");
    ExitCode::FAILURE
}
