//! A 3-level chain on loopback — client → L3 → L4 → rustls origin — and the same chain
//! in-process over `Memory` hops: allowed and denied names, HTTP on its own listener, an
//! internal (east-west) destination, source ranges.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use lnm_core::hop::{Internal, Memory, MemoryNetwork, Parent};
use lnm_policy::config::ListenerProtocol;
use lnm_policy::{Allowlist, AllowlistHandle};
use lnm_proxy::{Alert, ConnLimits, Proxy, ProxyServer, ProxySettings};
use lnm_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CERT_NAMES: &[&str] = &[
    "management.azure.com",
    "*.blob.core.windows.net",
    "a.b.acct.blob.core.windows.net",
    "blob.core.windows.net",
    "evil.example.com",
    "management.azure.com.evil.com",
    "xmanagement.azure.com",
    "only-l3.example.com",
    "broker.l3.contoso.local",
];

fn allowlist(extra: &[&str]) -> AllowlistHandle {
    let mut b = Allowlist::builder()
        .external("management.azure.com")
        .unwrap()
        .external("*.blob.core.windows.net")
        .unwrap();
    for e in extra {
        b = b.external(e).unwrap();
    }
    b.source_range("127.0.0.0/8".parse().unwrap())
        .build()
        .into()
}

struct Chain {
    pki: Pki,
    l3: Level,
    l4: Level,
}

/// client → L3 (Parent) → L4 (Direct, resolving everything to loopback) → origin.
async fn chain() -> Chain {
    init_logging();
    let pki = pki(CERT_NAMES);
    let origin = tls_origin(&pki, "origin").await;
    let port = origin.port();
    let l4 = level(
        allowlist(&[]),
        loopback_direct(),
        no_internal(),
        tls_settings(port).level(4),
    )
    .await;
    let l3 = level(
        allowlist(&["only-l3.example.com"]),
        Parent::new([l4.addr]),
        no_internal(),
        tls_settings(port).level(3),
    )
    .await;
    Chain { pki, l3, l4 }
}

#[tokio::test]
async fn allowed_names_reach_the_origin_through_both_levels() {
    let c = chain().await;
    for name in [
        "management.azure.com",
        "acct.blob.core.windows.net",
        "a.b.acct.blob.core.windows.net",
    ] {
        let body = https_get(c.l3.addr, name, "/hello", c.pki.client.clone())
            .await
            .unwrap();
        assert_eq!(body, format!("origin sni={name} path=/hello"), "{name}");
    }
    // The TLS session is end to end: a certificate for another name would have failed, and a
    // megabyte comes through intact.
    let body = https_get(
        c.l3.addr,
        "management.azure.com",
        "/bytes/1000000",
        c.pki.client.clone(),
    )
    .await
    .unwrap();
    assert_eq!(body.len(), 1_000_000);
    assert!(body.bytes().all(|b| b == b'x'));
    // Entering at L4 directly works too (one hop).
    let body = https_get(c.l4.addr, "management.azure.com", "/", c.pki.client.clone())
        .await
        .unwrap();
    assert!(body.starts_with("origin sni=management.azure.com"));
}

#[tokio::test]
async fn denied_names_get_a_tls_alert() {
    let c = chain().await;
    for name in [
        "blob.core.windows.net",
        "evil.example.com",
        "management.azure.com.evil.com",
        "xmanagement.azure.com",
    ] {
        let err = https_get(c.l3.addr, name, "/", c.pki.client.clone())
            .await
            .unwrap_err();
        assert!(err.contains("UnrecognisedName"), "{name}: {err}");
    }
    // Allowed at L3 but not at L4: L4's alert travels back through L3 untouched.
    let err = https_get(c.l3.addr, "only-l3.example.com", "/", c.pki.client.clone())
        .await
        .unwrap_err();
    assert!(err.contains("UnrecognisedName"), "{err}");
    // No SNI at all.
    let err = https_get(
        c.l3.addr,
        "management.azure.com",
        "/",
        c.pki.client_without_sni(),
    )
    .await
    .unwrap_err();
    assert!(err.contains("UnrecognisedName"), "{err}");
}

