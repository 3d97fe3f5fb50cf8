//! A whole level from its configuration: reload swaps the allowlist for new connections while
//! live ones keep running; the admin endpoint answers.

use std::net::SocketAddr;
use std::time::Duration;

use lnm_policy::Config;
use lnm_proxy::Gateway;
use lnm_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn config(allowed: &str, echo_port: u16, admin: bool) -> Config {
    let admin = if admin {
        "admin: {bind: \"127.0.0.1:0\"}\n"
    } else {
        ""
    };
    let yaml = format!(
        "level: 4\nallowList:\n  domains:\n    - {{destinationUrl: {allowed}, destinationType: external}}\n\
         listeners: [{{bind: \"127.0.0.1:0\", protocol: tls, destinationPort: {echo_port}}}]\n\
         resolver: {{hosts: {{a.example: 127.0.0.1, b.example: 127.0.0.1}}}}\n{admin}"
    );
    Config::parse(&yaml, "gateway-test").unwrap().config
}

#[tokio::test]
async fn reload_keeps_live_connections_and_applies_to_new_ones() {
    init_logging();
    let origin = echo_origin().await;
    let mut gateway = Gateway::start(&config("a.example", origin.port(), false), None)
        .await
        .unwrap();
    let proxy = gateway.addrs()[0];

    // A live connection for a.example: the hello is echoed back, then more bytes.
    let hello = client_hello(Some(b"a.example"));
    let mut live = TcpStream::connect(proxy).await.unwrap();
    live.write_all(&hello).await.unwrap();
    let mut back = vec![0u8; hello.len()];
    live.read_exact(&mut back).await.unwrap();
    assert_eq!(back, hello);

    // Reload: only b.example now.
    let pending = gateway.reload(config("b.example", origin.port(), false));
    assert!(pending.is_complete(), "{pending:?}");

    // The live connection still flows.
    live.write_all(b"still here").await.unwrap();
    let mut more = [0u8; 10];
    live.read_exact(&mut more).await.unwrap();
    assert_eq!(&more, b"still here");
    // New connections follow the new allowlist.
    assert_eq!(
        first_reaction(proxy, &client_hello(Some(b"a.example"))).await,
        lnm_proxy::Alert::UnrecognizedName.record()
    );
    let b = client_hello(Some(b"b.example"));
    assert_eq!(first_reaction(proxy, &b).await, b);
    drop(live);
    assert_eq!(gateway.shutdown().await, 0);
}

#[tokio::test]
async fn admin_endpoint_answers_health_and_readiness() {
    init_logging();
    let origin = echo_origin().await;
    let gateway = Gateway::start(&config("a.example", origin.port(), true), None)
        .await
        .unwrap();
    let admin = gateway.admin_addr().unwrap();
    let get = |path: &'static str| async move {
        let mut s = TcpStream::connect(admin).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
    assert!(get("/readyz").await.starts_with("HTTP/1.1 200"));
    assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
    assert!(get("/metrics").await.starts_with("HTTP/1.1 200"));
    // Garbage and oversized requests on the admin port: refused, and the endpoint keeps serving.
    for junk in [vec![0u8; 100], vec![b'A'; 20_000]] {
        let mut s = TcpStream::connect(admin).await.unwrap();
        let _ = s.write_all(&junk).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(6), s.read_to_end(&mut out)).await;
        assert!(
            out.is_empty() || out.starts_with(b"HTTP/1.1 405"),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }
    assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
    tokio::time::timeout(Duration::from_secs(5), gateway.shutdown())
        .await
        .unwrap();
}

#[tokio::test]
async fn the_top_level_is_no_confused_deputy() {
    init_logging();
    // A service on the gateway host's loopback that must not be reachable through it.
    let local_service = echo_origin().await;
    // "Public" DNS that an attacker controls: every *.example.com points at loopback.
    let evil_dns = lnm_dns::RewriteResolver::new(
        lnm_policy::Allowlist::builder()
            .external("*.example.com")
            .unwrap()
            .build()
            .into(),
        lnm_dns::RewriteConfig::new(vec!["127.0.0.1".parse().unwrap()], vec![]),
        lnm_dns::Refuser,
    );
    let (udp, tcp) = lnm_dns::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let dns = udp.local_addr().unwrap();
    let server = lnm_dns::DnsServer::new(evil_dns, lnm_dns::DnsLimits::default());
    tokio::spawn(async move { server.serve(udp, tcp).await });

    let gateway = |guard: &str| {
        let yaml = format!(
            "level: 4\nallowList:\n  domains:\n    - {{destinationUrl: \"*.example.com\", destinationType: external}}\n\
             listeners: [{{bind: \"127.0.0.1:0\", protocol: tls, destinationPort: {}}}]\n\
             resolver: {{upstream: [\"{dns}\"]{guard}}}\n",
            local_service.port()
        );
        Config::parse(&yaml, "deputy").unwrap().config
    };
    let hello = client_hello(Some(b"metadata.example.com"));
    let guarded = Gateway::start(&gateway(""), None).await.unwrap();
    let reaction = first_reaction(guarded.addrs()[0], &hello).await;
    assert_eq!(
        reaction,
        lnm_proxy::Alert::InternalError.record(),
        "refused, not dialled"
    );
    guarded.shutdown().await;
    // Control: with the guard turned off the same hello reaches the loopback service.
    let open = Gateway::start(&gateway(", refusedRanges: []"), None)
        .await
        .unwrap();
    assert_eq!(first_reaction(open.addrs()[0], &hello).await, hello);
    open.shutdown().await;
}

