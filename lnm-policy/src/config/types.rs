//! The configuration types. Defaults live here, in one place.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use lnm_core::Name;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use super::CollectorEndpoint;
use super::defaults;
use super::serde_util::duration;
use crate::{Allowlist, Error, Pattern, Route, RuleOrigin};

/// One gateway level: the `spec` of an Azure IoT LNM custom resource plus lnm's extensions.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct Config {
    /// The Purdue level (informational; a level without parent forwards to the real destination).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<u8>,
    /// The parent gateway (LNM's single-address form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_ip_addr: Option<IpAddr>,
    /// Parent gateways tried in order (lnm extension, failover).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_ip_addrs: Option<Vec<IpAddr>>,
    /// The parent's port; default: each listener's `destinationPort`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_port: Option<u16>,
    /// The log level (`RUST_LOG` overrides it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<LogLevel>,
    /// What may pass.
    #[serde(default)]
    pub allow_list: AllowListConfig,

    /// Azure LNM: the Envoy image. Ignored, with a warning.
    #[serde(default, skip_serializing)]
    pub image: Option<IgnoredAny>,
    /// Azure LNM: the replica count. Ignored, with a warning.
    #[serde(default, skip_serializing)]
    pub replicas: Option<IgnoredAny>,
    /// Azure LNM: Kubernetes tolerations. Ignored, with a warning.
    #[serde(default, skip_serializing)]
    pub node_tolerations: Option<IgnoredAny>,
    /// Azure LNM: the OpenTelemetry collector the gateway pushes its metrics to over
    /// OTLP/gRPC, every `metricsExport.interval` — the same metrics as the admin endpoint's
    /// `/metrics`. Absent: no push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_telemetry_metrics_collector_addr: Option<CollectorEndpoint>,
    /// How metrics are pushed to `openTelemetryMetricsCollectorAddr` (lnm extension).
    #[serde(default)]
    pub metrics_export: MetricsExportConfig,

    /// Proxy listeners. Absent: `0.0.0.0:443` (tls), `0.0.0.0:80` (http) and one per internal
    /// entry's port; an empty list: none (DNS only). See [`Config::effective_listeners`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listeners: Option<Vec<ListenerConfig>>,
    /// The DNS rewrite server; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsConfig>,
    /// How this gateway finds real and internal destinations.
    #[serde(default)]
    pub resolver: ResolverConfig,
    /// The admin HTTP endpoint (`/metrics`, `/healthz`, `/readyz`); absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminConfig>,
    /// PROXY protocol v2 between gateways.
    #[serde(default)]
    pub proxy_protocol: ProxyProtocolConfig,
    /// Connection limits.
    #[serde(default)]
    pub limits: Limits,
    /// How allowed connections are relayed.
    #[serde(default)]
    pub relay: RelayConfig,
    /// Timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Thread-per-core workers: each runs its own event loop with its own `SO_REUSEPORT`
    /// socket for every proxy listener and the DNS server. Absent: one per CPU this process
    /// may use (see [`Config::effective_workers`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
}

/// Describing a level in code: every section has a constructor, so a configuration needs no
/// YAML (the simulator builds its levels this way).
///
/// ```
/// use lnm_policy::config::{Config, DnsConfig, DomainEntry, ListenerConfig, ListenerProtocol};
///
/// let level3 = Config::level(3)
///     .with_parent("10.4.0.1".parse().unwrap())
///     .allow(DomainEntry::external("management.azure.com").unwrap())
///     .allow(DomainEntry::internal("broker.l3.local", 8883).unwrap())
///     .with_listener(ListenerConfig::new("10.3.0.1:443".parse().unwrap(), ListenerProtocol::Tls))
///     .with_dns(DnsConfig::new("10.3.0.1:53".parse().unwrap(), vec!["10.3.0.1".parse().unwrap()]));
/// assert!(level3.validate().unwrap().iter().any(|w| w.contains("broker.l3.local")));
/// ```
impl Config {
    /// An empty configuration for Purdue level `level` (add a parent below the top level).
    pub fn level(level: u8) -> Self {
        Config {
            level: Some(level),
            ..Config::default()
        }
    }