#[tokio::test]
async fn ip_literal_and_garbage_hellos_are_refused() {
    let c = chain().await;
    assert_eq!(
        first_reaction(c.l3.addr, &client_hello(Some(b"10.0.0.1"))).await,
        Alert::UnrecognizedName.record()
    );
    assert_eq!(
        first_reaction(c.l3.addr, &client_hello(None)).await,
        Alert::UnrecognizedName.record()
    );
    // Plain text on the TLS port: record type `G` is no TLS record type, `unexpected_message`
    // (RFC 8446 section 5).
    assert_eq!(
        first_reaction(c.l3.addr, b"GET / HTTP/1.1\r\n\r\n").await,
        Alert::UnexpectedMessage.record()
    );
    assert_eq!(
        first_reaction(
            c.l3.addr,
            &client_hello(Some(b"evil.com\0.management.azure.com"))
        )
        .await,
        Alert::UnrecognizedName.record()
    );
    // The proxy is still serving after all that.
    assert!(
        https_get(c.l3.addr, "management.azure.com", "/", c.pki.client.clone())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_source_outside_the_range_is_refused_before_reading() {
    init_logging();
    let pki = pki(CERT_NAMES);
    let origin = tls_origin(&pki, "origin").await;
    let only_l2: AllowlistHandle = Allowlist::builder()
        .external("management.azure.com")
        .unwrap()
        .source_range("10.2.0.0/16".parse().unwrap())
        .build()
        .into();
    let l3 = level(
        only_l2,
        loopback_direct(),
        no_internal(),
        tls_settings(origin.port()),
    )
    .await;
    let err = https_get(l3.addr, "management.azure.com", "/", pki.client.clone())
        .await
        .unwrap_err();
    assert!(err.contains("AccessDenied"), "{err}");
}

#[tokio::test]
async fn http_is_routed_by_host() {
    init_logging();
    let origin = http_origin().await;
    let http = |port| ProxySettings::new(ListenerProtocol::Http, port);
    let l4 = level(
        allowlist(&[]),
        loopback_direct(),
        no_internal(),
        http(origin.port()),
    )
    .await;
    let l3 = level(
        allowlist(&[]),
        Parent::new([l4.addr]),
        no_internal(),
        http(origin.port()),
    )
    .await;

    let get = |host: &'static str| async move {
        let mut tcp = TcpStream::connect(l3.addr).await.unwrap();
        let req = format!("GET /p HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut resp = String::new();
        tcp.read_to_string(&mut resp).await.unwrap();
        resp
    };
    let ok = get("Management.Azure.com:80").await;
    assert!(ok.starts_with("HTTP/1.1 200 OK"), "{ok}");
    assert!(
        ok.ends_with("http-origin host=Management.Azure.com:80"),
        "{ok}"
    );
    let denied = get("evil.example.com").await;
    assert!(denied.starts_with("HTTP/1.1 403 Forbidden"), "{denied}");
    assert!(
        denied.contains("\r\n\r\nlnm: evil.example.com:"),
        "{denied}"
    );
    assert!(denied.ends_with(" denied: not allowlisted\n"), "{denied}");
    let apex = get("blob.core.windows.net").await;
    assert!(apex.starts_with("HTTP/1.1 403"), "{apex}");
    // CONNECT is no way around the allowlist.
    let mut tcp = TcpStream::connect(l3.addr).await.unwrap();
    tcp.write_all(b"CONNECT evil.example.com:443 HTTP/1.1\r\nHost: management.azure.com\r\n\r\n")
        .await
        .unwrap();
    let mut resp = String::new();
    tcp.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
}

#[tokio::test]
async fn internal_destination_on_its_own_port_only() {
    init_logging();
    let pki = pki(CERT_NAMES);
    let broker = tls_origin(&pki, "broker").await;
    let origin = tls_origin(&pki, "origin").await;
    let allow: AllowlistHandle = Allowlist::builder()
        .external("management.azure.com")
        .unwrap()
        .internal("broker.l3.contoso.local", broker.port())
        .unwrap()
        .build()
        .into();
    let mut internal = Internal::new();
    internal.insert_ip(
        "broker.l3.contoso.local".parse().unwrap(),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
    );
    // L3's external hop goes nowhere: east-west traffic must not need it.
    let nowhere = Parent::new(["127.0.0.1:1".parse::<SocketAddr>().unwrap()])
        .connect_timeout(Duration::from_millis(200));
    let mqtt = level(
        allow.clone(),
        nowhere.clone(),
        internal.clone(),
        ProxySettings::new(ListenerProtocol::Auto, broker.port()),
    )
    .await;
    let body = https_get(
        mqtt.addr,
        "broker.l3.contoso.local",
        "/mqtt",
        pki.client.clone(),
    )
    .await
    .unwrap();
    assert_eq!(body, "broker sni=broker.l3.contoso.local path=/mqtt");

    // The same name on the 443-style listener is refused (its port is not the broker's).
    let tls = level(allow, nowhere, internal, tls_settings(origin.port())).await;
    let err = https_get(tls.addr, "broker.l3.contoso.local", "/", pki.client.clone())
        .await
        .unwrap_err();
    assert!(err.contains("AccessDenied"), "{err}");
    // And an external name whose parent is down gets an internal_error alert, not a hang.
    let err = https_get(tls.addr, "management.azure.com", "/", pki.client.clone())
        .await
        .unwrap_err();
    assert!(err.contains("InternalError"), "{err}");
}

#[tokio::test]
async fn the_same_chain_runs_in_process_over_memory_hops() {
    init_logging();
    let pki = pki(CERT_NAMES);
    let net = MemoryNetwork::new();
    for name in [
        "management.azure.com:443",
        "acct.blob.core.windows.net:443",
        "evil.example.com:443",
    ] {
        tls_origin_in_memory(&pki, &net, name, "memory-origin");
    }
    let allow = || -> AllowlistHandle {
        Allowlist::builder()
            .external("management.azure.com")
            .unwrap()
            .external("*.blob.core.windows.net")
            .unwrap()
            .source_range("10.2.0.0/16".parse().unwrap())
            .source_range("10.3.0.0/16".parse().unwrap())
            .build()
            .into()
    };
    let l4_addr: SocketAddr = "10.4.0.1:443".parse().unwrap();
    let l3_addr: SocketAddr = "10.3.0.1:443".parse().unwrap();
    let l4 = ProxyServer::new(
        Proxy::builder(allow(), tls_settings(443).level(4))
            .external(Memory::by_target(&net))
            .internal(Internal::new())
            .build(),
        ConnLimits::default(),
    );
    let l3 = ProxyServer::new(
        Proxy::builder(allow(), tls_settings(443).level(3))
            .external(Memory::to(&net, "l4:443").from_addr(l3_addr))
            .internal(Internal::new())
            .build(),
        ConnLimits::default(),
    );
    let (l4_listener, l3_listener) = (net.bind("l4:443").unwrap(), net.bind("l3:443").unwrap());
    let (s4, s3) = (l4.clone(), l3.clone());
    tokio::spawn(async move { s4.serve_memory(l4_listener, l4_addr).await });
    tokio::spawn(async move { s3.serve_memory(l3_listener, l3_addr).await });

    let from_l2: SocketAddr = "10.2.0.5:40000".parse().unwrap();
    for name in ["management.azure.com", "acct.blob.core.windows.net"] {
        let pipe = net.connect("l3:443", from_l2).await.unwrap();
        let body = https_get_over(pipe, name, "/m", pki.client.clone())
            .await
            .unwrap();
        assert_eq!(body, format!("memory-origin sni={name} path=/m"));
    }
    let pipe = net.connect("l3:443", from_l2).await.unwrap();
    let err = https_get_over(pipe, "evil.example.com", "/", pki.client.clone())
        .await
        .unwrap_err();
    assert!(err.contains("UnrecognisedName"), "{err}");
    let outsider: SocketAddr = "10.9.0.5:40000".parse().unwrap();
    let pipe = net.connect("l3:443", outsider).await.unwrap();
    let err = https_get_over(pipe, "management.azure.com", "/", pki.client.clone())
        .await
        .unwrap_err();
    assert!(err.contains("AccessDenied"), "{err}");
    assert_eq!(l3.drain(Duration::from_secs(1)).await, 0);
}

#[tokio::test]
async fn a_dead_first_parent_is_invisible_to_clients() {
    init_logging();
    let pki = pki(CERT_NAMES);
    let origin = tls_origin(&pki, "origin").await;
    let l4 = level(
        allowlist(&[]),
        loopback_direct(),
        no_internal(),
        tls_settings(origin.port()),
    )
    .await;
    let dead: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let l3 = level(
        allowlist(&[]),
        Parent::new([dead, l4.addr]),
        no_internal(),
        tls_settings(origin.port()),
    )
    .await;
    for _ in 0..3 {
        let body = https_get(l3.addr, "management.azure.com", "/", pki.client.clone())
            .await
            .unwrap();
        assert_eq!(body, "origin sni=management.azure.com path=/");
    }
}
