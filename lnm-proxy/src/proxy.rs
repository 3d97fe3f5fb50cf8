//! [`Proxy`]: one connection from accept to close — sniff, decide, forward the untouched bytes.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lnm_core::hop::SharedHop;
use lnm_core::proxy_header::{Decoded, ProxyHeader};
use lnm_core::{ConnInfo, Hop, Protocol, Stream, Target};
use lnm_policy::config::ListenerProtocol;
use lnm_policy::{AllowlistHandle, BoxPolicy, Reason, Request, Route, Rule};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::ProxySettings;
use crate::admission::{
    Arrival, Refusal, Sniffed, admit, admit_arrival, guess_protocol, refuse_connect,
    refuse_connect_timeout, refuse_unsniffed,
};
use crate::relay::{RelayEnd, relay};
use crate::sniff::{HttpSniffer, Sniff, SniffError, TlsSniffer};

/// The first read of a connection; the buffer grows only for hellos that need it.
const FIRST_READ: usize = 2048;

/// What happened to one connection: the fields of its log line.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnReport {
    /// The client.
    pub client: SocketAddr,
    /// Where it arrived.
    pub local: SocketAddr,
    /// How many lnm gateways it passed before this one (from a child's PROXY v2 header).
    pub hops: u8,
    /// TLS, HTTP, or unknown when sniffing failed early.
    pub protocol: Protocol,
    /// The sniffed server name (lossy text, for logs), if any.
    pub server_name: Option<String>,
    /// The destination port.
    pub port: u16,
    /// The outcome.
    pub outcome: Outcome,
    /// The route, when allowed.
    pub route: Option<Route>,
    /// The rule that allowed it.
    pub rule: Option<Arc<Rule>>,
    /// Bytes client → upstream (the sniffed bytes included).
    pub bytes_up: u64,
    /// Bytes upstream → client.
    pub bytes_down: u64,
    /// From accept to close.
    pub duration: Duration,
}

/// How a connection ended.
///
/// Errors are kept as typed sources (shared, so that a report stays `Clone`): match on
/// `e.kind()` of an I/O error, or on the variant of a hop's [`lnm_core::Error`]. Two outcomes
/// are equal when they are the same variant with errors of the same text.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Outcome {
    /// Allowed and relayed until both sides closed.
    Closed,
    /// Allowed, relayed, then closed for inactivity.
    IdleTimeout,
    /// Allowed, relayed, then a read or write failed (or replaying the hello to the next hop).
    RelayError(Arc<std::io::Error>),
    /// Denied by the allowlist.
    Denied(Reason),
    /// The hello was invalid.
    BadHello(SniffError),
    /// No complete hello within the sniff timeout.
    SniffTimeout,
    /// Reading the hello failed.
    ReadError(Arc<std::io::Error>),
    /// Allowed, but the next hop could not be reached.
    ConnectFailed(Arc<lnm_core::Error>),
    /// Allowed, but the next hop did not answer within the connect timeout.
    ConnectTimeout {
        /// The timeout that elapsed.
        after: Duration,
    },
    /// The policy service failed (an error of an application's policy layer): refused.
    PolicyFailed(Arc<dyn std::error::Error + Send + Sync>),
    /// A child gateway's PROXY v2 header was missing or invalid.
    BadProxyHeader(&'static str),
    /// The connection already passed `limits.maxHops` gateways: a loop, or a chain too long.
    TooManyHops {
        /// Gateways passed before this one.
        hops: u8,
    },
}

impl PartialEq for Outcome {
    fn eq(&self, other: &Self) -> bool {
        use Outcome as O;
        match (self, other) {
            (O::Closed, O::Closed)
            | (O::IdleTimeout, O::IdleTimeout)
            | (O::SniffTimeout, O::SniffTimeout) => true,
            (O::RelayError(a), O::RelayError(b)) | (O::ReadError(a), O::ReadError(b)) => {
                a.kind() == b.kind() && a.to_string() == b.to_string()
            }
            (O::ConnectFailed(a), O::ConnectFailed(b)) => a.to_string() == b.to_string(),
            (O::PolicyFailed(a), O::PolicyFailed(b)) => a.to_string() == b.to_string(),
            (O::Denied(a), O::Denied(b)) => a == b,
            (O::BadHello(a), O::BadHello(b)) => a == b,
            (O::ConnectTimeout { after: a }, O::ConnectTimeout { after: b }) => a == b,
            (O::BadProxyHeader(a), O::BadProxyHeader(b)) => a == b,
            (O::TooManyHops { hops: a }, O::TooManyHops { hops: b }) => a == b,
            _ => false,
        }
    }
}

