//! A user-written [`Hop`]: reach the parent level through an HTTP `CONNECT` proxy (a common
//! corporate egress), with a log line per connection — then run it in a real proxy.
//!
//! ```sh
//! cargo run -p lnm-examples --example custom_hop
//! ```
//!
//! The example starts, on loopback: a tiny HTTP CONNECT proxy, a TLS origin, and an lnm proxy
//! whose external hop is `ConnectHop`. A TLS client then fetches through the whole path, and
//! the example checks that the bytes arrived unchanged (exit 0) or explains what failed.
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Instant;

use lnm_core::{ConnInfo, Error, Hop, Stream, Target};
use lnm_policy::Allowlist;
use lnm_policy::config::ListenerProtocol;
use lnm_proxy::sim::{TestPki, tls_origin};
use lnm_proxy::{ConnLimits, Proxy, ProxyServer, ProxySettings};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Opens each connection with `CONNECT host:port` through an HTTP proxy.
struct ConnectHop {
    proxy: SocketAddr,
}

#[lnm_core::async_trait]
impl Hop for ConnectHop {
    async fn connect(&self, target: &Target, info: &ConnInfo) -> Result<Stream, Error> {
        let started = Instant::now();
        let io_err = |e: std::io::Error| Error::Connect {
            target: target.to_string(),
            attempts: vec![(self.proxy, e)],
        };
        let mut tcp = TcpStream::connect(self.proxy).await.map_err(io_err)?;
        let request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.map_err(io_err)?;
        // Read the status line and headers up to the blank line, byte by byte so that no byte
        // of the tunnel is consumed.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let byte = tcp.read_u8().await.map_err(io_err)?;
            head.push(byte);
            if head.len() > 8192 {
                return Err(io_err(std::io::Error::other(
                    "CONNECT response head too long",
                )));
            }
        }
        let status = String::from_utf8_lossy(&head);
        if !status.starts_with("HTTP/1.1 200") && !status.starts_with("HTTP/1.0 200") {
            let line = status.lines().next().unwrap_or_default().to_owned();
            return Err(io_err(std::io::Error::other(format!(
                "CONNECT refused: {line}"
            ))));
        }
        println!(
            "  hop: CONNECT {target} for {} took {:?}",
            info.client,
            started.elapsed()
        );
        Ok(Stream::Tcp(tcp))
    }
}

/// A minimal CONNECT proxy that dials 127.0.0.1 on the requested port (for the example only).
async fn connect_proxy() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut client = BufReader::new(client);
                let mut line = String::new();
                client.read_line(&mut line).await?;
                let port: u16 = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|authority| authority.rsplit_once(':'))
                    .and_then(|(_, port)| port.parse().ok())
                    .unwrap_or(443);
                loop {
                    let mut header = String::new();
                    if client.read_line(&mut header).await? <= 2 {
                        break;
                    }
                }
                let mut upstream = TcpStream::connect(("127.0.0.1", port)).await?;
                client
                    .get_mut()
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await?;
                tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
                Ok::<(), std::io::Error>(())
            });
        }
    });
    Ok(addr)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("custom_hop: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let pki = TestPki::new(&["management.azure.com"])?;
    let origin = tls_origin(&pki, "127.0.0.1:0".parse()?, "origin").await?;
    let egress = connect_proxy().await?;
    println!("origin {origin}, CONNECT proxy {egress}");

    let allowlist = Allowlist::builder()
        .external("management.azure.com")?
        .build();
    let settings = ProxySettings::new(ListenerProtocol::Tls, origin.port()).level(4);
    let proxy = Proxy::builder(allowlist.into(), settings)
        .external(ConnectHop { proxy: egress })
        .internal(lnm_core::hop::Internal::new())
        .build();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let lnm = listener.local_addr()?;
    let server = ProxyServer::new(proxy, ConnLimits::default());
    let serving = server.clone();
    tokio::spawn(async move { serving.serve(listener).await });
    println!("lnm proxy {lnm} -> ConnectHop -> CONNECT proxy -> origin");

    let tcp = TcpStream::connect(lnm).await?;
    let connector = pki.connector();
    let mut tls = connector
        .connect("management.azure.com".try_into()?, tcp)
        .await?;
    tls.write_all(
        b"GET /via-connect HTTP/1.1\r\nHost: management.azure.com\r\nConnection: close\r\n\r\n",
    )
    .await?;
    let mut response = String::new();
    let _ = tls.read_to_string(&mut response).await;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    println!("  client got: {body:?}");
    if body != "origin sni=management.azure.com path=/via-connect" {
        return Err(format!("unexpected answer {response:?}").into());
    }
    println!("ok: the TLS session went end to end through the custom hop");
    Ok(())
}
