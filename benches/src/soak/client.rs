//! One client of each [`Kind`], and how its outcome is classified.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use lnm_dns::{Query, Rcode, Response, Rtype};
use rustls::AlertDescription;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::time::Sleep;

use super::Kind;
use super::level::names;
use super::origin::UPSTREAM_ANSWER;

/// The address allowlisted clients come from.
pub(crate) const INSIDE: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The address outsiders come from (loopback, outside `sourceIpRange`).
pub(crate) const OUTSIDE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// What the gateway answers for allowlisted names.
pub(crate) const GATEWAY_ANSWER: IpAddr = INSIDE;

/// How one client ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// What the load asked for, and it was served.
    Success,
    /// What the load asked for, and it was refused as it should be.
    Refusal,
    /// Anything else: what happened.
    Unexpected(String),
}

/// What every client needs: where the gateway listens, the TLS client configuration, a
/// ClientHello for the slow clients.
pub(crate) struct Target {
    pub(crate) tls: SocketAddr,
    pub(crate) http: SocketAddr,
    pub(crate) dns: SocketAddr,
    pub(crate) connector: tokio_rustls::TlsConnector,
    pub(crate) hello: Vec<u8>,
}

impl Target {
    /// Runs one client of `kind` (not [`Kind::Reload`] or [`Kind::Admin`], which the driver
    /// runs itself).
    pub(crate) async fn run(&self, kind: Kind) -> Outcome {
        let pick = lnm_core::random_u64();
        match kind {
            Kind::TlsAllowed => {
                let name = if pick.is_multiple_of(2) {
                    names::TLS
                } else {
                    names::WILD
                };
                expect_served(self.tls_get(name, INSIDE, None).await, name)
            }
            Kind::TlsSlow => expect_served(
                self.tls_get(names::TLS, INSIDE, Some((150, Duration::from_millis(40))))
                    .await,
                names::TLS,
            ),
            Kind::TlsDenied => {
                let name = [names::DENIED, names::APEX, names::OTHER][(pick % 3) as usize];
                expect_alert(
                    self.tls_get(name, INSIDE, None).await,
                    AlertDescription::UnrecognisedName,
                )
            }
            Kind::TlsOutsider => expect_alert(
                self.tls_get(names::TLS, OUTSIDE, None).await,
                AlertDescription::AccessDenied,
            ),
            Kind::TlsSlowCut => self.slow_cut().await,
            Kind::TlsGarbage => self.garbage(self.tls, true).await,
            Kind::HttpAllowed => match self.http_get(names::HTTP).await {
                Ok(reply)
                    if reply.starts_with("HTTP/1.1 200")
                        && reply.ends_with(&format!("http-origin host={}", names::HTTP)) =>
                {
                    Outcome::Success
                }
                Ok(reply) => Outcome::Unexpected(format!("answer {:?}", first_line(&reply))),
                Err(e) => Outcome::Unexpected(format!("{e}")),
            },
            Kind::HttpDenied => {
                let name = if pick.is_multiple_of(2) {
                    names::DENIED
                } else {
                    names::OTHER
                };
                match self.http_get(name).await {
                    Ok(reply) if reply.starts_with("HTTP/1.1 403") => Outcome::Refusal,
                    Ok(reply) => Outcome::Unexpected(format!("answer {:?}", first_line(&reply))),
                    Err(e) => Outcome::Unexpected(format!("{e}")),
                }
            }
            Kind::HttpGarbage => self.garbage(self.http, false).await,
            Kind::DnsAllowed => {
                let name = if pick.is_multiple_of(2) {
                    names::TLS
                } else {
                    names::WILD_DNS
                };
                self.dns_expect(name, INSIDE, &[GATEWAY_ANSWER]).await
            }
            Kind::DnsUnlisted => {
                let name = format!("q{:x}.unlisted.example", pick);
                self.dns_expect(&name, INSIDE, &[UPSTREAM_ANSWER]).await
            }
            Kind::DnsOutsider => match self.dns(names::TLS, OUTSIDE).await {
                Ok(r) if r.rcode() == Some(Rcode::REFUSED) => Outcome::Refusal,
                Ok(r) => {
                    Outcome::Unexpected(format!("rcode {:?}, answers {:?}", r.rcode(), r.answers()))
                }
                Err(e) => Outcome::Unexpected(e.to_string()),
            },
            Kind::DnsGarbage => self.dns_garbage().await,
            Kind::Reload | Kind::Admin => Outcome::Unexpected(format!("{kind} is not a client")),
        }
    }

