//! What a soak run does: its duration, rates and timeouts.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// One kind of client load (and the driver's own periodic checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Kind {
    /// A full rustls handshake through the TLS listener to the origin (an exact or a wildcard
    /// allowlisted name), a small request and its answer: expected success.
    TlsAllowed,
    /// A rustls handshake for a name that is not allowlisted (or the apex of a wildcard):
    /// expected refusal, alert `unrecognized_name`.
    TlsDenied,
    /// An allowlisted name from a source outside `sourceIpRange` (127.0.0.2): expected refusal,
    /// alert `access_denied`.
    TlsOutsider,
    /// An allowlisted handshake whose first flight trickles in a few bytes at a time, well
    /// within the sniff timeout: expected success.
    TlsSlow,
    /// A ClientHello sent a few bytes a second, slower than the sniff timeout: expected to be
    /// cut by the gateway (close, reset or alert) before it is complete.
    TlsSlowCut,
    /// Random bytes on the TLS listener, then end of stream: expected refusal (an alert or a
    /// close, never an origin's answer).
    TlsGarbage,
    /// A plain-HTTP request with an allowlisted `Host` through the HTTP listener to the HTTP
    /// origin: expected success.
    HttpAllowed,
    /// A plain-HTTP request for a name that is not allowlisted: expected refusal, `403`.
    HttpDenied,
    /// Random bytes on the HTTP listener, then end of stream: expected refusal (a `4xx` or a
    /// close).
    HttpGarbage,
    /// A UDP A query for an allowlisted name: expected success, the gateway's address.
    DnsAllowed,
    /// A UDP A query for a new unlisted name: forwarded to the driver's upstream DNS, whose
    /// answer (192.0.2.53) comes back: expected success.
    DnsUnlisted,
    /// A UDP query from outside `sourceIpRange` (127.0.0.2): expected refusal, `REFUSED`.
    DnsOutsider,
    /// Random bytes to the DNS port: expected refusal (dropped, or an error code).
    DnsGarbage,
    /// A configuration reload (file rewritten, SIGHUP): the new name resolves to the gateway
    /// and is served, the previous one is refused and forwarded: expected success.
    Reload,
    /// A `/metrics` scrape of the admin endpoint by the sampler: expected success.
    Admin,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 15] = [
        Kind::TlsAllowed,
        Kind::TlsDenied,
        Kind::TlsOutsider,
        Kind::TlsSlow,
        Kind::TlsSlowCut,
        Kind::TlsGarbage,
        Kind::HttpAllowed,
        Kind::HttpDenied,
        Kind::HttpGarbage,
        Kind::DnsAllowed,
        Kind::DnsUnlisted,
        Kind::DnsOutsider,
        Kind::DnsGarbage,
        Kind::Reload,
        Kind::Admin,
    ];

    /// The kind's name in reports (`tls_allowed`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::TlsAllowed => "tls_allowed",
            Kind::TlsDenied => "tls_denied",
            Kind::TlsOutsider => "tls_outsider",
            Kind::TlsSlow => "tls_slow",
            Kind::TlsSlowCut => "tls_slow_cut",
            Kind::TlsGarbage => "tls_garbage",
            Kind::HttpAllowed => "http_allowed",
            Kind::HttpDenied => "http_denied",
            Kind::HttpGarbage => "http_garbage",
            Kind::DnsAllowed => "dns_allowed",
            Kind::DnsUnlisted => "dns_unlisted",
            Kind::DnsOutsider => "dns_outsider",
            Kind::DnsGarbage => "dns_garbage",
            Kind::Reload => "reload",
            Kind::Admin => "admin",
        }
    }

    /// What the kind expects, for the report.
    pub fn expectation(self) -> &'static str {
        match self {
            Kind::TlsAllowed | Kind::TlsSlow => "handshake with the origin, its answer",
            Kind::TlsDenied => "alert unrecognized_name",
            Kind::TlsOutsider => "alert access_denied",
            Kind::TlsSlowCut => "cut before the hello is complete",
            Kind::TlsGarbage => "TLS alert or close",
            Kind::HttpAllowed => "200 from the origin",
            Kind::HttpDenied => "403",
            Kind::HttpGarbage => "4xx or close",
            Kind::DnsAllowed => "NOERROR, 127.0.0.1",
            Kind::DnsUnlisted => "forwarded: NOERROR, 192.0.2.53",
            Kind::DnsOutsider => "REFUSED",
            Kind::DnsGarbage => "dropped or an error code",
            Kind::Reload => "applied: new name served, old refused",
            Kind::Admin => "200 /metrics",
        }
    }

    /// Whether the kind opens proxy connections (TCP to a listener).
    pub fn is_connection(self) -> bool {
        matches!(
            self,
            Kind::TlsAllowed
                | Kind::TlsDenied
                | Kind::TlsOutsider
                | Kind::TlsSlow
                | Kind::TlsSlowCut
                | Kind::TlsGarbage
                | Kind::HttpAllowed
                | Kind::HttpDenied
                | Kind::HttpGarbage
        )
    }

    /// Whether the kind is a DNS query.
    pub fn is_query(self) -> bool {
        matches!(
            self,
            Kind::DnsAllowed | Kind::DnsUnlisted | Kind::DnsOutsider | Kind::DnsGarbage
        )
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Clients started per second, per kind (before [`SoakConfig::rate_scale`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Rates {
    per_kind: Vec<(Kind, f64)>,
}

impl Default for Rates {
    /// About 140 connections and 160 queries a second: enough to keep a gateway busy, not
    /// enough for the driver (which also runs the origins and both ends of every handshake) to
    /// saturate a 2-CPU machine.
    fn default() -> Self {
        Rates {
            per_kind: vec![
                (Kind::TlsAllowed, 40.0),
                (Kind::TlsDenied, 15.0),
                (Kind::TlsOutsider, 5.0),
                (Kind::TlsSlow, 4.0),
                (Kind::TlsSlowCut, 1.0),
                (Kind::TlsGarbage, 8.0),
                (Kind::HttpAllowed, 40.0),
                (Kind::HttpDenied, 15.0),
                (Kind::HttpGarbage, 8.0),
                (Kind::DnsAllowed, 100.0),
                (Kind::DnsUnlisted, 40.0),
                (Kind::DnsOutsider, 10.0),
                (Kind::DnsGarbage, 10.0),
            ],
        }
    }
}

impl Rates {
    /// The rate of `kind` (0 for kinds that are not load: [`Kind::Reload`], [`Kind::Admin`]).
    pub fn get(&self, kind: Kind) -> f64 {
        self.per_kind
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0.0, |(_, r)| *r)
    }

    /// Sets the rate of `kind` (0 switches it off).
    pub fn set(&mut self, kind: Kind, per_second: f64) {
        match self.per_kind.iter_mut().find(|(k, _)| *k == kind) {
            Some(entry) => entry.1 = per_second,
            None => self.per_kind.push((kind, per_second)),
        }
    }

    /// Every kind with a rate above 0.
    pub fn iter(&self) -> impl Iterator<Item = (Kind, f64)> + '_ {
        self.per_kind.iter().copied().filter(|(_, r)| *r > 0.0)
    }
}

/// A soak run: which gateway binary, how long, how hard.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SoakConfig {
    /// The `lnm-gateway` binary.
    pub gateway: PathBuf,
    /// Load time (after the warm-up).
    pub duration: Duration,
    /// Load before the baseline is taken, so lazily created state (the DNS forwarder's sockets,
    /// session caches) exists in both the baseline and the end measurement.
    pub warmup: Duration,
    /// Clients per second per kind.
    pub rates: Rates,
    /// A factor on every rate.
    pub rate_scale: f64,
    /// How often the gateway is sampled.
    pub sample_interval: Duration,
    /// How often the configuration is rewritten and SIGHUP sent.
    pub reload_interval: Duration,
    /// The gateway's `timeouts.sniff` (slow clients beyond it are cut).
    pub sniff_timeout: Duration,
    /// The longest any one client operation may take before it is an unexpected error
    /// (generous: the machine may be loaded by other work).
    pub op_timeout: Duration,
    /// Clients in flight at most; a client that would exceed it is not started (counted as
    /// skipped, not as an error).
    pub max_in_flight: usize,
    /// The gateway's log filter (`RUST_LOG`), e.g. `info` (one line per connection).
    pub gateway_log: String,
    /// The gateway's `--workers` (`None`: its default, one worker per CPU).
    pub gateway_workers: Option<usize>,
    /// Where the configuration file and the gateway's log go (`None`: a new directory under
    /// the system's temporary directory).
    pub workdir: Option<PathBuf>,
    /// Progress lines on stderr while running.
    pub verbose: bool,
}

impl SoakConfig {
    /// A 10-minute run of `gateway` at the default [`Rates`], sampled every 2 s, reloaded
    /// every 10 s, with a 3 s sniff timeout.
    pub fn new(gateway: impl Into<PathBuf>) -> Self {
        SoakConfig {
            gateway: gateway.into(),
            duration: Duration::from_secs(600),
            warmup: Duration::from_secs(5),
            rates: Rates::default(),
            rate_scale: 1.0,
            sample_interval: Duration::from_secs(2),
            reload_interval: Duration::from_secs(10),
            sniff_timeout: Duration::from_secs(3),
            op_timeout: Duration::from_secs(30),
            max_in_flight: 2_000,
            gateway_log: "info".to_owned(),
            gateway_workers: None,
            workdir: None,
            verbose: false,
        }
    }
}
