//! PROXY protocol v2 between gateways: the parent sees (and enforces `sourceIpRange` on) the
//! original client, a cycle of misconfigured gateways is cut at `maxHops`, and only configured
//! children may send a header.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lnm_core::hop::Parent;
use lnm_core::proxy_header::ProxyHeader;
use lnm_policy::{Allowlist, AllowlistHandle};
use lnm_proxy::{Alert, ConnLimits, ConnReport, Outcome, Proxy, ProxyServer};
use lnm_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};

fn allow(source: Option<&str>) -> AllowlistHandle {
    let mut b = Allowlist::builder()
        .external("management.azure.com")
        .unwrap();
    if let Some(source) = source {
        b = b.source_range(source.parse().unwrap());
    }
    b.build().into()
}

type Reports = Arc<Mutex<Vec<ConnReport>>>;

async fn serve(listener: TcpListener, proxy: Proxy, reports: &Reports) -> ProxyServer {
    let sink = reports.clone();
    let proxy = proxy.with_observer(Arc::new(move |r: &ConnReport| {
        sink.lock().unwrap().push(r.clone())
    }));
    let server = ProxyServer::new(proxy, ConnLimits::default());
    let serving = server.clone();
    tokio::spawn(async move { serving.serve(listener).await });
    server
}

async fn get_from(source: &str, to: SocketAddr, pki: &Pki) -> Result<String, String> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let tcp = socket.connect(to).await.unwrap();
    https_get_over(tcp, "management.azure.com", "/", pki.client.clone()).await
}

#[tokio::test]
async fn the_parent_enforces_the_range_on_the_original_client() {
    init_logging();
    let pki = pki(&["management.azure.com"]);
    let origin = tls_origin(&pki, "origin").await;
    let reports: Reports = Arc::default();
    let l4_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let l4_addr = l4_listener.local_addr().unwrap();
    // L4 admits only the level-2 host 127.0.0.5, and trusts headers from L3 (127.0.0.1).
    let l4_settings =
        tls_settings(origin.port()).accept_proxy_protocol(vec!["127.0.0.1/32".parse().unwrap()]);
    serve(
        l4_listener,
        Proxy::builder(allow(Some("127.0.0.5/32")), l4_settings)
            .external(loopback_direct())
            .internal(no_internal())
            .build(),
        &reports,
    )
    .await;
    let l3_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let l3_addr = l3_listener.local_addr().unwrap();
    let parent = Parent::new([l4_addr]).send_proxy_protocol(true);
    serve(
        l3_listener,
        Proxy::builder(allow(None), tls_settings(origin.port()))
            .external(parent)
            .internal(no_internal())
            .build(),
        &reports,
    )
    .await;

    let body = get_from("127.0.0.5", l3_addr, &pki).await.unwrap();
    assert_eq!(body, "origin sni=management.azure.com path=/");
    let err = get_from("127.0.0.6", l3_addr, &pki).await.unwrap_err();
    assert!(err.contains("AccessDenied"), "{err}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reports = reports.lock().unwrap().clone();
    let at_l4: Vec<&ConnReport> = reports.iter().filter(|r| r.local == l4_addr).collect();
    assert_eq!(at_l4.len(), 2, "{reports:#?}");
    assert!(at_l4.iter().all(|r| r.hops == 1));
    assert!(
        at_l4
            .iter()
            .any(|r| r.client.ip().to_string() == "127.0.0.5" && r.outcome.is_allowed())
    );
    assert!(
        at_l4
            .iter()
            .any(|r| r.client.ip().to_string() == "127.0.0.6" && !r.outcome.is_allowed())
    );
}

#[tokio::test]
async fn a_cycle_of_gateways_is_cut_at_max_hops() {
    init_logging();
    let reports: Reports = Arc::default();
    let a = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    let trusted = vec!["127.0.0.1/32".parse().unwrap()];
    let settings = |port| {
        tls_settings(port)
            .accept_proxy_protocol(trusted.clone())
            .max_hops(4)
    };
    // Misconfigured: A's parent is B and B's parent is A.
    serve(
        a,
        Proxy::builder(allow(None), settings(443))
            .external(Parent::new([b_addr]).send_proxy_protocol(true))
            .internal(no_internal())
            .build(),
        &reports,
    )
    .await;
    serve(
        b,
        Proxy::builder(allow(None), settings(443))
            .external(Parent::new([a_addr]).send_proxy_protocol(true))
            .internal(no_internal())
            .build(),
        &reports,
    )
    .await;

    // The first client is trusted too (127.0.0.1): it must start with a header, hop 0.
    let mut client = tokio::net::TcpStream::connect(a_addr).await.unwrap();
    let header = ProxyHeader {
        client: "10.2.0.9:5000".parse().unwrap(),
        destination: a_addr,
        hops: 0,
    };
    client.write_all(&header.encode().unwrap()).await.unwrap();
    client
        .write_all(&client_hello(Some(b"management.azure.com")))
        .await
        .unwrap();
    let mut reaction = vec![0u8; 7];
    tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut reaction))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        reaction,
        Alert::AccessDenied.record(),
        "the alert of the gateway that cut the loop comes back"
    );
    drop(client);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reports = reports.lock().unwrap().clone();
    assert_eq!(
        reports.len(),
        5,
        "hops 0..=4, then nothing more: {reports:#?}"
    );
    assert!(
        reports
            .iter()
            .any(|r| r.outcome == Outcome::TooManyHops { hops: 4 })
    );
    assert!(
        reports
            .iter()
            .all(|r| r.client.to_string() == "10.2.0.9:5000"),
        "the original client all along"
    );
}

#[tokio::test]
async fn only_configured_children_may_send_a_header() {
    init_logging();
    let reports: Reports = Arc::default();
    // Trusts 127.0.0.2 only.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let settings = tls_settings(443).accept_proxy_protocol(vec!["127.0.0.2/32".parse().unwrap()]);
    serve(
        listener,
        Proxy::builder(allow(None), settings)
            .external(loopback_direct())
            .internal(no_internal())
            .build(),
        &reports,
    )
    .await;

    // An untrusted client claiming another address with a header: read as a (bad) hello, whose
    // first byte (0x0d) is no TLS record type: `unexpected_message` (RFC 8446 section 5).
    let header = ProxyHeader {
        client: "10.9.9.9:1".parse().unwrap(),
        destination: addr,
        hops: 0,
    };
    let mut spoof = header.encode().unwrap();
    spoof.extend_from_slice(&client_hello(Some(b"management.azure.com")));
    assert_eq!(
        first_reaction(addr, &spoof).await,
        Alert::UnexpectedMessage.record()
    );

    // A trusted child that forgets the header is refused.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut child = socket.connect(addr).await.unwrap();
    child
        .write_all(&client_hello(Some(b"management.azure.com")))
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), child.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let reports = reports.lock().unwrap().clone();
    assert!(
        reports
            .iter()
            .any(|r| matches!(r.outcome, Outcome::BadProxyHeader(_))),
        "{reports:#?}"
    );
}
