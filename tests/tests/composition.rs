//! The library as applications compose it: a user-built gateway (its own hop wrapper, policy
//! layer and observer) as level 3 of a simulated Purdue topology; a denial raised inside a
//! wrapped hop; the rule of a decision named from the decision's own snapshot while the
//! allowlist is swapped under it on the multi-threaded runtime.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lnm_core::hop::{HopService, SharedHop, TowerHop};
use lnm_core::{ConnInfo, Denied, Error, Hop, Stream, Target};
use lnm_policy::config::ListenerProtocol;
use lnm_policy::{Allowlist, BoxPolicy, Decision, EnforceLayer, Policy, Reason, Request, Route};
use lnm_proxy::sim::{LevelSpec, Network, Topology};
use lnm_proxy::{Alert, ConnReport, Outcome, Proxy, ProxySettings};
use lnm_tests::{client_hello, init_logging};
use tower::Layer;
use tower::filter::FilterLayer;

/// Counts the connections of the hop it wraps.
struct Counting {
    inner: SharedHop,
    count: Arc<AtomicUsize>,
}

#[lnm_core::async_trait]
impl Hop for Counting {
    async fn connect(&self, target: &Target, info: &ConnInfo) -> Result<Stream, Error> {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.inner.connect(target, info).await
    }
}

/// Waits (up to 5 s) until `done` holds: reports are written after the client got its answer.
async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}

