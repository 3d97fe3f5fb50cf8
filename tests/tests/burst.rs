//! Bursts: 2,000 clients connect to a gateway at once and every one is served, without the
//! kernel dropping a SYN for a full accept queue (`limits.listenBacklog`, default 4,096). The
//! kernel's own counters (`ListenOverflows`, `ListenDrops` in `/proc/net/netstat`) are the
//! witness, not a clock. Alone in its binary, so no other test's connections move them.

use std::time::Duration;

use lnm_policy::config::{Config, DomainEntry, Limits, ListenerConfig, ListenerProtocol};
use lnm_proxy::{Alert, Gateway};
use lnm_tests::client_hello;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

const CLIENTS: usize = 2_000;

/// `ListenOverflows + ListenDrops` of the network namespace.
fn listen_drops() -> u64 {
    let text = std::fs::read_to_string("/proc/net/netstat").expect("/proc/net/netstat");
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("TcpExt:")).collect();
    let (names, values) = (lines[0], lines[1]);
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .filter(|(name, _)| matches!(*name, "ListenOverflows" | "ListenDrops"))
        .map(|(_, value)| value.parse::<u64>().unwrap())
        .sum()
}

#[tokio::test(flavor = "current_thread")]
async fn two_thousand_clients_at_once_are_all_served_without_a_dropped_syn() {
    // Two descriptors per client (its end and the gateway's) and some for the runtime.
    let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
    let wanted = (2 * CLIENTS as u64 + 256).min(hard);
    rlimit::Resource::NOFILE.set(wanted, hard).unwrap();
    assert!(
        wanted > 2 * CLIENTS as u64,
        "the descriptor limit ({hard}) is too low for this test"
    );

    let config = Config::level(4)
        .allow(DomainEntry::external("a.example").unwrap())
        .with_listener(ListenerConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            ListenerProtocol::Tls,
        ))
        .with_limits(Limits::default().with_max_connections_per_source(2 * CLIENTS));
    assert_eq!(config.limits.listen_backlog, 4096, "the default backlog");
    let gateway = Gateway::start(&config, None).await.unwrap();
    let addr = gateway.addrs()[0];

    let before = listen_drops();
    // On this one thread, every connect is issued before the gateway's accept loop runs again:
    // the whole burst lands in the accept queue at once.
    let mut clients = JoinSet::new();
    for _ in 0..CLIENTS {
        clients.spawn(async move {
            let mut tcp = TcpStream::connect(addr).await?;
            tcp.write_all(&client_hello(Some(b"denied.example")))
                .await?;
            let mut answer = Vec::new();
            tcp.read_to_end(&mut answer).await?;
            Ok::<Vec<u8>, std::io::Error>(answer)
        });
    }
    let mut served = 0;
    let all = async {
        while let Some(joined) = clients.join_next().await {
            let answer = joined.unwrap().expect("the client was served");
            assert_eq!(answer, Alert::UnrecognizedName.record().to_vec());
            served += 1;
        }
    };
    // A generous bound so that a hang fails instead of blocking CI; not a speed assertion.
    tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("every client was answered");
    assert_eq!(served, CLIENTS);
    assert_eq!(
        listen_drops() - before,
        0,
        "the kernel dropped SYNs of the burst (accept queue full)"
    );
    gateway.shutdown().await;
}