impl Eq for Outcome {}

impl Outcome {
    /// Whether the connection was allowed (whatever happened next).
    pub fn is_allowed(&self) -> bool {
        matches!(
            self,
            Outcome::Closed
                | Outcome::IdleTimeout
                | Outcome::RelayError(_)
                | Outcome::ConnectFailed(_)
                | Outcome::ConnectTimeout { .. }
        )
    }

    /// A stable snake_case label: the reason of a denial or the way it ended.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Closed => "closed",
            Outcome::IdleTimeout => "idle_timeout",
            Outcome::RelayError(_) => "relay_error",
            Outcome::Denied(reason) => reason.as_str(),
            Outcome::BadHello(e) => e.as_str(),
            Outcome::SniffTimeout => "sniff_timeout",
            Outcome::ReadError(_) => "read_error",
            Outcome::ConnectFailed(_) | Outcome::ConnectTimeout { .. } => "connect_failed",
            Outcome::PolicyFailed(_) => "policy_failed",
            Outcome::BadProxyHeader(_) => "bad_proxy_header",
            Outcome::TooManyHops { .. } => "too_many_hops",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Closed => f.write_str("closed"),
            Outcome::IdleTimeout => f.write_str("closed after the idle timeout"),
            Outcome::RelayError(e) => write!(f, "relay failed: {e}"),
            Outcome::Denied(reason) => write!(f, "denied: {reason}"),
            Outcome::BadHello(e) => write!(f, "invalid hello: {e}"),
            Outcome::SniffTimeout => f.write_str("no complete hello within the sniff timeout"),
            Outcome::ReadError(e) => write!(f, "reading the hello failed: {e}"),
            Outcome::ConnectFailed(e) => write!(f, "next hop unreachable: {e}"),
            Outcome::ConnectTimeout { after } => {
                write!(f, "next hop unreachable: no connection within {after:?}")
            }
            Outcome::PolicyFailed(e) => write!(f, "the policy could not decide: {e}"),
            Outcome::BadProxyHeader(e) => write!(f, "child gateway's PROXY header rejected: {e}"),
            Outcome::TooManyHops { hops } => write!(
                f,
                "refused after {hops} gateways: a loop between gateways, or a chain longer than maxHops"
            ),
        }
    }
}

/// The sniffing forward proxy of one listener: sniffs the server name, asks the policy,
/// and forwards the untouched bytes through the hop of the decided route.
///
/// Built with [`Proxy::builder`]; cheap to share (`Arc`); one instance serves every connection
/// of its listener. What it decides is decided by the pure functions of
/// [`admission`](crate::admission); the proxy reads, calls them and acts.
///
/// ```
/// use lnm_core::hop::{Internal, Parent};
/// use lnm_policy::{Allowlist, config::ListenerProtocol};
/// use lnm_proxy::{Proxy, ProxySettings};
///
/// let allowlist = Allowlist::builder().external("*.blob.core.windows.net").unwrap().build();
/// let proxy = Proxy::builder(allowlist.into(), ProxySettings::new(ListenerProtocol::Tls, 443))
///     .external(Parent::new(["10.4.0.1:443".parse().unwrap()]))
///     .internal(Internal::new())
///     .build();
/// # let _ = proxy;
/// ```
#[derive(Clone)]
pub struct Proxy {
    policy: BoxPolicy,
    allowlist: AllowlistHandle,
    external: SharedHop,
    internal: SharedHop,
    settings: ProxySettings,
    observer: Option<Observer>,
}