    /// Sets the parent gateway (`parentIpAddr`).
    pub fn with_parent(mut self, parent: IpAddr) -> Self {
        self.parent_ip_addr = Some(parent);
        self.parent_ip_addrs = None;
        self
    }

    /// Sets the parent gateways tried in order (`parentIpAddrs`).
    pub fn with_parents(mut self, parents: impl IntoIterator<Item = IpAddr>) -> Self {
        self.parent_ip_addrs = Some(parents.into_iter().collect());
        self.parent_ip_addr = None;
        self
    }

    /// Sets the parent's port (`parentPort`).
    pub fn with_parent_port(mut self, port: u16) -> Self {
        self.parent_port = Some(port);
        self
    }

    /// Adds an `allowList.domains` entry.
    pub fn allow(mut self, entry: DomainEntry) -> Self {
        self.allow_list.domains.push(entry);
        self
    }

    /// Adds an `allowList.sourceIpRange` entry (the first one turns the source check on).
    pub fn with_source_range(mut self, range: IpNet) -> Self {
        self.allow_list
            .source_ip_range
            .get_or_insert_with(Vec::new)
            .push(SourceRange(range.trunc()));
        self
    }

    /// Adds a proxy listener (the first one replaces the default listeners).
    pub fn with_listener(mut self, listener: ListenerConfig) -> Self {
        self.listeners.get_or_insert_with(Vec::new).push(listener);
        self
    }

    /// Runs the DNS rewrite server.
    pub fn with_dns(mut self, dns: DnsConfig) -> Self {
        self.dns = Some(dns);
        self
    }

    /// Sets how destinations are resolved.
    pub fn with_resolver(mut self, resolver: ResolverConfig) -> Self {
        self.resolver = resolver;
        self
    }

    /// Runs the admin endpoint.
    pub fn with_admin(mut self, admin: AdminConfig) -> Self {
        self.admin = Some(admin);
        self
    }

    /// Sets the PROXY protocol section.
    pub fn with_proxy_protocol(mut self, proxy_protocol: ProxyProtocolConfig) -> Self {
        self.proxy_protocol = proxy_protocol;
        self
    }

    /// Sets the limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the timeouts.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Sets the relay section.
    pub fn with_relay(mut self, relay: RelayConfig) -> Self {
        self.relay = relay;
        self
    }

    /// Sets the number of thread-per-core workers (`workers`).
    pub fn with_workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
        self
    }

    /// Pushes the metrics to this OpenTelemetry collector (`openTelemetryMetricsCollectorAddr`).
    pub fn with_metrics_collector(mut self, collector: CollectorEndpoint) -> Self {
        self.open_telemetry_metrics_collector_addr = Some(collector);
        self
    }

    /// Sets the `metricsExport` section.
    pub fn with_metrics_export(mut self, export: MetricsExportConfig) -> Self {
        self.metrics_export = export;
        self
    }
}

/// `logLevel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum LogLevel {
    #[serde(alias = "Trace", alias = "TRACE")]
    Trace,
    #[serde(alias = "Debug", alias = "DEBUG")]
    Debug,
    #[serde(alias = "Info", alias = "INFO")]
    Info,
    #[serde(alias = "Warn", alias = "WARN", alias = "warning")]
    Warn,
    #[serde(alias = "Error", alias = "ERROR")]
    Error,
}

impl LogLevel {
    /// The level as a `tracing` filter directive.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// `allowList`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct AllowListConfig {
    /// Adds the built-in Azure Arc domains ([`ARC_DOMAINS`](crate::ARC_DOMAINS)).
    #[serde(default)]
    pub enable_arc_domains: bool,
    /// The allowed destinations.
    #[serde(default)]
    pub domains: Vec<DomainEntry>,
    /// Absent: every source; present: only these (an empty list admits nobody).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip_range: Option<Vec<SourceRange>>,
}

