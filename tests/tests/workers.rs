//! Thread-per-core workers: every worker accepts on its own `SO_REUSEPORT` copy of each
//! listener and of the DNS socket and serves what it accepted on its own thread, while the
//! connection limits stay exact across workers, reload reaches every worker and the shutdown
//! drain covers them all.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lnm_core::hop::SharedHop;
use lnm_core::{ConnInfo, Hop, Stream, Target, async_trait};
use lnm_dns::{Query, Response, Rtype};
use lnm_policy::Config;
use lnm_proxy::Gateway;
use lnm_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const WORKERS: usize = 2;

fn config(allowed: &str, origin_port: u16, max_connections: usize) -> Config {
    let yaml = format!(
        "level: 4\nworkers: {WORKERS}\n\
         allowList:\n  domains:\n    - {{destinationUrl: {allowed}, destinationType: external}}\n\
         listeners: [{{bind: \"127.0.0.1:0\", protocol: tls, destinationPort: {origin_port}}}]\n\
         dns: {{bind: \"127.0.0.1:0\", answerIpv4: [10.4.0.1]}}\n\
         resolver: {{hosts: {{a.example: 127.0.0.1, b.example: 127.0.0.1}}}}\n\
         limits: {{maxConnections: {max_connections}}}\n"
    );
    Config::parse(&yaml, "workers-test").unwrap().config
}

/// Wraps a hop and notes the thread each connection is opened on.
struct Threads {
    inner: SharedHop,
    seen: Arc<Mutex<BTreeSet<String>>>,
}

#[async_trait]
impl Hop for Threads {
    async fn connect(&self, target: &Target, info: &ConnInfo) -> Result<Stream, lnm_core::Error> {
        let name = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_owned();
        self.seen.lock().unwrap().insert(name);
        self.inner.connect(target, info).await
    }
}

/// Opens a connection for `sni` and waits for its echo: the connection holds a slot until
/// dropped.
async fn held(proxy: SocketAddr, sni: &str) -> TcpStream {
    let hello = client_hello(Some(sni.as_bytes()));
    let mut tcp = TcpStream::connect(proxy).await.unwrap();
    tcp.write_all(&hello).await.unwrap();
    let mut back = vec![0u8; hello.len()];
    tokio::time::timeout(Duration::from_secs(10), tcp.read_exact(&mut back))
        .await
        .expect("echoed within 10 s")
        .unwrap();
    assert_eq!(back, hello);
    tcp
}

/// Sockets bound on `port` in one of `/proc/net/{tcp,udp}` (TCP: listening ones only).
fn bound_on(table: &str, port: u16) -> usize {
    let text = std::fs::read_to_string(format!("/proc/net/{table}")).unwrap();
    let port = format!(":{port:04X}");
    text.lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields[1].ends_with(&port) && (table != "tcp" || fields[3] == "0A")
        })
        .count()
}

#[tokio::test]
async fn workers_share_the_load_and_the_limits() {
    init_logging();
    let origin = echo_origin().await;
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let noted = seen.clone();
    let max = 24;
    let gateway = Gateway::builder(config("a.example", origin.port(), max))
        .wrap_hops(move |_route, inner| {
            Arc::new(Threads {
                inner,
                seen: noted.clone(),
            })
        })
        .start()
        .await
        .unwrap();
    assert_eq!(gateway.workers(), WORKERS);
    let proxy = gateway.addrs()[0];
    assert_eq!(
        bound_on("tcp", proxy.port()),
        WORKERS,
        "one listener per worker"
    );

    // Connections from many source ports are spread over the workers' sockets by the kernel;
    // each is served on the thread of the worker that accepted it.
    let mut open = Vec::new();
    for _ in 0..max {
        open.push(held(proxy, "a.example").await);
    }
    let threads = seen.lock().unwrap().clone();
    assert_eq!(threads.len(), WORKERS, "connections ran on {threads:?}");
    assert!(
        threads.iter().any(|t| t.starts_with("lnm-worker-")),
        "{threads:?}"
    );

    // The limit counts every worker's connections: whichever worker accepts the next one
    // closes it at once, before reading.
    for _ in 0..8 {
        let mut refused = TcpStream::connect(proxy).await.unwrap();
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(10), refused.read(&mut buf))
            .await
            .expect("closed within 10 s")
            .unwrap_or(0);
        assert_eq!(n, 0, "over the limit of {max}, the connection is closed");
    }
    open.truncate(max - 4);
    // Slots freed on any worker are usable from any worker.
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..4 {
        open.push(held(proxy, "a.example").await);
    }
    drop(open);
    assert_eq!(gateway.shutdown().await, 0);
}

#[tokio::test]
async fn reload_reaches_every_worker() {
    init_logging();
    let origin = echo_origin().await;
    let mut gateway = Gateway::start(&config("a.example", origin.port(), 100), None)
        .await
        .unwrap();
    let proxy = gateway.addrs()[0];
    let pending = gateway.reload(config("b.example", origin.port(), 100));
    assert!(pending.is_complete(), "{pending:?}");
    // Enough connections that both workers' sockets take some (the kernel hashes the source
    // port): every one follows the new allowlist.
    for _ in 0..32 {
        assert_eq!(
            first_reaction(proxy, &client_hello(Some(b"a.example"))).await,
            lnm_proxy::Alert::UnrecognizedName.record()
        );
        drop(held(proxy, "b.example").await);
    }
    // A different number of workers needs a restart.
    let pending = gateway.reload(config("b.example", origin.port(), 100).with_workers(1));
    assert!(
        pending
            .needs_restart
            .contains(&lnm_proxy::NeedsRestart::Workers),
        "{pending:?}"
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn every_worker_answers_dns() {
    init_logging();
    let gateway = Gateway::start(&config("a.example", 443, 100), None)
        .await
        .unwrap();
    let dns = gateway.dns_addr().unwrap();
    assert_eq!(
        bound_on("udp", dns.port()),
        WORKERS,
        "one UDP socket per worker"
    );
    assert_eq!(
        bound_on("tcp", dns.port()),
        WORKERS,
        "one TCP listener per worker"
    );
    // Clients on many source ports land on every worker's socket; all are answered.
    for i in 0..32u16 {
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let query = Query::build("a.example", Rtype::A).unwrap();
        let mut bytes = query.as_bytes().to_vec();
        bytes[..2].copy_from_slice(&i.to_be_bytes());
        client.send_to(&bytes, dns).await.unwrap();
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut buf))
            .await
            .expect("answered within 5 s")
            .unwrap();
        let answer = Response::new(buf[..n].to_vec());
        assert_eq!(answer.id(), Some(i));
        assert_eq!(
            answer.answers(),
            vec!["10.4.0.1".parse::<std::net::IpAddr>().unwrap()]
        );
    }
    gateway.shutdown().await;
}

#[tokio::test]
async fn the_drain_covers_every_worker() {
    init_logging();
    let origin = echo_origin().await;
    let mut config = config("a.example", origin.port(), 100);
    config.timeouts.shutdown_drain = Duration::from_millis(200);
    let gateway = Gateway::start(&config, None).await.unwrap();
    let proxy = gateway.addrs()[0];
    let mut open = Vec::new();
    for _ in 0..16 {
        open.push(held(proxy, "a.example").await);
    }
    // Every open connection, on whichever worker, is waited for and then closed.
    assert_eq!(gateway.shutdown().await, 16);
    for mut tcp in open {
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .expect("closed within 5 s")
            .unwrap_or(0);
        assert_eq!(n, 0);
    }
}