#[tokio::test]
async fn reloads_under_load_drop_no_live_connection() {
    init_logging();
    let origin = echo_origin().await;
    let mut gateway = Gateway::start(&config("a.example", origin.port(), false), None)
        .await
        .unwrap();
    let proxy = gateway.addrs()[0];
    let hello = client_hello(Some(b"a.example"));
    let mut live = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(proxy).await.unwrap();
        s.write_all(&hello).await.unwrap();
        let mut back = vec![0u8; hello.len()];
        s.read_exact(&mut back).await.unwrap();
        live.push(s);
    }
    // Traffic on every connection between twenty reloads that flip the allowlist.
    for round in 0..20u8 {
        let name = if round % 2 == 0 {
            "b.example"
        } else {
            "a.example"
        };
        assert!(
            gateway
                .reload(config(name, origin.port(), false))
                .is_complete()
        );
        for s in &mut live {
            s.write_all(&[round; 32]).await.unwrap();
            let mut back = [0u8; 32];
            tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(back, [round; 32]);
        }
    }
    drop(live);
    gateway.shutdown().await;
}

#[tokio::test]
async fn reload_reports_what_needs_a_restart_and_start_names_what_it_cannot_bind() {
    use lnm_policy::config::{DomainEntry, Limits, ListenerConfig, ListenerProtocol};
    use lnm_proxy::NeedsRestart;

    let listen =
        |ip: &str| ListenerConfig::new(format!("{ip}:0").parse().unwrap(), ListenerProtocol::Tls);
    let level = || Config::level(4).allow(DomainEntry::external("a.example").unwrap());
    let mut gateway = Gateway::start(&level().with_listener(listen("127.0.0.1")), None)
        .await
        .unwrap();
    let report = gateway.reload(
        level()
            .with_listener(listen("127.0.0.2"))
            .with_limits(Limits::default().with_max_connections(5)),
    );
    assert_eq!(
        report.needs_restart,
        vec![
            NeedsRestart::ListenerRemoved("127.0.0.1:0".parse().unwrap()),
            NeedsRestart::ListenerAdded("127.0.0.2:0".parse().unwrap()),
            NeedsRestart::Limits,
        ]
    );
    assert!(!report.is_complete());
    assert!(
        report.to_string().contains("connection limits changed"),
        "{report}"
    );

    let taken = gateway.addrs()[0];
    let clash = level().with_listener(ListenerConfig::new(taken, ListenerProtocol::Tls));
    match Gateway::start(&clash, None).await {
        Err(lnm_proxy::Error::Bind { what, addr, source }) => {
            assert_eq!((what, addr), ("proxy listener", taken));
            assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
        }
        other => panic!("expected a bind error naming {taken}, got {other:?}"),
    }
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_listener_the_application_bound_serves_and_an_unknown_source_is_refused() {
    use lnm_policy::config::{DomainEntry, ListenerConfig, ListenerProtocol};
    use lnm_proxy::Incoming;

    let own = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = own.local_addr().unwrap();
    let config = Config::level(4)
        .allow(DomainEntry::external("a.example").unwrap())
        .with_listener(ListenerConfig::new(addr, ListenerProtocol::Tls));
    let gateway = Gateway::builder(config.clone())
        .incoming(addr, Incoming::Tcp(own))
        .start()
        .await
        .unwrap();
    assert_eq!(gateway.addrs(), vec![addr]);
    assert_eq!(
        first_reaction(addr, &client_hello(Some(b"denied.example"))).await,
        lnm_proxy::Alert::UnrecognizedName.record()
    );
    gateway.shutdown().await;

    let elsewhere: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let (_tx, source) = Incoming::channel(1);
    match Gateway::builder(config)
        .incoming(elsewhere, source)
        .start()
        .await
    {
        Err(lnm_proxy::Error::UnknownListener { bind }) => assert_eq!(bind, elsewhere),
        other => panic!("expected UnknownListener, got {other:?}"),
    }
}