/// `destinationType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DestinationType {
    /// Up the levels, to the real destination.
    External,
    /// On this level, on the entry's own port.
    Internal,
}

/// One `allowList.domains[]` entry, validated: a pattern, its type, and (internal) its port.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "RawDomainEntry", into = "RawDomainEntry")]
#[non_exhaustive]
pub struct DomainEntry {
    /// The name or `*.suffix`.
    pub pattern: Pattern,
    /// External or internal.
    pub destination_type: DestinationType,
    /// The port of an internal entry.
    pub port: Option<u16>,
}

impl DomainEntry {
    /// An `external` entry: `pattern` is a name or `*.suffix`, allowed on every listener.
    pub fn external(pattern: &str) -> Result<Self, Error> {
        Ok(DomainEntry {
            pattern: Pattern::parse(pattern)?,
            destination_type: DestinationType::External,
            port: None,
        })
    }

    /// An `internal` entry: `pattern` on its own `port`, delivered on this level.
    pub fn internal(pattern: &str, port: u16) -> Result<Self, Error> {
        if port == 0 {
            return Err(Error::Pattern {
                pattern: pattern.to_owned(),
                reason: "an internal entry needs its port (1..=65535)".into(),
            });
        }
        Ok(DomainEntry {
            pattern: Pattern::parse(pattern)?,
            destination_type: DestinationType::Internal,
            port: Some(port),
        })
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawDomainEntry {
    destination_url: String,
    destination_type: DestinationType,
}

impl TryFrom<RawDomainEntry> for DomainEntry {
    type Error = String;

    fn try_from(raw: RawDomainEntry) -> Result<Self, String> {
        let url = raw.destination_url.trim();
        match raw.destination_type {
            DestinationType::External => {
                let pattern = Pattern::parse(url).map_err(|e| e.to_string())?;
                Ok(DomainEntry {
                    pattern,
                    destination_type: DestinationType::External,
                    port: None,
                })
            }
            DestinationType::Internal => {
                let (host, port) = url.rsplit_once(':').ok_or_else(|| {
                    format!(
                        "internal destination {url:?} needs its port, as in `broker.local:8883`"
                    )
                })?;
                let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(|| {
                    format!("invalid port {port:?} in internal destination {url:?}")
                })?;
                let pattern = Pattern::parse(host).map_err(|e| e.to_string())?;
                Ok(DomainEntry {
                    pattern,
                    destination_type: DestinationType::Internal,
                    port: Some(port),
                })
            }
        }
    }
}

impl From<DomainEntry> for RawDomainEntry {
    fn from(entry: DomainEntry) -> Self {
        let destination_url = match entry.port {
            Some(port) => format!("{}:{port}", entry.pattern),
            None => entry.pattern.to_string(),
        };
        RawDomainEntry {
            destination_url,
            destination_type: entry.destination_type,
        }
    }
}

/// One `sourceIpRange[]` entry (`addressPrefix` + `prefixLen`), host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "RawSourceRange", into = "RawSourceRange")]
pub struct SourceRange(pub IpNet);

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSourceRange {
    address_prefix: IpAddr,
    prefix_len: u8,
}

impl TryFrom<RawSourceRange> for SourceRange {
    type Error = String;

    fn try_from(raw: RawSourceRange) -> Result<Self, String> {
        IpNet::new(raw.address_prefix, raw.prefix_len)
            .map(|net| SourceRange(net.trunc()))
            .map_err(|_| {
                let max = if raw.address_prefix.is_ipv4() {
                    32
                } else {
                    128
                };
                format!(
                    "prefixLen {} is too long for {} (at most {max})",
                    raw.prefix_len, raw.address_prefix
                )
            })
    }
}

impl From<SourceRange> for RawSourceRange {
    fn from(range: SourceRange) -> Self {
        RawSourceRange {
            address_prefix: range.0.addr(),
            prefix_len: range.0.prefix_len(),
        }
    }
}

/// How a listener learns the server name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerProtocol {
    /// TLS ClientHello SNI.
    Tls,
    /// HTTP/1.x `Host`.
    Http,
    /// TLS if the first byte is a handshake record, else HTTP.
    #[default]
    Auto,
}

/// One `listeners[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct ListenerConfig {
    /// Where to listen.
    pub bind: SocketAddr,
    /// How to sniff.
    #[serde(default)]
    pub protocol: ListenerProtocol,
    /// The destination port; default: the bound port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_port: Option<u16>,
}