    /// A rustls handshake with `name` from `source` through the TLS listener, `GET /soak`, and
    /// the whole answer. `trickle`: the first flight goes out in pieces of that many bytes,
    /// that far apart.
    pub(crate) async fn tls_get(
        &self,
        name: &str,
        source: IpAddr,
        trickle: Option<(usize, Duration)>,
    ) -> io::Result<String> {
        let tcp = connect(self.tls, source).await?;
        let (chunk, delay) = trickle.unwrap_or((usize::MAX, Duration::ZERO));
        let stream = Trickle {
            inner: tcp,
            remaining: if trickle.is_some() { 4096 } else { 0 },
            chunk,
            delay,
            sleep: None,
        };
        let server_name = ServerName::try_from(name.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut tls = self.connector.connect(server_name, stream).await?;
        tls.write_all(format!("GET /soak HTTP/1.1\r\nHost: {name}\r\n\r\n").as_bytes())
            .await?;
        // rustls may hold the request's records while the stream is not writable: push them.
        tls.flush().await?;
        let mut out = Vec::new();
        tls.read_to_end(&mut out).await?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// A plain-HTTP request for `host` through the HTTP listener, and the whole answer.
    async fn http_get(&self, host: &str) -> io::Result<String> {
        let mut tcp = connect(self.http, INSIDE).await?;
        tcp.write_all(
            format!("GET /soak HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut out = Vec::new();
        tcp.read_to_end(&mut out).await?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// The ClientHello eight bytes a second: the gateway must cut it at its sniff timeout,
    /// long before the hello is complete.
    async fn slow_cut(&self) -> Outcome {
        let tcp = match connect(self.tls, INSIDE).await {
            Ok(tcp) => tcp,
            Err(e) => return Outcome::Unexpected(format!("connect: {e}")),
        };
        let (mut r, mut w) = tcp.into_split();
        let writer = async {
            for piece in self.hello.chunks(8) {
                w.write_all(piece).await?;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Ok::<_, io::Error>(())
        };
        let reader = async {
            let mut out = Vec::new();
            r.read_to_end(&mut out).await.map(|_| out)
        };
        let started = tokio::time::Instant::now();
        tokio::select! {
            written = writer => match written {
                Ok(()) => Outcome::Unexpected(format!(
                    "the whole hello ({} bytes over {:?}) was sent without a cut",
                    self.hello.len(),
                    started.elapsed()
                )),
                Err(e) if is_cut(&e) => Outcome::Refusal,
                Err(e) => Outcome::Unexpected(format!("write: {e}")),
            },
            read = reader => match read {
                Ok(out) if out.is_empty() || is_alerts(&out) => Outcome::Refusal,
                Ok(out) => Outcome::Unexpected(format!("answered {} bytes: {:?}", out.len(), &out[..out.len().min(16)])),
                Err(e) if is_cut(&e) => Outcome::Refusal,
                Err(e) => Outcome::Unexpected(format!("read: {e}")),
            },
        }
    }

    /// Random bytes, then end of stream: the answer must be TLS alerts (`tls`) or an HTTP
    /// 4xx, or nothing.
    async fn garbage(&self, addr: SocketAddr, tls: bool) -> Outcome {
        let mut tcp = match connect(addr, INSIDE).await {
            Ok(tcp) => tcp,
            Err(e) => return Outcome::Unexpected(format!("connect: {e}")),
        };
        let len = 1 + (lnm_core::random_u64() % 400) as usize;
        let bytes = random_bytes(len);
        if let Err(e) = tcp.write_all(&bytes).await {
            return if is_cut(&e) {
                Outcome::Refusal
            } else {
                Outcome::Unexpected(format!("write: {e}"))
            };
        }
        let _ = tcp.shutdown().await;
        let mut out = Vec::new();
        match tcp.read_to_end(&mut out).await {
            Err(e) if is_cut(&e) => Outcome::Refusal,
            Err(e) => Outcome::Unexpected(format!("read: {e}")),
            Ok(_) if out.is_empty() => Outcome::Refusal,
            Ok(_) if tls && is_alerts(&out) => Outcome::Refusal,
            Ok(_) if !tls && out.starts_with(b"HTTP/1.1 4") => Outcome::Refusal,
            Ok(_) => Outcome::Unexpected(format!(
                "{len} random bytes answered with {:?}",
                String::from_utf8_lossy(&out[..out.len().min(40)])
            )),
        }
    }

    /// An A query for `name` from `source`; the answer must be NOERROR with `expected`.
    async fn dns_expect(&self, name: &str, source: IpAddr, expected: &[IpAddr]) -> Outcome {
        match self.dns(name, source).await {
            Ok(r) if r.rcode() == Some(Rcode::NOERROR) && r.answers() == expected => {
                Outcome::Success
            }
            Ok(r) => Outcome::Unexpected(format!(
                "{name}: rcode {:?}, answers {:?}",
                r.rcode(),
                r.answers()
            )),
            Err(e) => Outcome::Unexpected(format!("{name}: {e}")),
        }
    }

    /// An A query for `name` over UDP from `source`, asked again once after 2 s of silence (as
    /// stub resolvers do), given up after 5 s more.
    pub(crate) async fn dns(&self, name: &str, source: IpAddr) -> io::Result<Response> {
        let query = Query::build(name, Rtype::A).map_err(io::Error::other)?;
        let socket = UdpSocket::bind((source, 0)).await?;
        let mut buf = vec![0u8; 4096];
        for wait in [Duration::from_secs(2), Duration::from_secs(5)] {
            socket.send_to(query.as_bytes(), self.dns).await?;
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                match tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await {
                    Err(_) => break,
                    Ok(Err(e)) => return Err(e),
                    Ok(Ok((n, from))) => {
                        let response = Response::new(buf[..n].to_vec());
                        if from == self.dns && response.id() == Some(query.id()) {
                            return Ok(response);
                        }
                    }
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no answer in 7 s (sent twice)",
        ))
    }

    /// Random bytes to the DNS port: no answer within 1 s, or one without addresses.
    async fn dns_garbage(&self) -> Outcome {
        let socket = match UdpSocket::bind((INSIDE, 0)).await {
            Ok(s) => s,
            Err(e) => return Outcome::Unexpected(format!("bind: {e}")),
        };
        let bytes = random_bytes(1 + (lnm_core::random_u64() % 120) as usize);
        if let Err(e) = socket.send_to(&bytes, self.dns).await {
            return Outcome::Unexpected(format!("send: {e}"));
        }
        let mut buf = vec![0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buf)).await {
            Err(_) => Outcome::Refusal,
            Ok(Err(e)) => Outcome::Unexpected(format!("recv: {e}")),
            Ok(Ok(n)) => {
                let response = Response::new(buf[..n].to_vec());
                if response.answers().is_empty() {
                    Outcome::Refusal
                } else {
                    Outcome::Unexpected(format!(
                        "garbage answered with addresses {:?}",
                        response.answers()
                    ))
                }
            }
        }
    }
}

/// The TLS origin's answer for `name` was read in full.
pub(crate) fn expect_served(result: io::Result<String>, name: &str) -> Outcome {
    match result {
        Ok(reply)
            if reply.starts_with("HTTP/1.1 200")
                && reply.ends_with(&format!("soak sni={name} path=/soak")) =>
        {
            Outcome::Success
        }
        Ok(reply) => Outcome::Unexpected(format!("{name}: answer {:?}", first_line(&reply))),
        Err(e) => Outcome::Unexpected(format!("{name}: {e}")),
    }
}

/// The handshake failed with `alert` from the gateway.
pub(crate) fn expect_alert(result: io::Result<String>, alert: AlertDescription) -> Outcome {
    match result {
        Err(e) if received_alert(&e) == Some(alert) => Outcome::Refusal,
        Err(e) => Outcome::Unexpected(format!("expected alert {alert:?}, got {e}")),
        Ok(reply) => Outcome::Unexpected(format!(
            "expected alert {alert:?}, served {:?}",
            first_line(&reply)
        )),
    }
}

/// The alert a rustls handshake error reports, if any.
fn received_alert(e: &io::Error) -> Option<AlertDescription> {
    match e.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(alert) => Some(*alert),
        _ => None,
    }
}

/// The peer closed or reset the connection under us.
fn is_cut(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof
    )
}

/// `bytes` are whole TLS alert records (`21, 3, x, 0, 2, level, description`).
fn is_alerts(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes.len().is_multiple_of(7)
        && bytes
            .chunks(7)
            .all(|r| r[0] == 21 && r[1] == 3 && r[3] == 0 && r[4] == 2)
}

fn first_line(text: &str) -> &str {
    let line = text.lines().next().unwrap_or("");
    &line[..line.len().min(120)]
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&lnm_core::random_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A TCP connection to `addr` from `source` (any port), without Nagle's delay so that
/// trickled pieces leave one by one.
async fn connect(addr: SocketAddr, source: IpAddr) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let tcp = socket.connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// A stream whose first `remaining` written bytes go out at most `chunk` at a time, `delay`
/// apart; reads and later writes pass through.
struct Trickle {
    inner: TcpStream,
    remaining: usize,
    chunk: usize,
    delay: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Trickle {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.remaining == 0 {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        if let Some(sleep) = this.sleep.as_mut() {
            ready!(sleep.as_mut().poll(cx));
            this.sleep = None;
        }
        let n = buf.len().min(this.chunk).min(this.remaining);
        let written = ready!(Pin::new(&mut this.inner).poll_write(cx, &buf[..n]))?;
        this.remaining -= written;
        if this.remaining > 0 {
            this.sleep = Some(Box::pin(tokio::time::sleep(this.delay)));
        }
        Poll::Ready(Ok(written))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A ClientHello for `name` as rustls sends it (for the slow clients that write it by hand).
pub(crate) fn client_hello(config: Arc<rustls::ClientConfig>, name: &str) -> io::Result<Vec<u8>> {
    let server_name = ServerName::try_from(name.to_owned())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut conn = rustls::ClientConnection::new(config, server_name).map_err(io::Error::other)?;
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello)?;
    }
    Ok(hello)
}