fn closed_for_maintenance(request: Request<'_>) -> Result<Request<'_>, Denied> {
    match request.server_name {
        Some(b"closed.example.com") => Err(Denied::new(Reason::Policy("maintenance"))),
        _ => Ok(request),
    }
}

async fn user_gateway_as_level_3(network: Network) {
    init_logging();
    let count = Arc::new(AtomicUsize::new(0));
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let (hop_count, log) = (count.clone(), seen.clone());
    let topology = Topology::builder()
        .cloud(&["*.example.com"])
        .level(LevelSpec::new(4).allow("*.example.com"))
        .level(
            LevelSpec::new(3)
                .allow("open.example.com")
                .allow("closed.example.com")
                .allow("audited.example.com")
                .gateway(move |gateway| {
                    let count = hop_count.clone();
                    let log = log.clone();
                    gateway
                        .wrap_hops(move |route, inner| match route {
                            Route::External => Arc::new(Counting {
                                inner,
                                count: count.clone(),
                            }),
                            _ => inner,
                        })
                        .policy_layer(FilterLayer::new(closed_for_maintenance))
                        .observer(Arc::new(move |r: &ConnReport| {
                            log.lock().unwrap().push(r.outcome.as_str().to_owned())
                        }))
                }),
        )
        .level(LevelSpec::new(2).allow("*.example.com"))
        .network(network)
        .start()
        .await
        .unwrap();

    // Through the user's level 3 from level 2, and from level 3 itself.
    for level in [2, 3] {
        let host = topology.client(level).unwrap();
        let body = host.https_get("open.example.com", "/").await.unwrap();
        assert_eq!(
            body, "origin sni=open.example.com path=/",
            "from level {level}"
        );
    }
    // The user's policy layer denies, with its own reason, before any hop is asked.
    let host = topology.client(3).unwrap();
    let err = host.https_get("closed.example.com", "/").await.unwrap_err();
    assert!(err.to_string().contains("AccessDenied"), "{err}");
    // The level's DNS (built from the configuration, the user's parts notwithstanding) answers
    // with the level's gateway for allowlisted names and refuses the rest.
    assert_eq!(
        host.resolve("open.example.com").await.unwrap(),
        vec![topology.level(3).unwrap().gateway_ip()]
    );
    // Not allowlisted and no upstream: REFUSED, told apart from a name that has no address.
    let refused = host.resolve("elsewhere.example.net").await;
    assert!(
        matches!(&refused, Err(lnm_proxy::sim::SimError::DnsRefused { name }) if name == "elsewhere.example.net"),
        "{refused:?}"
    );
    assert_eq!(
        count.load(Ordering::SeqCst),
        2,
        "the wrapped hop saw both forwarded connections"
    );
    let logged = eventually(|| seen.lock().unwrap().iter().any(|o| o == "maintenance")).await;
    assert!(logged, "{:?}", seen.lock().unwrap());
    topology.shutdown().await;
}

#[tokio::test]
async fn a_user_gateway_is_level_3_in_memory() {
    user_gateway_as_level_3(Network::InMemory).await;
}

#[tokio::test]
async fn a_user_gateway_is_level_3_on_loopback() {
    user_gateway_as_level_3(Network::Loopback).await;
}

#[tokio::test]
async fn a_denial_inside_a_wrapped_hop_is_answered_and_counted_as_a_denial() {
    init_logging();
    // Level 3's hop enforces a stricter list than its proxy: `*.example.com` passes the proxy,
    // only `strict.example.com` passes the hop.
    let strict = Allowlist::builder()
        .external("strict.example.com")
        .unwrap()
        .build();
    let reports: Arc<Mutex<Vec<ConnReport>>> = Arc::default();
    let sink = reports.clone();
    let topology = Topology::builder()
        .cloud(&["*.example.com"])
        .level(LevelSpec::new(4).allow("*.example.com"))
        .level(
            LevelSpec::new(3)
                .allow("*.example.com")
                .gateway(move |gateway| {
                    let strict = strict.clone();
                    let sink = sink.clone();
                    gateway
                        .wrap_hops(move |_, inner| {
                            let enforced = EnforceLayer::new(strict.clone().into())
                                .layer(HopService::from_arc(inner));
                            Arc::new(TowerHop::with_info(enforced))
                        })
                        .observer(Arc::new(move |r: &ConnReport| {
                            sink.lock().unwrap().push(r.clone())
                        }))
                }),
        )
        .network(Network::InMemory)
        .start()
        .await
        .unwrap();
    let host = topology.client(3).unwrap();
    assert!(host.https_get("strict.example.com", "/").await.is_ok());
    let err = host.https_get("loose.example.com", "/").await.unwrap_err();
    assert!(err.to_string().contains("UnrecognisedName"), "{err}");
    let named = |r: &ConnReport| r.server_name.as_deref() == Some("loose.example.com");
    assert!(eventually(|| reports.lock().unwrap().iter().any(named)).await);
    let reports = reports.lock().unwrap().clone();
    let denied = reports
        .iter()
        .find(|r| r.server_name.as_deref() == Some("loose.example.com"))
        .expect("a report for the denied connection");
    assert_eq!(denied.outcome, Outcome::Denied(Reason::NotAllowlisted));
    assert!(!denied.outcome.is_allowed());
    assert_eq!(denied.route, None);
}

/// The layer of the one-snapshot test: decides, then swaps a much shorter allowlist in before
/// the proxy names the rule and logs.
#[derive(Clone)]
struct SwapAfterDeciding {
    inner: Policy,
}

impl<'a> tower::Service<Request<'a>> for SwapAfterDeciding {
    type Response = Decision;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Decision, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<'a>) -> Self::Future {
        let decision = self.inner.handle().check(&request);
        self.inner.handle().store(
            Allowlist::builder()
                .external("only.example.org")
                .unwrap()
                .build(),
        );
        std::future::ready(Ok(decision))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rule_logged_is_the_rule_that_decided_even_after_a_reload() {
    init_logging();
    let original = Allowlist::builder()
        .external("a.example.com")
        .unwrap()
        .external("b.example.com")
        .unwrap()
        .external("*.c.example.com")
        .unwrap()
        .build();
    for round in 0..20 {
        let handle: lnm_policy::AllowlistHandle = original.clone().into();
        let policy = BoxPolicy::new(SwapAfterDeciding {
            inner: Policy::new(handle.clone()),
        });
        let proxy = Proxy::builder(
            handle.clone(),
            ProxySettings::new(ListenerProtocol::Tls, 443),
        )
        .policy(policy)
        .build();
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let serving = tokio::spawn(async move {
            let addr = "10.2.0.7:40000".parse().unwrap();
            proxy.serve(Stream::Memory(server), addr, addr).await
        });
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        client
            .write_all(&client_hello(Some(b"x.c.example.com")))
            .await
            .unwrap();
        client.shutdown().await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut answer)).await;
        let report = serving.await.expect("the connection task does not panic");
        // Allowed by the third rule of the original list — which the new list does not have.
        assert_eq!(
            report.rule.as_ref().map(ToString::to_string).as_deref(),
            Some("*.c.example.com (external)"),
            "round {round}"
        );
        assert_eq!(
            handle.load().rules().len(),
            1,
            "the list was swapped meanwhile"
        );
        // This proxy has no external hop: the allowed connection fails at the next hop.
        assert!(
            matches!(report.outcome, Outcome::ConnectFailed(_)),
            "{:?}",
            report.outcome
        );
        assert_eq!(answer, Alert::InternalError.record().to_vec());
    }
}