impl ListenerConfig {
    /// A listener on `bind` sniffing `protocol`.
    pub fn new(bind: SocketAddr, protocol: ListenerProtocol) -> Self {
        ListenerConfig {
            bind,
            protocol,
            destination_port: None,
        }
    }

    /// Forwards to `port` instead of the bound port (`destinationPort`).
    pub fn with_destination_port(mut self, port: u16) -> Self {
        self.destination_port = Some(port);
        self
    }

    /// The destination port: `destinationPort` when set, else the port of `bind` as
    /// configured — for a listener on port 0 (a free port picked at start) that is 0, so such a
    /// listener needs an explicit destination port ([`with_destination_port`](Self::with_destination_port));
    /// [`Config::validate`] warns when it has none.
    pub fn destination_port(&self) -> u16 {
        self.destination_port.unwrap_or(self.bind.port())
    }
}

/// `dns`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct DnsConfig {
    /// UDP and TCP address.
    pub bind: SocketAddr,
    /// A answers for allowlisted names.
    #[serde(default)]
    pub answer_ipv4: Vec<Ipv4Addr>,
    /// AAAA answers for allowlisted names (empty: empty NOERROR).
    #[serde(default)]
    pub answer_ipv6: Vec<Ipv6Addr>,
    /// Where names that are not allowlisted are forwarded; empty: REFUSED.
    #[serde(default)]
    pub upstream: Vec<SocketAddr>,
    /// TTL of rewritten answers, in seconds.
    #[serde(default = "default_dns_ttl")]
    pub ttl: u32,
}

impl DnsConfig {
    /// A DNS server on `bind` (UDP and TCP) answering allowlisted A queries with `answer_ipv4`
    /// (this gateway's addresses); no AAAA answers, no upstream (REFUSED for other names), the
    /// default TTL.
    pub fn new(bind: SocketAddr, answer_ipv4: Vec<Ipv4Addr>) -> Self {
        DnsConfig {
            bind,
            answer_ipv4,
            answer_ipv6: Vec::new(),
            upstream: Vec::new(),
            ttl: defaults::DNS_TTL,
        }
    }

    /// Answers allowlisted AAAA queries with `addrs`.
    pub fn with_answer_ipv6(mut self, addrs: Vec<Ipv6Addr>) -> Self {
        self.answer_ipv6 = addrs;
        self
    }

    /// Forwards names that are not allowlisted to `servers`, in order.
    pub fn with_upstream(mut self, servers: Vec<SocketAddr>) -> Self {
        self.upstream = servers;
        self
    }

    /// Sets the TTL of rewritten answers, in seconds.
    pub fn with_ttl(mut self, ttl: u32) -> Self {
        self.ttl = ttl;
        self
    }
}

fn default_dns_ttl() -> u32 {
    defaults::DNS_TTL
}

/// `resolver.upstream`: the system resolver or explicit DNS servers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ResolverUpstream {
    /// `system`.
    #[default]
    System,
    /// `[ip:port, ...]`, asked in order.
    Servers(Vec<SocketAddr>),
}

impl<'de> Deserialize<'de> for ResolverUpstream {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ResolverUpstream;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`system` or a list of DNS servers as `ip:port`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ResolverUpstream, E> {
                if v == "system" {
                    Ok(ResolverUpstream::System)
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(v), &self))
                }
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<ResolverUpstream, A::Error> {
                let mut servers = Vec::new();
                while let Some(server) = seq.next_element::<SocketAddr>()? {
                    servers.push(server);
                }
                Ok(ResolverUpstream::Servers(servers))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for ResolverUpstream {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ResolverUpstream::System => s.serialize_str("system"),
            ResolverUpstream::Servers(servers) => servers.serialize(s),
        }
    }
}

