//! Criterion benchmarks of the sniffers on real first flights: the TLS ClientHellos of
//! Chromium 156 (GREASE, X25519MLKEM768 share, 1.8 KB), curl and openssl s_client, whole and
//! split into 100-byte segments, and a browser-like HTTP/1.1 request head.

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lnm_proxy::sniff::{DEFAULT_MAX_CLIENT_HELLO, HttpSniffer, MAX_HTTP_HEAD, Sniff, TlsSniffer};

const CHROMIUM: &[u8] = include_bytes!("../../lnm-proxy/testdata/chromium-156.bin");
const CURL: &[u8] = include_bytes!("../../lnm-proxy/testdata/curl.bin");
const OPENSSL: &[u8] = include_bytes!("../../lnm-proxy/testdata/openssl-s_client.bin");

const HTTP: &[u8] = b"GET /subscriptions?api-version=2022-12-01 HTTP/1.1\r\n\
Host: management.azure.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)\r\n\
Accept: application/json\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Authorization: Bearer eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.e30.c2lnbmF0dXJl\r\n\
Connection: keep-alive\r\n\r\n";

/// Feeds `bytes` as a proxy sees them arrive: growing prefixes, `segment` bytes more each time.
fn feed_segments(bytes: &[u8], segment: usize) -> bool {
    let mut sniffer = TlsSniffer::new(DEFAULT_MAX_CLIENT_HELLO);
    let mut end = 0;
    while end < bytes.len() {
        end = (end + segment).min(bytes.len());
        match sniffer.feed(&bytes[..end]) {
            Sniff::NeedMore => {}
            Sniff::Done(hello) => return hello.server_name.is_some(),
            Sniff::Invalid(_) => return false,
        }
    }
    false
}

fn tls(c: &mut Criterion) {
    let mut group = c.benchmark_group("tls_sniff");
    for (what, bytes) in [("chromium", CHROMIUM), ("curl", CURL), ("openssl", OPENSSL)] {
        assert!(
            feed_segments(bytes, bytes.len()),
            "{what} capture must sniff"
        );
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("{what}/whole"), |b| {
            b.iter(
                || match TlsSniffer::new(DEFAULT_MAX_CLIENT_HELLO).feed(black_box(bytes)) {
                    Sniff::Done(hello) => hello.server_name.map(|n| n.len()),
                    _ => None,
                },
            )
        });
        group.bench_function(format!("{what}/100_byte_segments"), |b| {
            b.iter(|| feed_segments(black_box(bytes), 100))
        });
    }
    group.finish();
}

fn http(c: &mut Criterion) {
    let mut group = c.benchmark_group("http_sniff");
    group.throughput(Throughput::Elements(1));
    group.bench_function("browser_get/whole", |b| {
        b.iter(
            || match HttpSniffer::new(MAX_HTTP_HEAD).feed(black_box(HTTP)) {
                Sniff::Done(head) => head.host.map(|h| h.len()),
                _ => None,
            },
        )
    });
    group.finish();
}

criterion_group!(benches, tls, http);
criterion_main!(benches);
