//! Criterion benchmarks of DNS request → answer without sockets: the pure path (parse, rewrite
//! decision, answer, fit to UDP) and the same through the `RewriteResolver` tower service, for
//! an allowlisted name (answered) and an unlisted one (refused without an upstream).

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::str::FromStr;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use domain::base::iana::Rcode;
use domain::base::{MessageBuilder, Name, Rtype};
use futures_util::FutureExt;
use lnm_benches::synthetic_allowlist;
use lnm_dns::{
    Action, DnsRequest, Query, Refuser, RewriteConfig, RewriteResolver, Transport, decide,
};
use tower::Service;

fn query(name: &str) -> Bytes {
    let mut msg = MessageBuilder::new_vec();
    msg.header_mut().set_id(0x1234);
    msg.header_mut().set_rd(true);
    let mut question = msg.question();
    let name = Name::<Vec<u8>>::from_str(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    question
        .push((name, Rtype::A))
        .unwrap_or_else(|e| panic!("question: {e}"));
    let mut additional = question.additional();
    additional
        .opt(|opt| {
            opt.set_udp_payload_size(1232);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("OPT: {e}"));
    Bytes::from(additional.finish())
}

fn dns(c: &mut Criterion) {
    let allowlist = synthetic_allowlist(10_000);
    let config = RewriteConfig::new(
        vec!["10.3.0.1".parse().unwrap_or([10, 3, 0, 1].into())],
        vec![],
    );
    let client: SocketAddr = "10.2.0.7:53000"
        .parse()
        .unwrap_or(([10, 2, 0, 7], 53000).into());
    let mut resolver = RewriteResolver::new(allowlist.clone().into(), config.clone(), Refuser);
    let mut group = c.benchmark_group("dns");
    group.throughput(Throughput::Elements(1));
    for (what, name) in [
        ("allowlisted", "a.tenant777.cloud10.net"),
        ("unlisted", "h4711.example.org"),
    ] {
        let wire = query(name);
        group.bench_function(format!("{what}/parse_decide_answer"), |b| {
            b.iter(|| {
                let Ok(query) = Query::parse(black_box(wire.clone())) else {
                    return 0;
                };
                let response = match decide(&allowlist, &config, &query, client.ip()) {
                    Action::Answer(addrs) => query.answer(Rcode::NOERROR, 60, &addrs),
                    Action::Forward | Action::Refuse(_) => query.empty(Rcode::REFUSED),
                };
                query.fit_udp(response).as_bytes().len()
            })
        });
        group.bench_function(format!("{what}/rewrite_resolver_service"), |b| {
            b.iter(|| {
                let Ok(query) = Query::parse(black_box(wire.clone())) else {
                    return 0;
                };
                let request = DnsRequest {
                    query,
                    source: client,
                    transport: Transport::Udp,
                };
                match resolver.call(request).now_or_never() {
                    Some(Ok(response)) => response.as_bytes().len(),
                    _ => 0,
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, dns);
criterion_main!(benches);