/// `resolver`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct ResolverConfig {
    /// Where real names are resolved.
    #[serde(default)]
    pub upstream: ResolverUpstream,
    /// Static names (internal destinations, overrides), exact names.
    #[serde(default)]
    pub hosts: BTreeMap<Name, IpAddr>,
    /// Destinations the top level never dials for a resolved name (confused-deputy guard);
    /// absent: loopback, link-local, unspecified and multicast. Add the plant's private ranges;
    /// `[]` turns the guard off. Names in `hosts` are exempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_ranges: Option<Vec<IpNet>>,
}

impl ResolverConfig {
    /// Resolves real names with `servers`, asked in order, instead of the system resolver.
    pub fn with_upstream_servers(mut self, servers: Vec<SocketAddr>) -> Self {
        self.upstream = ResolverUpstream::Servers(servers);
        self
    }

    /// Resolves `name` to `ip` (an internal destination, or an override).
    pub fn with_host(mut self, name: Name, ip: IpAddr) -> Self {
        self.hosts.insert(name, ip);
        self
    }

    /// Sets the ranges the top level never dials (`[]` turns the guard off).
    pub fn with_refused_ranges(mut self, ranges: Vec<IpNet>) -> Self {
        self.refused_ranges = Some(ranges);
        self
    }
}

/// `admin`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct AdminConfig {
    /// The HTTP address of `/metrics`, `/healthz`, `/readyz`.
    pub bind: SocketAddr,
}

impl AdminConfig {
    /// The admin endpoint on `bind`.
    pub fn new(bind: SocketAddr) -> Self {
        AdminConfig { bind }
    }
}

/// `proxyProtocol`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct ProxyProtocolConfig {
    /// Send a PROXY v2 header (original client, hop count) to the parent.
    #[serde(default)]
    pub send: bool,
    /// Require a PROXY v2 header from the child gateways listed in `acceptFrom`.
    #[serde(default)]
    pub accept: bool,
    /// The child gateways' addresses (CIDRs such as `10.2.0.1/32`); connections from anywhere
    /// else never have a header read (a client cannot claim another address).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accept_from: Vec<IpNet>,
}

impl ProxyProtocolConfig {
    /// Sends a PROXY v2 header to the parent.
    pub fn sending() -> Self {
        ProxyProtocolConfig {
            send: true,
            ..ProxyProtocolConfig::default()
        }
    }

    /// Requires a PROXY v2 header from the child gateways in `from`.
    pub fn accepting(from: Vec<IpNet>) -> Self {
        ProxyProtocolConfig {
            accept: true,
            accept_from: from,
            ..ProxyProtocolConfig::default()
        }
    }
}

/// `limits`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
#[non_exhaustive]
pub struct Limits {
    /// Concurrent proxied connections in total.
    pub max_connections: usize,
    /// Concurrent proxied connections per client address.
    pub max_connections_per_source: usize,
    /// Gateways a connection may pass before it is refused as a loop.
    pub max_hops: u8,
    /// Connections the kernel queues per proxy listener before they are accepted (capped by
    /// the kernel's `net.core.somaxconn`).
    pub listen_backlog: u32,
    /// The largest ClientHello the sniffer accepts, in bytes of handshake message: its 4-byte
    /// handshake header and body, record headers not counted, however many records carry it
    /// (default 65,536: a hello of exactly this size passes, one byte more is refused with an
    /// `illegal_parameter` alert).
    pub max_client_hello: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: defaults::MAX_CONNECTIONS,
            max_connections_per_source: defaults::MAX_CONNECTIONS_PER_SOURCE,
            max_hops: defaults::MAX_HOPS,
            listen_backlog: defaults::LISTEN_BACKLOG,
            max_client_hello: defaults::MAX_CLIENT_HELLO,
        }
    }
}

