//! End-to-end test suites of lnm, and the helpers they share. Each file in `tests/` is one
//! integration binary per area:
//!
//! - `policy_hops.rs`: the shipped configurations, and the allowlist composed with hops as
//!   tower services over an in-process network;
//! - `proxy_chain.rs`: a 3-level chain on loopback (client → L3 → L4 → rustls origin) and the
//!   same chain in-process over `Memory` hops: allowed and denied names, HTTP, east-west;
//! - `interop.rs`: curl and `openssl s_client` through the chain;
//! - `tls_transparency.rs`: ClientHello shapes sent to rustls and `openssl s_server`, directly
//!   and through a level: the same answer both ways, except the refusals DESIGN lists.
//!
//! The helpers here build a test PKI (rcgen), TLS and HTTP origins that report what they saw,
//! proxy levels, and clients.

#![allow(missing_docs, clippy::missing_panics_doc)]

use std::net::SocketAddr;
use std::sync::{Arc, Once};

use lnm_core::Hop;
use lnm_core::hop::{Internal, MemoryNetwork};
use lnm_policy::AllowlistHandle;
use lnm_policy::config::ListenerProtocol;
use lnm_proxy::sim::{self, TestPki};
use lnm_proxy::{ConnLimits, Proxy, ProxyServer, ProxySettings};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A resolver that answers 127.0.0.1 for every name: "the internet" is this host.
pub struct Loopback;

#[async_trait::async_trait]
impl lnm_core::Resolve for Loopback {
    async fn resolve(
        &self,
        _name: &lnm_core::Name,
    ) -> Result<Vec<std::net::IpAddr>, lnm_core::Error> {
        Ok(vec![std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)])
    }
}

/// A top-level hop for tests where "the internet" is this host: resolves everything to
/// 127.0.0.1, with the confused-deputy guard (which refuses loopback) turned off.
pub fn loopback_direct() -> lnm_core::hop::Direct {
    lnm_core::hop::Direct::with_resolver(Loopback).refused_ranges([])
}

/// Fails the calling test with a precise message when `tool` is not on `PATH`: which test
/// needs it, which Debian package has it, and the command that installs it. `scripts/test.sh`
/// (the README's test command) installs every such tool first.
pub fn require_tool(tool: &str, package: &str, test: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()));
    assert!(
        found,
        "the test `{test}` drives `{tool}`, which is not on PATH: run `scripts/test.sh` (it \
         installs the test tools, as root) or `apt-get install {package}`"
    );
}

/// Logs to the test output once per binary (`RUST_LOG` picks the level; default `info`).
pub fn init_logging() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// The test PKI of lnm's simulation module: a CA and a certificate for some names.
pub type Pki = TestPki;

/// A CA and a certificate for `names` (wildcards allowed).
pub fn pki(names: &[&str]) -> Pki {
    TestPki::new(names).expect("test PKI")
}

/// A TLS origin on loopback answering `"{label} sni={sni} path={path}"` (see
/// [`lnm_proxy::sim::tls_origin`]).
pub async fn tls_origin(pki: &Pki, label: &'static str) -> SocketAddr {
    sim::tls_origin(pki, "127.0.0.1:0".parse().expect("address"), label)
        .await
        .expect("origin")
}

/// The same TLS origin on an in-memory network.
pub fn tls_origin_in_memory(pki: &Pki, net: &MemoryNetwork, addr: &str, label: &'static str) {
    sim::tls_origin_in_memory(pki, net, addr, label).expect("origin");
}

fn respond(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A plain HTTP origin answering `"http-origin host={Host}"`.
pub async fn http_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let head = sim::read_request_head(&mut tcp).await;
                let host = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("Host: ")
                            .or_else(|| l.strip_prefix("host: "))
                    })
                    .unwrap_or("-")
                    .to_owned();
                let _ = tcp
                    .write_all(&respond(&format!("http-origin host={host}")))
                    .await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    addr
}

/// One proxy listener of one level, serving on loopback.
pub struct Level {
    pub addr: SocketAddr,
    pub server: ProxyServer,
}

/// Starts a proxy listener on an ephemeral loopback port.
pub async fn level(
    allowlist: AllowlistHandle,
    external: impl Hop,
    internal: impl Hop,
    settings: ProxySettings,
) -> Level {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = ProxyServer::new(
        Proxy::builder(allowlist, settings)
            .external(external)
            .internal(internal)
            .build(),
        ConnLimits::default(),
    );
    let serving = server.clone();
    tokio::spawn(async move { serving.serve(listener).await });
    Level { addr, server }
}

/// TLS settings forwarding to `port`.
pub fn tls_settings(port: u16) -> ProxySettings {
    ProxySettings::new(ListenerProtocol::Tls, port)
}

/// An [`Internal`] hop with no entries.
pub fn no_internal() -> Internal {
    Internal::new()
}

/// Connects to `addr` with SNI `name`, sends `GET path` and returns the response body, or the
/// TLS/IO error as text (e.g. `received fatal alert: UnrecognizedName`).
pub async fn https_get(
    addr: SocketAddr,
    name: &str,
    path: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<String, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    https_get_over(tcp, name, path, config).await
}

/// Like [`https_get`] over an already connected stream.
pub async fn https_get_over<S>(
    io: S,
    name: &str,
    path: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<String, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let connector = tokio_rustls::TlsConnector::from(config);
    let server_name = ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
    let mut tls = connector
        .connect(server_name, io)
        .await
        .map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    // Origins close without close_notify sometimes; what was read is what counts.
    let _ = tls.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    Ok(text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or(text))
}

/// A TCP origin on loopback that echoes everything back (the first flight comes back as sent).
pub async fn echo_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// Sends raw bytes and returns the first bytes the other side answers (empty on close).
pub async fn first_reaction(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut out = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), tcp.read(&mut out))
        .await
        .expect("the proxy answered within 10 s")
        .unwrap_or(0);
    out.truncate(n);
    out
}

/// A minimal TLS 1.2/1.3 ClientHello record with the given raw SNI host name (or none).
pub fn client_hello(sni: Option<&[u8]>) -> Vec<u8> {
    let mut extensions = Vec::new();
    if let Some(name) = sni {
        let mut list = vec![0u8];
        list.extend_from_slice(&(name.len() as u16).to_be_bytes());
        list.extend_from_slice(name);
        let mut data = (list.len() as u16).to_be_bytes().to_vec();
        data.extend_from_slice(&list);
        extensions.extend_from_slice(&[0, 0]);
        extensions.extend_from_slice(&(data.len() as u16).to_be_bytes());
        extensions.extend_from_slice(&data);
    }
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    body.extend_from_slice(&extensions);
    let mut msg = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
    msg.extend_from_slice(&body);
    let mut record = vec![22, 3, 1, (msg.len() >> 8) as u8, msg.len() as u8];
    record.extend_from_slice(&msg);
    record
}
