//! PROXY protocol v2 with real neighbours: what lnm sends is read by nginx (`listen ...
//! proxy_protocol`) and HAProxy (`accept-proxy`) as parents, and lnm reads what HAProxy sends
//! (`send-proxy-v2`, no lnm hop count) as a child — the original client's address checked at
//! the far end each time. Needs `nginx` (with the stream module) and `haproxy`
//! (`scripts/test.sh` installs them).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lnm_core::hop::Parent;
use lnm_policy::Allowlist;
use lnm_policy::config::ListenerProtocol;
use lnm_proxy::{ConnLimits, ConnReport, Outcome, Proxy, ProxyServer, ProxySettings};
use lnm_tests::{client_hello, init_logging, require_tool};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::process::{Child, Command};

/// A free port on 127.0.0.1 (bound and released: the peer binds it next).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lnm-pp-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits until something accepts on `addr`.
async fn listening(addr: SocketAddr, peer: &mut Child) {
    for _ in 0..200 {
        if TcpStream::connect(addr).await.is_ok() {
            return;
        }
        if let Ok(Some(status)) = peer.try_wait() {
            panic!("the peer exited before listening on {addr}: {status}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nothing listens on {addr} after 5 s");
}

/// A client on `source` (a loopback address of its own, so the far end's answer is checkable).
async fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// An lnm level on loopback forwarding `protocol` connections to `parent` with a PROXY v2
/// header.
async fn lnm_child(parent: SocketAddr, protocol: ListenerProtocol) -> (SocketAddr, ProxyServer) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let allowlist = Allowlist::builder()
        .external("cloud.example")
        .unwrap()
        .build();
    let proxy = Proxy::builder(
        allowlist.into(),
        ProxySettings::new(protocol, parent.port()),
    )
    .external(Parent::new([parent]).send_proxy_protocol(true))
    .build();
    let server = ProxyServer::new(proxy, ConnLimits::default());
    let serving = server.clone();
    tokio::spawn(async move { serving.serve(listener).await });
    (addr, server)
}

/// Runs HAProxy in the foreground with `conf` and waits until it listens on 127.0.0.1:`port`.
async fn haproxy(name: &str, conf: &str, port: u16) -> (SocketAddr, Child) {
    let dir = scratch(name);
    std::fs::write(dir.join("haproxy.cfg"), conf).unwrap();
    let mut haproxy = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(dir.join("haproxy.cfg"))
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    listening(addr, &mut haproxy).await;
    (addr, haproxy)
}

#[tokio::test]
async fn nginx_as_parent_reads_the_original_client_from_lnm() {
    require_tool(
        "nginx",
        "nginx-light libnginx-mod-stream",
        "nginx_as_parent_reads_the_original_client_from_lnm",
    );
    init_logging();
    let port = free_port();
    let dir = scratch("nginx");
    // The parent answers every connection with the client address of its PROXY header.
    let conf = format!(
        "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n\
         daemon off;\nmaster_process off;\nworker_processes 1;\n\
         error_log {dir}/error.log;\npid {dir}/nginx.pid;\n\
         events {{ worker_connections 64; }}\n\
         stream {{ server {{ listen 127.0.0.1:{port} proxy_protocol; \
         return \"$proxy_protocol_addr:$proxy_protocol_port\\n\"; }} }}\n",
        dir = dir.display()
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let mut nginx = Command::new("nginx")
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let parent: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    listening(parent, &mut nginx).await;

    let (child, _server) = lnm_child(parent, ListenerProtocol::Tls).await;
    let mut client = connect_from("127.0.0.77", child).await;
    let client_addr = client.local_addr().unwrap();
    client
        .write_all(&client_hello(Some(b"cloud.example")))
        .await
        .unwrap();
    let mut seen = String::new();
    tokio::time::timeout(Duration::from_secs(5), client.read_to_string(&mut seen))
        .await
        .expect("nginx answered within 5 s")
        .unwrap();
    assert_eq!(seen.trim(), client_addr.to_string(), "what nginx saw");
}

#[tokio::test]
async fn haproxy_as_parent_reads_the_original_client_from_lnm() {
    require_tool(
        "haproxy",
        "haproxy",
        "haproxy_as_parent_reads_the_original_client_from_lnm",
    );
    init_logging();
    let port = free_port();
    let conf = format!(
        "defaults\n  mode http\n  timeout connect 5s\n  timeout client 5s\n  timeout server 5s\n\
         frontend parent\n  bind 127.0.0.1:{port} accept-proxy\n  \
         http-request return status 200 content-type text/plain lf-string \"%[src]:%[src_port]\"\n"
    );
    let (parent, _haproxy) = haproxy("haproxy-parent", &conf, port).await;

    // Plain HTTP through an lnm HTTP listener: lnm sniffs the Host, HAProxy answers with `src`.
    let (child, _server) = lnm_child(parent, ListenerProtocol::Http).await;
    let mut client = connect_from("127.0.0.78", child).await;
    let client_addr = client.local_addr().unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: cloud.example\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), client.read_to_string(&mut response))
        .await
        .expect("HAProxy answered within 5 s")
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert_eq!(body.trim(), client_addr.to_string(), "what HAProxy saw");
}

#[tokio::test]
async fn lnm_as_parent_reads_the_original_client_from_haproxy() {
    require_tool(
        "haproxy",
        "haproxy",
        "lnm_as_parent_reads_the_original_client_from_haproxy",
    );
    init_logging();
    // The lnm parent trusts PROXY headers from HAProxy (127.0.0.1) and has no next hop: the
    // connection is admitted and reported, which is what is checked.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lnm_addr = listener.local_addr().unwrap();
    let reports: Arc<Mutex<Vec<ConnReport>>> = Arc::default();
    let sink = reports.clone();
    let allowlist = Allowlist::builder()
        .external("cloud.example")
        .unwrap()
        .source_range("127.0.0.79/32".parse().unwrap())
        .build();
    let settings = ProxySettings::new(ListenerProtocol::Tls, 443)
        .accept_proxy_protocol(vec!["127.0.0.1/32".parse().unwrap()]);
    let proxy = Proxy::builder(allowlist.into(), settings)
        .observer(Arc::new(move |r: &ConnReport| {
            sink.lock().unwrap().push(r.clone())
        }))
        .build();
    let server = ProxyServer::new(proxy, ConnLimits::default());
    let serving = server.clone();
    tokio::spawn(async move { serving.serve(listener).await });

    let port = free_port();
    let conf = format!(
        "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 5s\n  timeout server 5s\n\
         frontend child\n  bind 127.0.0.1:{port}\n  default_backend up\n\
         backend up\n  server lnm {lnm_addr} send-proxy-v2\n"
    );
    let (child, _haproxy) = haproxy("haproxy-child", &conf, port).await;

    let mut client = connect_from("127.0.0.79", child).await;
    let client_addr = client.local_addr().unwrap();
    client
        .write_all(&client_hello(Some(b"cloud.example")))
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut answer)).await;
    let mut report = None;
    for _ in 0..200 {
        report = reports
            .lock()
            .unwrap()
            .iter()
            .find(|r| r.server_name.as_deref() == Some("cloud.example"))
            .cloned();
        if report.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let report = report.expect("lnm reported the connection");
    // The original client, admitted by a source range that only it matches, no lnm gateway
    // before: HAProxy's header has no hop count.
    assert_eq!(report.client, client_addr);
    assert_eq!(report.hops, 0);
    assert!(
        matches!(report.outcome, Outcome::ConnectFailed(_)),
        "admitted, then no next hop: {:?}",
        report.outcome
    );
}