impl Limits {
    /// Sets `maxConnections`.
    pub fn with_max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// Sets `maxConnectionsPerSource`.
    pub fn with_max_connections_per_source(mut self, n: usize) -> Self {
        self.max_connections_per_source = n;
        self
    }

    /// Sets `maxHops`.
    pub fn with_max_hops(mut self, hops: u8) -> Self {
        self.max_hops = hops;
        self
    }

    /// Sets `listenBacklog`.
    pub fn with_listen_backlog(mut self, backlog: u32) -> Self {
        self.listen_backlog = backlog;
        self
    }

    /// Sets `maxClientHello` (bytes of the handshake message).
    pub fn with_max_client_hello(mut self, bytes: usize) -> Self {
        self.max_client_hello = bytes;
        self
    }
}

/// `relay`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
#[non_exhaustive]
pub struct RelayConfig {
    /// Move bulk transfers with `splice(2)` instead of copying them through user space (Linux
    /// builds with the `splice` feature; ignored elsewhere). Less CPU per byte; `false` trades
    /// that for a little throughput when the gateway shares its CPUs with busy endpoints.
    pub zero_copy: bool,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            zero_copy: defaults::ZERO_COPY,
        }
    }
}

/// `timeouts`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
#[non_exhaustive]
pub struct Timeouts {
    /// Until the server name is known.
    #[serde(with = "duration")]
    pub sniff: Duration,
    /// To open the next hop (resolution included).
    #[serde(with = "duration")]
    pub connect: Duration,
    /// Without bytes in either direction.
    #[serde(with = "duration")]
    pub idle: Duration,
    /// For open connections to finish at shutdown.
    #[serde(with = "duration")]
    pub shutdown_drain: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            sniff: defaults::SNIFF_TIMEOUT,
            connect: defaults::CONNECT_TIMEOUT,
            idle: defaults::IDLE_TIMEOUT,
            shutdown_drain: defaults::SHUTDOWN_DRAIN,
        }
    }
}

/// `metricsExport`: how the metrics are pushed to `openTelemetryMetricsCollectorAddr`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
#[non_exhaustive]
pub struct MetricsExportConfig {
    /// How often the metrics are pushed (default [`defaults::METRICS_EXPORT_INTERVAL`]).
    #[serde(with = "duration")]
    pub interval: Duration,
    /// How long one push may take, the last one at shutdown included (default
    /// [`defaults::METRICS_EXPORT_TIMEOUT`]).
    #[serde(with = "duration")]
    pub timeout: Duration,
}

impl Default for MetricsExportConfig {
    fn default() -> Self {
        MetricsExportConfig {
            interval: defaults::METRICS_EXPORT_INTERVAL,
            timeout: defaults::METRICS_EXPORT_TIMEOUT,
        }
    }
}

