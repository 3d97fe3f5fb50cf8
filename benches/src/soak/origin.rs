//! The driver's own servers: the HTTP origin and the upstream DNS server, on loopback.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, UdpSocket};

use super::SoakError;

/// What the upstream DNS server answers for every A query: a documentation address
/// (TEST-NET-1) that nothing connects to.
pub(crate) const UPSTREAM_ANSWER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 53));

fn bind_error(what: &str) -> impl FnOnce(std::io::Error) -> SoakError + '_ {
    move |source| SoakError::Bind {
        what: what.to_owned(),
        source,
    }
}

/// A free port on `ip` (bound and released: the gateway binds it next).
pub(crate) fn free_addr(ip: IpAddr, what: &str) -> Result<SocketAddr, SoakError> {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map_err(bind_error(what))
}

/// An HTTP origin on 127.0.0.1: answers every request with `http-origin host=<Host>` and
/// closes.
pub(crate) async fn http_origin() -> Result<SocketAddr, SoakError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(bind_error("the HTTP origin"))?;
    let addr = listener
        .local_addr()
        .map_err(bind_error("the HTTP origin"))?;
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let head = lnm_proxy::sim::read_request_head(&mut tcp).await;
                let host = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("host").then(|| v.trim().to_owned())
                    })
                    .unwrap_or_default();
                let body = format!("http-origin host={host}");
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tcp.write_all(response.as_bytes()).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    Ok(addr)
}

/// An upstream DNS server on 127.0.0.1 (UDP): every well-formed query gets NOERROR with
/// [`UPSTREAM_ANSWER`] (TTL 60); anything else is ignored.
pub(crate) async fn upstream_dns() -> Result<SocketAddr, SoakError> {
    let socket = UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(bind_error("the upstream DNS server"))?;
    let addr = socket
        .local_addr()
        .map_err(bind_error("the upstream DNS server"))?;
    let socket = Arc::new(socket);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            let Ok(query) = lnm_dns::Query::parse(buf[..n].to_vec()) else {
                continue;
            };
            let answer = query.answer(lnm_dns::Rcode::NOERROR, 60, &[UPSTREAM_ANSWER]);
            let _ = socket.send_to(answer.as_bytes(), from).await;
        }
    });
    Ok(addr)
}
