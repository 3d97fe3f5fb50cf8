//! Safety of a listener under hostile or heavy use: connection limits, slow clients, graceful
//! drain, and a gateway that must not dial itself.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lnm_core::OwnAddrs;
use lnm_core::hop::Parent;
use lnm_policy::{Allowlist, AllowlistHandle};
use lnm_proxy::{Alert, ConnLimits, Proxy, ProxyServer};
use lnm_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

fn allow_all_azure() -> AllowlistHandle {
    Allowlist::builder()
        .external("management.azure.com")
        .unwrap()
        .build()
        .into()
}

async fn server_with(
    limits: ConnLimits,
    settings: lnm_proxy::ProxySettings,
) -> (SocketAddr, ProxyServer) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let proxy = Proxy::builder(allow_all_azure(), settings)
        .external(loopback_direct())
        .internal(no_internal())
        .build();
    let server = ProxyServer::new(proxy, limits);
    let serving = server.clone();
    tokio::spawn(async move { serving.serve(listener).await });
    (addr, server)
}

async fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Whether the proxy closes `stream` within `within` without sending anything.
async fn closed_silently(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 16];
    matches!(
        tokio::time::timeout(within, stream.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// Waits until the server counts `n` open connections.
async fn wait_active(server: &ProxyServer, n: usize) {
    let start = Instant::now();
    while server.active() != n {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "active = {}, expected {n}",
            server.active()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn per_source_and_total_limits() {
    init_logging();
    let limits = ConnLimits {
        max_connections: 3,
        max_per_source: 2,
    };
    let (addr, server) = server_with(limits, tls_settings(443)).await;
    // Two slow clients from 127.0.0.1 hold their slots (half a hello each).
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = connect_from("127.0.0.1", addr).await;
        s.write_all(&[22, 3, 1]).await.unwrap();
        held.push(s);
    }
    wait_active(&server, 2).await;
    let mut third = connect_from("127.0.0.1", addr).await;
    assert!(
        closed_silently(&mut third, Duration::from_secs(2)).await,
        "per-source limit"
    );
    // Another source still gets in, up to the total.
    let mut other = connect_from("127.0.0.2", addr).await;
    other.write_all(&[22]).await.unwrap();
    wait_active(&server, 3).await;
    let mut over_total = connect_from("127.0.0.3", addr).await;
    assert!(
        closed_silently(&mut over_total, Duration::from_secs(2)).await,
        "total limit"
    );
    // Slots come back when connections end.
    drop(held);
    wait_active(&server, 1).await;
    let fresh = first_reaction(addr, &client_hello(Some(b"evil.example.com"))).await;
    assert_eq!(fresh, Alert::UnrecognizedName.record());
}

#[tokio::test]
async fn slow_clients_are_cut_at_the_sniff_timeout_and_others_are_served() {
    init_logging();
    let pki = pki(&["management.azure.com"]);
    let origin = tls_origin(&pki, "origin").await;
    let settings = tls_settings(origin.port()).sniff_timeout(Duration::from_millis(300));
    let (addr, server) = server_with(ConnLimits::default(), settings).await;
    let mut slowloris = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&[22, 3, 1, 0, 200, 1]).await.unwrap();
        slowloris.push(s);
    }
    // Meanwhile a real client is served at once.
    let body = https_get(addr, "management.azure.com", "/", pki.client.clone())
        .await
        .unwrap();
    assert_eq!(body, "origin sni=management.azure.com path=/");
    let started = Instant::now();
    for s in &mut slowloris {
        assert!(closed_silently(s, Duration::from_secs(3)).await);
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    wait_active(&server, 0).await;
}

#[tokio::test]
async fn drain_waits_then_closes_what_is_left() {
    init_logging();
    // An origin that accepts and then never answers: the relayed connection stays open.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut keep = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            keep.push(s);
        }
    });
    let (addr, server) = server_with(ConnLimits::default(), tls_settings(port)).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(&client_hello(Some(b"management.azure.com")))
        .await
        .unwrap();
    wait_active(&server, 1).await;
    let started = Instant::now();
    let closed = server.drain(Duration::from_millis(300)).await;
    assert_eq!(closed, 1);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(closed_silently(&mut client, Duration::from_secs(2)).await);
    // The listener no longer accepts.
    let refused = match TcpStream::connect(addr).await {
        Err(_) => true,
        Ok(mut s) => closed_silently(&mut s, Duration::from_secs(2)).await,
    };
    assert!(refused);
}

#[tokio::test]
async fn a_gateway_never_dials_its_own_listener() {
    init_logging();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let own = OwnAddrs::new();
    own.add_listener(addr);
    // Misconfigured: the parent is the gateway itself.
    let parent = Parent::new([addr]).own_addrs(own.clone());
    let proxy = Proxy::builder(allow_all_azure(), tls_settings(addr.port()))
        .external(parent)
        .internal(no_internal())
        .build();
    let server = ProxyServer::new(proxy, ConnLimits::default());
    let serving = server.clone();
    tokio::spawn(async move { serving.serve(listener).await });
    let reaction = first_reaction(addr, &client_hello(Some(b"management.azure.com"))).await;
    assert_eq!(
        reaction,
        Alert::InternalError.record(),
        "refused at once, not followed"
    );
    wait_active(&server, 0).await;

    // Same through resolution: the top level resolves the name back to itself.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let own = OwnAddrs::new();
    own.add_listener(addr);
    let direct = loopback_direct().own_addrs(own);
    let proxy = Proxy::builder(allow_all_azure(), tls_settings(addr.port()))
        .external(direct)
        .internal(no_internal())
        .build();
    let server = ProxyServer::new(proxy, ConnLimits::default());
    let serving = server.clone();
    tokio::spawn(async move { serving.serve(listener).await });
    let reaction = first_reaction(addr, &client_hello(Some(b"management.azure.com"))).await;
    assert_eq!(reaction, Alert::InternalError.record());
    wait_active(&server, 0).await;
}