/// Called with the report of every finished connection (after it is logged): for tests,
/// demos and custom accounting.
pub type Observer = Arc<dyn Fn(&ConnReport) + Send + Sync>;

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("settings", &self.settings)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Proxy`]: the allowlist and the listener's settings, then the parts that differ
/// from the defaults.
pub struct ProxyBuilder {
    allowlist: AllowlistHandle,
    settings: ProxySettings,
    policy: Option<BoxPolicy>,
    external: Option<SharedHop>,
    internal: Option<SharedHop>,
    observer: Option<Observer>,
}

impl fmt::Debug for ProxyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyBuilder")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl ProxyBuilder {
    /// Decides with `policy` instead of the plain allowlist: any decision service, such as
    /// [`Policy`](lnm_policy::Policy) under the application's own tower layers (see
    /// [`BoxPolicy`]). The allowlist still refuses sources outside its ranges before a byte of
    /// the hello is read.
    pub fn policy(mut self, policy: impl Into<BoxPolicy>) -> Self {
        self.policy = Some(policy.into());
        self
    }

    /// Forwards external routes through `hop`: a [`Parent`](lnm_core::hop::Parent) below the
    /// top level, a [`Direct`](lnm_core::hop::Direct) at the top, or the application's own.
    /// Default: none (external routes fail as unreachable).
    pub fn external(self, hop: impl Hop) -> Self {
        self.external_shared(Arc::new(hop))
    }

    /// Like [`external`](Self::external), with a hop that is already shared (one hop for every
    /// listener of a gateway).
    pub fn external_shared(mut self, hop: SharedHop) -> Self {
        self.external = Some(hop);
        self
    }

    /// Forwards internal (east-west) routes through `hop`, usually an
    /// [`Internal`](lnm_core::hop::Internal) map. Default: an empty map.
    pub fn internal(self, hop: impl Hop) -> Self {
        self.internal_shared(Arc::new(hop))
    }

    /// Like [`internal`](Self::internal), with a hop that is already shared.
    pub fn internal_shared(mut self, hop: SharedHop) -> Self {
        self.internal = Some(hop);
        self
    }

    /// Calls `observer` with the report of every finished connection.
    pub fn observer(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The proxy.
    pub fn build(self) -> Proxy {
        Proxy {
            policy: self
                .policy
                .unwrap_or_else(|| BoxPolicy::allowlist(self.allowlist.clone())),
            allowlist: self.allowlist,
            external: self.external.unwrap_or_else(|| Arc::new(NoRoute)),
            internal: self
                .internal
                .unwrap_or_else(|| Arc::new(lnm_core::hop::Internal::new())),
            settings: self.settings,
            observer: self.observer,
        }
    }
}

/// The external hop of a proxy built without one.
struct NoRoute;

#[lnm_core::async_trait]
impl Hop for NoRoute {
    async fn connect(&self, _: &Target, _: &ConnInfo) -> Result<Stream, lnm_core::Error> {
        Err(lnm_core::Error::NoDestination { hop: "external" })
    }
}

impl Proxy {
    /// Starts building the proxy of a listener with `settings`, checking `allowlist`.
    pub fn builder(allowlist: AllowlistHandle, settings: ProxySettings) -> ProxyBuilder {
        ProxyBuilder {
            allowlist,
            settings,
            policy: None,
            external: None,
            internal: None,
            observer: None,
        }
    }

    /// The same proxy, calling `observer` with the report of every finished connection.
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The settings.
    pub fn settings(&self) -> &ProxySettings {
        &self.settings
    }

    /// Handles one accepted connection to the end and returns its report (already logged).
    ///
    /// Everything logged while the connection lasts carries the span `conn` (client,
    /// listener address, level).
    pub async fn serve(&self, mut io: Stream, client: SocketAddr, local: SocketAddr) -> ConnReport {
        let started = Instant::now();
        let mut report = ConnReport {
            client,
            local,
            hops: 0,
            protocol: Protocol::Unknown,
            server_name: None,
            port: self.settings.destination_port,
            outcome: Outcome::Closed,
            route: None,
            rule: None,
            bytes_up: 0,
            bytes_down: 0,
            duration: Duration::ZERO,
        };
        self.handle(&mut io, &mut report).await;
        report.duration = started.elapsed();
        log(&report);
        record_metrics(&report);
        if let Some(observer) = &self.observer {
            observer(&report);
        }
        report
    }

    /// From the first byte to an open upstream with the hello replayed; `None` when the
    /// connection ends here (refused, failed), with the outcome in `report`.
    async fn open(&self, io: &mut Stream, report: &mut ConnReport) -> Option<Stream> {
        let mut buf: Vec<u8> = Vec::with_capacity(FIRST_READ);
        // A child gateway starts with a PROXY v2 header: the original client and the hop count.
        let peer = report.client.ip().to_canonical();
        if self
            .settings
            .proxy_protocol_from
            .iter()
            .any(|net| net.contains(&peer))
        {
            // Boxed, like the sniff below: short-lived states on the heap keep the task small.
            let reading = read_proxy_header(io, &mut buf);
            match Box::pin(tokio::time::timeout(self.settings.sniff_timeout, reading)).await {
                Ok(Ok(header)) => {
                    report.client = header.client;
                    report.hops = header.hops;
                }
                Ok(Err(outcome)) => {
                    report.outcome = outcome;
                    return None;
                }
                Err(_) => {
                    report.outcome = Outcome::SniffTimeout;
                    return None;
                }
            }
        }
        let arrival = Arrival::new(report.client, report.local, report.hops);
        let admitted = admit_arrival(&arrival, &self.allowlist.current(), &self.settings);
        if let Err(refusal) = admitted {
            if let Outcome::TooManyHops { hops } = refusal.outcome {
                tracing::warn!(client = %report.client, hops, max_hops = self.settings.max_hops,
                    "connection refused: it went round a loop of gateways or through too many");
            }
            self.refuse(io, report, refusal).await;
            return None;
        }

        let sniffing = tokio::time::timeout(self.settings.sniff_timeout, self.sniff(io, &mut buf));
        let sniffed = match Box::pin(sniffing).await {
            Err(_) => Err(Outcome::SniffTimeout),
            Ok(sniffed) => sniffed,
        };
        let sniffed = match sniffed {
            Ok(sniffed) => sniffed,
            Err(outcome) => {
                let refusal = refuse_unsniffed(outcome, self.settings.protocol, &buf, report.port);
                report.protocol = guess_protocol(self.settings.protocol, &buf);
                self.refuse(io, report, refusal).await;
                return None;
            }
        };
        report.protocol = sniffed.protocol;
        report.server_name = sniffed.name_text();
        if let Some(name) = &report.server_name {
            tracing::Span::current().record("sni", name.as_str());
        }

        let request = Request::new(
            sniffed.server_name.as_deref(),
            report.client.ip(),
            report.port,
        );
        let deciding = Instant::now();
        let decision = self.policy.decide(request).await;
        metrics::histogram!("lnm_decision_seconds").record(deciding.elapsed().as_secs_f64());
        let connect = match admit(&arrival, &sniffed, decision, &self.settings) {
            Ok(connect) => connect,
            Err(refusal) => {
                self.refuse(io, report, refusal).await;
                return None;
            }
        };
        report.route = Some(connect.route);
        report.rule = Some(connect.rule.clone());

        let hop = match connect.route {
            Route::Internal => &self.internal,
            _ => &self.external,
        };
        let connecting = hop.connect(&connect.target, &connect.info);
        let mut upstream =
            match tokio::time::timeout(self.settings.connect_timeout, connecting).await {
                Ok(Ok(upstream)) => upstream,
                Ok(Err(e)) => {
                    let refusal = refuse_connect(&connect, e);
                    if let Outcome::Denied(_) = refusal.outcome {
                        // Denied inside the hop: no route was taken.
                        report.route = None;
                    }
                    self.refuse(io, report, refusal).await;
                    return None;
                }
                Err(_) => {
                    let refusal = refuse_connect_timeout(&connect, self.settings.connect_timeout);
                    self.refuse(io, report, refusal).await;
                    return None;
                }
            };
        if let Err(e) = upstream.write_all(&buf).await {
            report.outcome = Outcome::RelayError(Arc::new(e));
            return None;
        }
        report.bytes_up = buf.len() as u64;
        Some(upstream)
    }

    async fn handle(&self, io: &mut Stream, report: &mut ConnReport) {
        // Two phases, so that nothing of the first (buffers, names, sniff and connect state)
        // is kept in the task while the connection is relayed, possibly for hours.
        let Some(mut upstream) = self.open(io, report).await else {
            return;
        };
        let idle = self.settings.idle_timeout;
        let relayed = match (&mut *io, &mut upstream) {
            #[cfg(all(target_os = "linux", feature = "splice"))]
            (Stream::Tcp(client), Stream::Tcp(upstream)) if self.settings.zero_copy => {
                crate::relay::splice::relay(client, upstream, idle).await
            }
            (io, upstream) => relay(io, upstream, idle).await,
        };
        report.bytes_up += relayed.up;
        report.bytes_down = relayed.down;
        report.outcome = match relayed.end {
            RelayEnd::Closed => Outcome::Closed,
            RelayEnd::Idle => Outcome::IdleTimeout,
            RelayEnd::Error(e) => Outcome::RelayError(Arc::new(e)),
        };
    }

    /// Reads until the sniffer of this listener's protocol is done.
    async fn sniff<R: AsyncRead + Unpin>(
        &self,
        io: &mut R,
        buf: &mut Vec<u8>,
    ) -> Result<Sniffed, Outcome> {
        let mut tls = TlsSniffer::new(self.settings.max_client_hello);
        let mut http = HttpSniffer::new(self.settings.max_http_head);
        // The wire bytes a hello may take: the cap counts the handshake message only, and each
        // record adds a 5-byte header to at least one byte of it (the sniffer refuses empty
        // records), so at most 6 bytes per byte of hello, plus one record. Ordinary hellos in
        // full records need a few dozen bytes more than the cap; the bound is for the rest.
        let cap = (self.settings.max_client_hello.saturating_mul(6) + 5 + (1 << 14))
            .max(self.settings.max_http_head);
        // Bytes may be buffered already (after a PROXY header): look at them before reading.
        let mut buffered = !buf.is_empty();
        loop {
            if !buffered {
                if buf.len() == buf.capacity() {
                    // Double, but never past the bound (plus one byte, so the sniffer sees the excess).
                    let room = cap.saturating_sub(buf.len()).max(1);
                    buf.reserve(buf.len().max(FIRST_READ).min(room));
                }
                let n = io
                    .read_buf(buf)
                    .await
                    .map_err(|e| Outcome::ReadError(Arc::new(e)))?;
                if n == 0 {
                    return Err(Outcome::BadHello(SniffError::Truncated { len: buf.len() }));
                }
            }
            buffered = false;
            let is_tls = match self.settings.protocol {
                ListenerProtocol::Tls => true,
                ListenerProtocol::Http => false,
                ListenerProtocol::Auto => buf[0] == 22,
            };
            if is_tls {
                match tls.feed(buf) {
                    Sniff::NeedMore => {}
                    Sniff::Done(hello) => {
                        return Ok(Sniffed::new(Protocol::Tls, hello.server_name));
                    }
                    Sniff::Invalid(e) => return Err(Outcome::BadHello(e)),
                }
            } else {
                match http.feed(buf) {
                    Sniff::NeedMore => {}
                    Sniff::Done(head) => return Ok(Sniffed::new(Protocol::Http, head.host)),
                    Sniff::Invalid(e) => return Err(Outcome::BadHello(e)),
                }
            }
        }
    }

    /// Records the refusal's outcome, tells the client why in its protocol (when there is
    /// something to say), and closes.
    ///
    /// Boxed: the refusal's state then lives on the heap only while a refusal is written,
    /// instead of enlarging every connection's task (the task is as large as its largest
    /// state, and idle relayed connections hold it for their whole life).
    fn refuse<'a>(
        &'a self,
        io: &'a mut Stream,
        report: &'a mut ConnReport,
        refusal: Refusal,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        report.outcome = refusal.outcome;
        Box::pin(async move {
            if let Some(answer) = refusal.answer {
                answer_and_close(io, &answer.bytes()).await;
            }
        })
    }
}

/// Writes `response`, closes, and reads what the client still sends (briefly) so that
/// closing with unread bytes does not turn into a RST that could destroy the answer before
/// the client reads it. Best effort, bounded: a client that does not read must not hold the
/// task.
async fn answer_and_close(io: &mut Stream, response: &[u8]) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        io.write_all(response).await?;
        io.shutdown().await?;
        // On the heap: this buffer would otherwise sit in every connection's task.
        let mut sink = vec![0u8; 1024];
        let mut budget: usize = 64 * 1024;
        while budget > 0 {
            match io.read(&mut sink).await? {
                0 => break,
                n => budget = budget.saturating_sub(n),
            }
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// Reads a child gateway's PROXY v2 header into `buf` and removes it, leaving the client's
/// bytes that followed it.
async fn read_proxy_header<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut Vec<u8>,
) -> Result<ProxyHeader, Outcome> {
    loop {
        match ProxyHeader::decode(buf) {
            Decoded::Done { header, len } => {
                buf.drain(..len);
                return Ok(header);
            }
            Decoded::Invalid(why) => return Err(Outcome::BadProxyHeader(why)),
            Decoded::NeedMore => {}
        }
        if buf.len() >= lnm_core::proxy_header::MAX_HEADER {
            return Err(Outcome::BadProxyHeader("PROXY header too long"));
        }
        buf.reserve(FIRST_READ);
        let n = io
            .read_buf(buf)
            .await
            .map_err(|e| Outcome::ReadError(Arc::new(e)))?;
        if n == 0 {
            return Err(Outcome::BadProxyHeader(
                "connection closed inside the PROXY header",
            ));
        }
    }
}

/// The Prometheus counters of one finished connection.
fn record_metrics(r: &ConnReport) {
    let decision = if r.outcome.is_allowed() {
        "allow"
    } else {
        "deny"
    };
    metrics::counter!("lnm_connections_total", "decision" => decision, "reason" => r.outcome.as_str()).increment(1);
    metrics::counter!("lnm_bytes_total", "direction" => "up").increment(r.bytes_up);
    metrics::counter!("lnm_bytes_total", "direction" => "down").increment(r.bytes_down);
    match &r.outcome {
        Outcome::BadHello(e) => {
            metrics::counter!("lnm_sniff_failures_total", "reason" => e.as_str()).increment(1)
        }
        Outcome::SniffTimeout => {
            metrics::counter!("lnm_sniff_failures_total", "reason" => "timeout").increment(1)
        }
        Outcome::ConnectFailed(_) | Outcome::ConnectTimeout { .. } => {
            metrics::counter!("lnm_upstream_connect_failures_total").increment(1)
        }
        _ => {}
    }
}

/// A rule for the log line, `-` when there is none.
struct OrDash<'a>(Option<&'a Rule>);

impl fmt::Display for OrDash<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(rule) => rule.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// One log line per connection decision.
fn log(r: &ConnReport) {
    let name = r.server_name.as_deref().unwrap_or("-");
    let route = r.route.map_or("-", Route::as_str);
    let rule = OrDash(r.rule.as_deref());
    let ms = r.duration.as_secs_f64() * 1000.0;
    if r.outcome.is_allowed() {
        tracing::info!(
            client = %r.client, local = %r.local, hops = r.hops, protocol = %r.protocol, sni = name, port = r.port,
            decision = "allow", reason = r.outcome.as_str(), route, rule = %rule,
            bytes_up = r.bytes_up, bytes_down = r.bytes_down, duration_ms = %format_args!("{ms:.3}"),
            "{}", r.outcome
        );
    } else {
        tracing::info!(
            client = %r.client, local = %r.local, hops = r.hops, protocol = %r.protocol, sni = name, port = r.port,
            decision = "deny", reason = r.outcome.as_str(), route, rule = %rule,
            bytes_up = r.bytes_up, bytes_down = r.bytes_down, duration_ms = %format_args!("{ms:.3}"),
            "{}", r.outcome
        );
    }
}

#[cfg(test)]
mod tests {
    /// Every idle proxied connection holds one of these futures: keep it small (a 1 KiB buffer
    /// that once sat in the refusal path doubled it). The bound leaves room, not a target.
    #[test]
    fn the_per_connection_future_stays_small() {
        let proxy = super::Proxy::builder(
            lnm_policy::Allowlist::default().into(),
            crate::ProxySettings::new(lnm_policy::config::ListenerProtocol::Tls, 443),
        )
        .build();
        let (pipe, _other) = tokio::io::duplex(64);
        let addr: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        let serve = proxy.serve(lnm_core::Stream::Memory(pipe), addr, addr);
        let size = std::mem::size_of_val(&serve);
        assert!(size <= 1536, "the connection future grew to {size} bytes");
    }
}
