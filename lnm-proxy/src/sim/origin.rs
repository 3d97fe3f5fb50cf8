//! A TLS origin that reports what it saw: `"{label} sni={sni} path={path}"`, or `n` bytes of
//! `x` for `GET /bytes/n`.

use std::io;
use std::net::SocketAddr;

use lnm_core::hop::MemoryNetwork;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use super::{SimError, TestPki};

/// Reads an HTTP/1.x request head (up to the blank line, at most 16 KiB).
pub async fn read_request_head<S: AsyncRead + Unpin>(s: &mut S) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16384 {
        match s.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

async fn serve_one<S>(tls: tokio_rustls::server::TlsStream<S>, label: &'static str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut tls = tls;
    let sni = tls.get_ref().1.server_name().unwrap_or("-").to_owned();
    let head = read_request_head(&mut tls).await;
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let body = match path.strip_prefix("/bytes/").map(str::parse::<usize>) {
        Some(Ok(n)) => "x".repeat(n.min(1 << 30)),
        _ => format!("{label} sni={sni} path={path}"),
    };
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tls.write_all(response.as_bytes()).await;
    let _ = tls.shutdown().await;
}

/// Starts a TLS origin on `addr` (port 0: any) and returns where it listens.
pub async fn tls_origin(
    pki: &TestPki,
    addr: SocketAddr,
    label: &'static str,
) -> Result<SocketAddr, SimError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| SimError::Bind {
            what: format!("origin {addr}"),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| SimError::Bind {
        what: format!("origin {addr}"),
        source,
    })?;
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    serve_one(tls, label).await;
                }
            });
        }
    });
    Ok(bound)
}

/// Starts the same TLS origin on an in-memory address.
pub fn tls_origin_in_memory(
    pki: &TestPki,
    net: &MemoryNetwork,
    addr: &str,
    label: &'static str,
) -> Result<(), SimError> {
    let mut listener = net.bind(addr).map_err(|e| SimError::Bind {
        what: format!("in-memory origin {addr}"),
        source: io::Error::other(e),
    })?;
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server.clone());
    tokio::spawn(async move {
        while let Some((pipe, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(pipe).await {
                    serve_one(tls, label).await;
                }
            });
        }
    });
    Ok(())
}