#[tokio::test]
async fn an_origin_reset_mid_transfer_closes_both_sides_with_true_counters() {
    // 100 kB stays in the user-space copy; 1 MB goes past the switch to splice(2) on Linux.
    origin_reset_after(100_000).await;
    origin_reset_after(1_000_000).await;
}

async fn origin_reset_after(size: usize) {
    use std::sync::{Arc, Mutex};
    init_logging();
    // An origin that sends `size` bytes, then resets the connection.
    let origin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = origin.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut s, _) = origin.accept().await.unwrap();
        let mut hello = vec![0u8; 4096];
        let _ = s.read(&mut hello).await;
        s.write_all(&vec![b'x'; size]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Linger 0 makes close() send a RST at once (it does not block with a zero timeout).
        #[allow(deprecated)]
        s.set_linger(Some(Duration::ZERO)).unwrap();
        drop(s);
    });
    let reports: Arc<Mutex<Vec<lnm_proxy::ConnReport>>> = Arc::default();
    let sink = reports.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let proxy = Proxy::builder(allow_all_azure(), tls_settings(port))
        .external(loopback_direct())
        .internal(no_internal())
        .build()
        .with_observer(Arc::new(move |r: &lnm_proxy::ConnReport| {
            sink.lock().unwrap().push(r.clone())
        }));
    let server = ProxyServer::new(proxy, ConnLimits::default());
    let serving = server.clone();
    tokio::spawn(async move { serving.serve(listener).await });

    let hello = client_hello(Some(b"management.azure.com"));
    let mut client = TcpStream::connect(addr).await.unwrap();
    client.write_all(&hello).await.unwrap();
    let mut received = 0usize;
    let mut buf = vec![0u8; 16384];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
            .await
            .expect("closed in time")
        {
            Ok(0) | Err(_) => break,
            Ok(n) => received += n,
        }
    }
    wait_active(&server, 0).await;
    let reports = reports.lock().unwrap().clone();
    assert_eq!(reports.len(), 1);
    let r = &reports[0];
    assert_eq!(r.bytes_up, hello.len() as u64);
    assert_eq!(r.bytes_down, received as u64, "{r:?}");
    assert_eq!(received, size);
    assert!(
        matches!(r.outcome, lnm_proxy::Outcome::RelayError(_)),
        "the reset is reported: {r:?}"
    );
}

#[tokio::test]
async fn oversized_and_garbage_first_flights_on_tls_and_http_listeners() {
    init_logging();
    let (tls, _) = server_with(ConnLimits::default(), tls_settings(443)).await;
    let http_settings =
        lnm_proxy::ProxySettings::new(lnm_policy::config::ListenerProtocol::Http, 80);
    let (http, _) = server_with(ConnLimits::default(), http_settings).await;

    // A handshake header announcing a 1 MiB ClientHello: refused at once, nothing buffered,
    // with the alert OpenSSL sends for an excessive handshake message (`illegal_parameter`).
    assert_eq!(
        first_reaction(tls, &[22, 3, 1, 0, 4, 1, 0x10, 0, 0]).await,
        Alert::IllegalParameter.record()
    );
    // 80 kB of well-formed records whose hello announces 65,540 bytes of handshake message:
    // over the 64 KiB cap, refused on the first record.
    let mut big = Vec::new();
    big.extend_from_slice(&[22, 3, 1, 0x40, 0x00, 1, 0x01, 0x00, 0x00]);
    big.resize(5 + 0x4000, 0x41);
    for _ in 0..4 {
        big.extend_from_slice(&[22, 3, 1, 0x40, 0x00]);
        big.resize(big.len() + 0x4000, 0x41);
    }
    assert_eq!(
        first_reaction(tls, &big).await,
        Alert::IllegalParameter.record()
    );
    // Binary garbage: record content type 0 is no record type a server expects
    // (RFC 8446 section 5: `unexpected_message`).
    assert_eq!(
        first_reaction(tls, &[0x00; 600]).await,
        Alert::UnexpectedMessage.record()
    );

    // HTTP: a 20 kB head, binary garbage, a TLS hello on the HTTP port.
    let mut head = b"GET / HTTP/1.1\r\nHost: management.azure.com\r\n".to_vec();
    while head.len() < 20_000 {
        head.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    for input in [
        head,
        vec![0xff; 100],
        client_hello(Some(b"management.azure.com")),
    ] {
        let reply = first_reaction(http, &input).await;
        assert!(
            reply.starts_with(b"HTTP/1.1 400 Bad Request"),
            "{}",
            String::from_utf8_lossy(&reply)
        );
    }
    // Both listeners still decide normally afterwards.
    assert_eq!(
        first_reaction(tls, &client_hello(Some(b"evil.example"))).await,
        Alert::UnrecognizedName.record()
    );
    let denied = first_reaction(http, b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n").await;
    assert!(
        denied.starts_with(b"HTTP/1.1 403"),
        "{}",
        String::from_utf8_lossy(&denied)
    );
}