/// Captures what a `fmt` subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// A `fmt` subscriber writing here, the default of this thread while the guard lives (the
    /// tests using it run on a single-threaded runtime, so it covers their spawned tasks).
    fn install() -> (Captured, tracing::subscriber::DefaultGuard) {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        (captured, tracing::subscriber::set_default(subscriber))
    }

    /// Everything written so far.
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn every_log_line_of_a_connection_carries_its_span() {
    use lnm_proxy::{Accepted, ConnLimits, Incoming, ProxyServer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (captured, _default) = Captured::install();

    let allowlist = Allowlist::builder().external("a.example").unwrap().build();
    let proxy = Proxy::builder(
        allowlist.into(),
        ProxySettings::new(ListenerProtocol::Tls, 443).level(3),
    )
    .build();
    let server = ProxyServer::new(proxy, ConnLimits::default());
    let (tx, incoming) = Incoming::channel(4);
    let serving = server.clone();
    let local = "10.3.0.1:443".parse().unwrap();
    tokio::spawn(async move { serving.serve_incoming(incoming, local).await });
    let (mut client, theirs) = tokio::io::duplex(4096);
    tx.send(Accepted::new(theirs, "10.2.0.7:40000".parse().unwrap()))
        .await
        .unwrap();
    client
        .write_all(&client_hello(Some(b"blocked.example")))
        .await
        .unwrap();
    client.shutdown().await.unwrap();
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).await.unwrap();
    assert_eq!(answer, Alert::UnrecognizedName.record().to_vec());
    drop(tx);
    server.drain(Duration::from_secs(5)).await;

    let text = captured.text();
    let line = text
        .lines()
        .find(|l| l.contains("denied: not allowlisted"))
        .unwrap_or_else(|| panic!("no decision line in:\n{text}"));
    assert!(
        line.contains(
            "conn{client=10.2.0.7:40000 listener=10.3.0.1:443 level=3 sni=\"blocked.example\"}"
        ),
        "{line}"
    );
}

#[tokio::test]
async fn a_forwarded_dns_query_logs_inside_its_span() {
    use lnm_dns::{
        DnsRequest, Forwarder, ForwarderConfig, Query, Rcode, RewriteConfig, RewriteResolver,
        Rtype, Transport,
    };
    use tower::ServiceExt;

    let (captured, _default) = Captured::install();

    // An upstream that never answers: a bound UDP socket nobody reads.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let upstream = silent.local_addr().unwrap();
    let forwarder =
        Forwarder::new(ForwarderConfig::new(vec![upstream]).timeout(Duration::from_millis(100)))
            .await
            .unwrap();
    let resolver = RewriteResolver::new(
        Allowlist::builder()
            .external("a.example")
            .unwrap()
            .build()
            .into(),
        RewriteConfig::new(vec!["10.3.0.1".parse().unwrap()], vec![]),
        forwarder,
    );
    let request = DnsRequest {
        query: Query::build("elsewhere.example", Rtype::AAAA).unwrap(),
        source: "10.2.0.7:5353".parse().unwrap(),
        transport: Transport::Udp,
    };
    let Ok(response) = resolver.oneshot(request).await;
    assert_eq!(response.rcode(), Some(Rcode::SERVFAIL));
    let text = captured.text();
    let line = text
        .lines()
        .find(|l| l.contains("every DNS upstream failed"))
        .unwrap_or_else(|| panic!("no failure line in:\n{text}"));
    assert!(
        line.contains("dns{client=10.2.0.7:5353 name=\"elsewhere.example\" qtype=AAAA}"),
        "{line}"
    );
}