impl MetricsExportConfig {
    /// Sets `interval`.
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sets `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl RelayConfig {
    /// Turns the zero-copy relay on or off (`zeroCopy`).
    pub fn with_zero_copy(mut self, on: bool) -> Self {
        self.zero_copy = on;
        self
    }
}

impl Timeouts {
    /// Sets `sniff`.
    pub fn with_sniff(mut self, timeout: Duration) -> Self {
        self.sniff = timeout;
        self
    }

    /// Sets `connect`.
    pub fn with_connect(mut self, timeout: Duration) -> Self {
        self.connect = timeout;
        self
    }

    /// Sets `idle`.
    pub fn with_idle(mut self, timeout: Duration) -> Self {
        self.idle = timeout;
        self
    }

    /// Sets `shutdownDrain`.
    pub fn with_shutdown_drain(mut self, timeout: Duration) -> Self {
        self.shutdown_drain = timeout;
        self
    }
}

impl Config {
    /// Compiles `allowList` into an [`Allowlist`].
    pub fn allowlist(&self) -> Allowlist {
        let list = &self.allow_list;
        let mut builder = Allowlist::builder();
        if list.enable_arc_domains {
            builder = builder.arc_domains();
        }
        for (index, entry) in list.domains.iter().enumerate() {
            let route = match entry.destination_type {
                DestinationType::External => Route::External,
                DestinationType::Internal => Route::Internal,
            };
            builder = builder.rule(
                entry.pattern.clone(),
                route,
                entry.port,
                RuleOrigin::Config { index },
            );
        }
        if let Some(ranges) = &list.source_ip_range {
            builder = builder.source_ranges(ranges.iter().map(|r| r.0));
        }
        builder.build()
    }

    /// The parent gateways, in failover order (empty: this is the top level).
    pub fn parent_addrs(&self) -> Vec<IpAddr> {
        match (&self.parent_ip_addrs, self.parent_ip_addr) {
            (Some(list), _) => list.clone(),
            (None, Some(one)) => vec![one],
            (None, None) => Vec::new(),
        }
    }

    /// Whether this level forwards to the real destination (no parent configured).
    pub fn is_top_level(&self) -> bool {
        self.parent_addrs().is_empty()
    }

    /// The listeners to run: the configured ones, or the defaults (`0.0.0.0:443` tls,
    /// `0.0.0.0:80` http, and `0.0.0.0:<port>` auto for each internal entry's port).
    pub fn effective_listeners(&self) -> Vec<ListenerConfig> {
        if let Some(listeners) = &self.listeners {
            return listeners.clone();
        }
        let any = |port| SocketAddr::from(([0, 0, 0, 0], port));
        let mut out = vec![
            ListenerConfig::new(any(443), ListenerProtocol::Tls),
            ListenerConfig::new(any(80), ListenerProtocol::Http),
        ];
        for entry in &self.allow_list.domains {
            if let Some(port) = entry.port
                && !out.iter().any(|l| l.bind.port() == port)
            {
                out.push(ListenerConfig::new(any(port), ListenerProtocol::Auto));
            }
        }
        out
    }

    /// The number of workers to run: `workers`, or one per CPU this process may use (its CPU
    /// affinity and cgroup quota; 1 when that cannot be told).
    pub fn effective_workers(&self) -> usize {
        self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
    }

    /// Checks what serde cannot (values that contradict each other) for a configuration built
    /// in code: the warnings, or an [`Error::Invalid`] naming the key (the file is
    /// `"configuration"`). [`Config::parse`] runs the same checks.
    pub fn validate(&self) -> Result<Vec<String>, Error> {
        self.check().map_err(|(key, message)| Error::Invalid {
            file: "configuration".into(),
            key,
            message,
        })
    }

    /// The checks of [`validate`](Self::validate): the warnings, or the key at fault and why.
    pub(super) fn check(&self) -> Result<Vec<String>, (String, String)> {
        let mut warnings = Vec::new();
        for (present, key) in [
            (self.image.is_some(), "image"),
            (self.replicas.is_some(), "replicas"),
            (self.node_tolerations.is_some(), "nodeTolerations"),
        ] {
            if present {
                warnings.push(format!("`{key}` has no meaning for lnm and is ignored"));
            }
        }
        if self.parent_ip_addr.is_some() && self.parent_ip_addrs.is_some() {
            return Err((
                "parentIpAddrs".into(),
                "set either parentIpAddr or parentIpAddrs, not both".into(),
            ));
        }
        if self.parent_ip_addrs.as_ref().is_some_and(Vec::is_empty) {
            return Err((
                "parentIpAddrs".into(),
                "the list is empty; remove it for a top level".into(),
            ));
        }
        if let Some(level) = self.level.filter(|&l| l < defaults::TOP_LEVEL)
            && self.is_top_level()
        {
            warnings.push(format!(
                "level {level} has no `parentIpAddr`: this gateway connects straight to the \
                     real destinations (the internet), as the top level does"
            ));
        }
        if self.allow_list.domains.is_empty() && !self.allow_list.enable_arc_domains {
            warnings
                .push("the allowlist is empty: every connection and query will be denied".into());
        }
        if self
            .allow_list
            .source_ip_range
            .as_ref()
            .is_some_and(Vec::is_empty)
        {
            warnings
                .push("`allowList.sourceIpRange` is an empty list: no client is admitted".into());
        }
        let listeners = self.effective_listeners();
        for (i, l) in listeners.iter().enumerate() {
            if l.destination_port() == 0 {
                warnings.push(format!(
                    "listeners[{i}] binds {} without `destinationPort`: its connections would be \
                     forwarded to port 0; set the destination port",
                    l.bind
                ));
            }
        }
        for (i, l) in listeners.iter().enumerate() {
            // Port 0 asks the system for a free port: several such listeners are fine.
            if l.bind.port() != 0 && listeners[..i].iter().any(|other| other.bind == l.bind) {
                return Err((
                    format!("listeners[{i}].bind"),
                    format!("{} is listed twice", l.bind),
                ));
            }
        }
        for parent in self.parent_addrs() {
            for (i, l) in listeners.iter().enumerate() {
                let parent_port = self.parent_port.unwrap_or(l.destination_port());
                let same_ip = l.bind.ip() == parent
                    || (l.bind.ip().is_unspecified()
                        && (parent.is_loopback() || parent.is_unspecified()));
                if same_ip && l.bind.port() == parent_port {
                    return Err((
                        "parentIpAddr".into(),
                        format!(
                            "the parent {parent}:{parent_port} is this gateway's own listener \
                             listeners[{i}] ({}): a static loop",
                            l.bind
                        ),
                    ));
                }
            }
        }
        if self.proxy_protocol.accept && self.proxy_protocol.accept_from.is_empty() {
            return Err((
                "proxyProtocol.acceptFrom".into(),
                "list the child gateways whose PROXY headers are trusted".into(),
            ));
        }
        if self.limits.listen_backlog == 0 {
            return Err(("limits.listenBacklog".into(), "must be at least 1".into()));
        }
        if let Some(workers) = self.workers
            && !(1..=defaults::MAX_WORKERS).contains(&workers)
        {
            return Err((
                "workers".into(),
                format!(
                    "must be between 1 and {} (absent: one per CPU)",
                    defaults::MAX_WORKERS
                ),
            ));
        }
        if self.limits.max_hops == 0 {
            return Err(("limits.maxHops".into(), "must be at least 1".into()));
        }
        if let Some(dns) = &self.dns
            && dns.answer_ipv4.is_empty()
            && dns.answer_ipv6.is_empty()
        {
            return Err((
                "dns.answerIpv4".into(),
                "the DNS server needs at least one address to answer with (this gateway's)".into(),
            ));
        }
        if self.metrics_export.interval.is_zero() {
            return Err((
                "metricsExport.interval".into(),
                "must be positive (remove openTelemetryMetricsCollectorAddr to push nothing)"
                    .into(),
            ));
        }
        if self.metrics_export.timeout.is_zero() {
            return Err(("metricsExport.timeout".into(), "must be positive".into()));
        }
        if self.timeouts.sniff.is_zero() || self.timeouts.connect.is_zero() {
            return Err((
                "timeouts".into(),
                "sniff and connect timeouts must be positive".into(),
            ));
        }
        if self.limits.max_client_hello < 512 {
            return Err((
                "limits.maxClientHello".into(),
                "must be at least 512 bytes (real ClientHellos are 200 B to 2 KiB and more)".into(),
            ));
        }
        for entry in &self.allow_list.domains {
            if let (Some(port), Pattern::Exact(name)) = (entry.port, &entry.pattern)
                && !self.resolver.hosts.contains_key(name)
            {
                warnings.push(format!(
                    "internal destination {name}:{port} has no address in `resolver.hosts`; \
                         it will be resolved with `resolver.upstream`"
                ));
            }
        }
        Ok(warnings)
    }
}
