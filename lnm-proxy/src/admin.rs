//! The admin HTTP endpoint: `GET /metrics` (Prometheus text), `/healthz`, `/readyz`.
//!
//! The libraries record metrics through the `metrics` facade; what `/metrics` returns is
//! rendered by the application's exporter, handed in as a function, so this crate does not pick
//! one.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Renders the metrics in Prometheus text format.
pub type RenderMetrics = Arc<dyn Fn() -> String + Send + Sync>;

/// A running admin endpoint.
#[derive(Debug)]
pub struct Admin {
    addr: SocketAddr,
    ready: Arc<AtomicBool>,
    stop: CancellationToken,
}

impl Admin {
    /// Binds `addr` and serves until dropped or stopped. `/readyz` answers 503 until
    /// [`set_ready`](Self::set_ready).
    pub async fn start(addr: SocketAddr, render: RenderMetrics) -> io::Result<Admin> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on admin {addr}: {e}")))?;
        let addr = listener.local_addr()?;
        let ready = Arc::new(AtomicBool::new(false));
        let stop = CancellationToken::new();
        let (is_ready, stopped) = (ready.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = stopped.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let (render, ready) = (render.clone(), is_ready.clone());
                tokio::spawn(async move {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(5), handle(stream, render, ready))
                            .await;
                });
            }
        });
        tracing::info!(%addr, "admin endpoint listening (/metrics, /healthz, /readyz)");
        Ok(Admin { addr, ready, stop })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Marks the gateway ready (or not) for `/readyz`.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn handle(
    mut stream: TcpStream,
    render: RenderMetrics,
    ready: Arc<AtomicBool>,
) -> io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let path = loop {
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                if request.method != Some("GET") {
                    break None;
                }
                break request
                    .path
                    .map(|p| p.split('?').next().unwrap_or(p).to_owned());
            }
            Ok(httparse::Status::Partial) if buf.len() < 8192 => continue,
            _ => break None,
        }
    };
    let (status, content_type, body) = match path.as_deref() {
        Some("/metrics") => ("200 OK", "text/plain; version=0.0.4", render()),
        Some("/healthz") => ("200 OK", "text/plain", "ok\n".to_owned()),
        Some("/readyz") if ready.load(Ordering::SeqCst) => {
            ("200 OK", "text/plain", "ready\n".to_owned())
        }
        Some("/readyz") => (
            "503 Service Unavailable",
            "text/plain",
            "not ready\n".to_owned(),
        ),
        Some(_) => ("404 Not Found", "text/plain", "not found\n".to_owned()),
        None => (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_owned(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
