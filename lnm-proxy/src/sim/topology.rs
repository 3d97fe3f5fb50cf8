//! [`Topology`]: a whole Purdue stack — a cloud origin, one gateway per level, clients — on
//! loopback sockets or in-process.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lnm_core::hop::{Memory, MemoryNetwork};
use lnm_dns::{
    DnsRequest, Query, Rcode, Refuser, Response, RewriteConfig, RewriteResolver, Rtype, Transport,
};
use lnm_policy::Allowlist;
use lnm_policy::config::{
    Config, DnsConfig, DomainEntry, ListenerConfig, ListenerProtocol, ResolverConfig,
};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, UdpSocket};
use tower::ServiceExt;

use super::origin::{tls_origin, tls_origin_in_memory};
use super::{SimError, TestPki};
use crate::{ConnReport, Gateway, GatewayBuilder, Incoming, Observer};

/// Where the simulated levels run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// Real sockets on loopback: level `N`'s gateway on `127.0.N.1` (proxy, DNS), its internal
    /// services on `127.0.N.20`, its clients on `127.0.N.100`; the cloud on `127.0.100.1` with
    /// its DNS on `127.0.100.53`. Every port is ephemeral. (Linux routes all of `127/8` to lo.)
    #[default]
    Loopback,
    /// No sockets: tokio pipes on a [`MemoryNetwork`], DNS answered by calling the resolver
    /// service directly. Level `N`'s clients appear as `10.N.0.100`.
    InMemory,
}

/// Adjusts the [`GatewayBuilder`] of a simulated level: the application's own hops, policy
/// layer, observers.
type Customize = Arc<dyn Fn(GatewayBuilder) -> GatewayBuilder + Send + Sync>;

/// Adjusts the configuration of a simulated level before its gateway is built.
type Configure = Arc<dyn Fn(Config) -> Config + Send + Sync>;

/// One level of the topology.
///
/// Each level runs a real [`Gateway`], built from a typed [`Config`] that the simulator writes
/// (parent, allowlist, listeners, DNS) by the same code as a production level — and the
/// application can change both the configuration ([`configure`](Self::configure)) and the
/// builder ([`gateway`](Self::gateway)): its own gateway is then one level of the topology.
#[derive(Clone)]
pub struct LevelSpec {
    level: u8,
    allow: Vec<String>,
    services: Vec<String>,
    sources: Vec<String>,
    configure: Option<Configure>,
    customize: Option<Customize>,
}

impl std::fmt::Debug for LevelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LevelSpec")
            .field("level", &self.level)
            .field("allow", &self.allow)
            .field("services", &self.services)
            .field("sources", &self.sources)
            .field("configured", &self.configure.is_some())
            .field("customized", &self.customize.is_some())
            .finish()
    }
}

impl LevelSpec {
    /// Level `level` (0..=99), allowing nothing yet.
    pub fn new(level: u8) -> Self {
        LevelSpec {
            level,
            allow: Vec::new(),
            services: Vec::new(),
            sources: Vec::new(),
            configure: None,
            customize: None,
        }
    }

    /// Allows an external pattern (`name` or `*.suffix`) at this level.
    pub fn allow(mut self, pattern: &str) -> Self {
        self.allow.push(pattern.to_owned());
        self
    }

    /// Runs an internal (east-west) TLS service named `name` on this level, allowlisted as an
    /// `internal` entry on its own port.
    pub fn internal_service(mut self, name: &str) -> Self {
        self.services.push(name.to_owned());
        self
    }

    /// Restricts this level's clients to `cidr` (`sourceIpRange`); callable several times.
    pub fn source_range(mut self, cidr: &str) -> Self {
        self.sources.push(cidr.to_owned());
        self
    }

    /// Changes the configuration the simulator wrote for this level (timeouts, limits, PROXY
    /// protocol, more allowlist entries...). The addresses it chose (listeners, DNS, parent)
    /// are what the topology's clients use: keep them.
    pub fn configure(
        mut self,
        configure: impl Fn(Config) -> Config + Send + Sync + 'static,
    ) -> Self {
        self.configure = Some(Arc::new(configure));
        self
    }

    /// Builds this level's gateway through `customize`: the application's own hops
    /// ([`GatewayBuilder::wrap_hops`], [`GatewayBuilder::external_hop`]), policy layer and
    /// observers. It runs after the simulator set its own parts (in memory: the hops and
    /// connection sources of the in-process network), so a wrapper wraps those.
    pub fn gateway(
        mut self,
        customize: impl Fn(GatewayBuilder) -> GatewayBuilder + Send + Sync + 'static,
    ) -> Self {
        self.customize = Some(Arc::new(customize));
        self
    }

    /// The configuration every level starts from: level, allowlist, source ranges.
    fn base_config(&self, services: &[(String, u16)]) -> Result<Config, SimError> {
        let mut config = Config::level(self.level);
        for pattern in &self.allow {
            let entry =
                DomainEntry::external(pattern).map_err(|e| SimError::Invalid(Box::new(e)))?;
            config = config.allow(entry);
        }
        for (name, port) in services {
            let entry =
                DomainEntry::internal(name, *port).map_err(|e| SimError::Invalid(Box::new(e)))?;
            config = config.allow(entry);
        }
        for cidr in &self.sources {
            let net = match cidr.parse::<ipnet::IpNet>() {
                Ok(net) => net,
                Err(_) => cidr
                    .parse::<IpAddr>()
                    .map(ipnet::IpNet::from)
                    .map_err(|e| SimError::Invalid(Box::new(e)))?,
            };
            config = config.with_source_range(net);
        }
        Ok(config)
    }

    /// Applies the application's configuration change and builds the gateway.
    async fn start(
        &self,
        config: Config,
        simulator: impl FnOnce(GatewayBuilder) -> GatewayBuilder,
    ) -> Result<Gateway, SimError> {
        let config = match &self.configure {
            Some(configure) => configure(config),
            None => config,
        };
        let mut builder = simulator(Gateway::builder(config));
        if let Some(customize) = &self.customize {
            builder = customize(builder);
        }
        builder.start().await.map_err(|source| SimError::Start {
            level: self.level,
            source,
        })
    }
}

/// Builds a [`Topology`].
#[derive(Debug, Clone, Default)]
pub struct TopologyBuilder {
    cloud: Vec<String>,
    levels: Vec<LevelSpec>,
    network: Network,
}

impl TopologyBuilder {
    /// The names (patterns allowed) the cloud origin serves and its DNS resolves.
    pub fn cloud(mut self, names: &[&str]) -> Self {
        self.cloud.extend(names.iter().map(|n| n.to_string()));
        self
    }

    /// Adds a level, from the top down: the first level added reaches the cloud directly, each
    /// next one forwards to the previous one.
    pub fn level(mut self, spec: LevelSpec) -> Self {
        self.levels.push(spec);
        self
    }

    /// Chooses loopback sockets (default) or in-process pipes.
    pub fn network(mut self, network: Network) -> Self {
        self.network = network;
        self
    }

    /// Starts everything on the current tokio runtime.
    pub async fn start(self) -> Result<Topology, SimError> {
        if self.levels.is_empty() {
            return Err(SimError::Config(
                "a topology needs at least one level".into(),
            ));
        }
        if let Some(bad) = self.levels.iter().find(|l| l.level >= 100) {
            return Err(SimError::Config(format!(
                "level {} is out of range (0..=99)",
                bad.level
            )));
        }
        let mut cert_names: Vec<&str> = self.cloud.iter().map(String::as_str).collect();
        for level in &self.levels {
            cert_names.extend(level.services.iter().map(String::as_str));
        }
        let pki = TestPki::new(&cert_names)?;
        let reports: Arc<Mutex<Vec<(u8, ConnReport)>>> = Arc::default();
        match self.network {
            Network::Loopback => start_loopback(self, pki, reports).await,
            Network::InMemory => start_in_memory(self, pki, reports).await,
        }
    }
}

fn observer(level: u8, reports: &Arc<Mutex<Vec<(u8, ConnReport)>>>) -> Observer {
    let reports = reports.clone();
    Arc::new(move |report: &ConnReport| {
        reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((level, report.clone()));
    })
}

fn level_ip(level: u8, host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, level, host))
}

const CLOUD_LEVEL: u8 = 100;

async fn start_loopback(
    spec: TopologyBuilder,
    pki: TestPki,
    reports: Arc<Mutex<Vec<(u8, ConnReport)>>>,
) -> Result<Topology, SimError> {
    let origin = tls_origin(&pki, SocketAddr::new(level_ip(CLOUD_LEVEL, 1), 0), "origin").await?;
    // The internet's DNS, played by an lnm resolver that rewrites every cloud name to the origin.
    let mut cloud_list = Allowlist::builder();
    for name in &spec.cloud {
        cloud_list = cloud_list
            .external(name)
            .map_err(|e| SimError::Invalid(Box::new(e)))?;
    }
    let cloud_dns = RewriteResolver::new(
        cloud_list.build().into(),
        RewriteConfig::new(vec![Ipv4Addr::new(127, 0, CLOUD_LEVEL, 1)], vec![]),
        Refuser,
    );
    let (udp, tcp) = lnm_dns::bind(SocketAddr::new(level_ip(CLOUD_LEVEL, 53), 0))
        .await
        .map_err(|source| SimError::Bind {
            what: "cloud DNS".into(),
            source,
        })?;
    let cloud_dns_addr = udp.local_addr().map_err(|source| SimError::Bind {
        what: "cloud DNS".into(),
        source,
    })?;
    let cloud_server = lnm_dns::DnsServer::new(cloud_dns, lnm_dns::DnsLimits::default());
    tokio::spawn(async move { cloud_server.serve(udp, tcp).await });

    let mut levels = Vec::new();
    let mut parent: Option<SocketAddr> = None;
    for spec_level in &spec.levels {
        let n = spec_level.level;
        let ip = level_ip(n, 1);
        let mut services = Vec::new();
        for name in &spec_level.services {
            let addr = tls_origin(&pki, SocketAddr::new(level_ip(n, 20), 0), "internal").await?;
            services.push((name.clone(), addr));
        }
        let ports: Vec<(String, u16)> = services
            .iter()
            .map(|(n, a)| (n.clone(), a.port()))
            .collect();
        let mut config = spec_level.base_config(&ports)?;
        let mut resolver = ResolverConfig::default();
        match parent {
            Some(parent) => {
                config = config
                    .with_parent(parent.ip())
                    .with_parent_port(parent.port())
            }
            // The simulated cloud lives on loopback: turn the confused-deputy guard off here.
            None => {
                resolver = resolver
                    .with_upstream_servers(vec![cloud_dns_addr])
                    .with_refused_ranges(Vec::new())
            }
        }
        for (name, addr) in &services {
            let name = name.parse().map_err(|e| SimError::Invalid(Box::new(e)))?;
            resolver = resolver.with_host(name, addr.ip());
        }
        config = config.with_resolver(resolver).with_listener(
            ListenerConfig::new(SocketAddr::new(ip, 0), ListenerProtocol::Tls)
                .with_destination_port(origin.port()),
        );
        for (_, addr) in &services {
            config = config.with_listener(
                ListenerConfig::new(SocketAddr::new(ip, 0), ListenerProtocol::Auto)
                    .with_destination_port(addr.port()),
            );
        }
        let ipv4 = Ipv4Addr::new(127, 0, n, 1);
        config = config.with_dns(DnsConfig::new(SocketAddr::new(ip, 0), vec![ipv4]));
        let observer = observer(n, &reports);
        let gateway = spec_level
            .start(config, |builder| builder.observer(observer))
            .await?;
        let proxies = gateway.addrs_by_port();
        parent = proxies.get(&origin.port()).copied();
        levels.push(LevelHandle {
            level: n,
            gateway_ip: ip,
            proxies,
            services: services.into_iter().collect(),
            gateway,
        });
    }
    Ok(Topology {
        pki,
        levels,
        reports,
        network: Network::Loopback,
        net: None,
        tls_port: origin.port(),
    })
}

async fn start_in_memory(
    spec: TopologyBuilder,
    pki: TestPki,
    reports: Arc<Mutex<Vec<(u8, ConnReport)>>>,
) -> Result<Topology, SimError> {
    const TLS_PORT: u16 = 443;
    let net = MemoryNetwork::new();
    tls_origin_in_memory(&pki, &net, "cloud:443", "origin")?;
    let mut levels = Vec::new();
    let mut parent: Option<(String, IpAddr)> = None;
    for spec_level in &spec.levels {
        let n = spec_level.level;
        let ipv4 = Ipv4Addr::new(10, n, 0, 1);
        let ip = IpAddr::V4(ipv4);
        let mut services = Vec::new();
        for (i, name) in spec_level.services.iter().enumerate() {
            let port = 8883 + i as u16;
            tls_origin_in_memory(&pki, &net, &format!("{name}:{port}"), "internal")?;
            services.push((name.clone(), port));
        }
        let mut config = spec_level.base_config(&services)?;
        if let Some((_, parent_ip)) = &parent {
            // Informational here: the external hop is the in-process network's.
            config = config.with_parent(*parent_ip);
        }
        let ports: Vec<(u16, ListenerProtocol)> =
            std::iter::once((TLS_PORT, ListenerProtocol::Tls))
                .chain(
                    services
                        .iter()
                        .map(|(_, port)| (*port, ListenerProtocol::Auto)),
                )
                .collect();
        let mut incoming = Vec::new();
        for (port, protocol) in &ports {
            let bind = SocketAddr::new(ip, *port);
            config = config.with_listener(ListenerConfig::new(bind, *protocol));
            let name = format!("l{n}:{port}");
            let listener = net.bind(name.clone()).map_err(|e| SimError::Bind {
                what: format!("in-memory listener {name}"),
                source: std::io::Error::other(e),
            })?;
            incoming.push((bind, Incoming::Memory(listener)));
        }
        config = config.with_dns(DnsConfig::new(SocketAddr::new(ip, 53), vec![ipv4]));
        let upward = match &parent {
            Some((parent, _)) => parent.clone(),
            None => "cloud:443".to_owned(),
        };
        let from = SocketAddr::new(ip, TLS_PORT);
        let external = Memory::to(&net, upward).from_addr(from);
        let internal = Memory::by_target(&net).from_addr(from);
        let observer = observer(n, &reports);
        let gateway = spec_level
            .start(config, move |mut builder| {
                for (bind, source) in incoming {
                    builder = builder.incoming(bind, source);
                }
                builder
                    .external_hop(external)
                    .internal_hop(internal)
                    .dns_in_process()
                    .observer(observer)
            })
            .await?;
        parent = Some((format!("l{n}:{TLS_PORT}"), ip));
        levels.push(LevelHandle {
            level: n,
            gateway_ip: ip,
            proxies: gateway.addrs_by_port(),
            services: services
                .into_iter()
                .map(|(name, port)| (name, SocketAddr::new(ip, port)))
                .collect(),
            gateway,
        });
    }
    Ok(Topology {
        pki,
        levels,
        reports,
        network: Network::InMemory,
        net: Some(net),
        tls_port: TLS_PORT,
    })
}

/// One running level.
pub struct LevelHandle {
    level: u8,
    gateway_ip: IpAddr,
    /// destination port → proxy listener address.
    proxies: HashMap<u16, SocketAddr>,
    services: HashMap<String, SocketAddr>,
    gateway: Gateway,
}

impl std::fmt::Debug for LevelHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LevelHandle")
            .field("level", &self.level)
            .field("proxies", &self.proxies)
            .field("gateway", &self.gateway)
            .finish_non_exhaustive()
    }
}

impl LevelHandle {
    /// The level number.
    pub fn level(&self) -> u8 {
        self.level
    }

    /// The gateway's address (what its DNS answers for allowlisted names).
    pub fn gateway_ip(&self) -> IpAddr {
        self.gateway_ip
    }

    /// The proxy listener for TLS to the cloud (destination port of the cloud origin).
    pub fn proxy(&self, port: u16) -> Option<SocketAddr> {
        self.proxies.get(&port).copied()
    }

    /// The DNS server's address (loopback only).
    pub fn dns(&self) -> Option<SocketAddr> {
        self.gateway.dns_addr()
    }

    /// The level's gateway (its allowlist, reload, addresses).
    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// The level's gateway, to [`reload`](Gateway::reload) it.
    pub fn gateway_mut(&mut self) -> &mut Gateway {
        &mut self.gateway
    }

    /// The port of the internal service `name` on this level.
    pub fn service_port(&self, name: &str) -> Option<u16> {
        self.services.get(name).map(SocketAddr::port)
    }
}

/// A running topology: see [`Topology::builder`].
pub struct Topology {
    pki: TestPki,
    levels: Vec<LevelHandle>,
    reports: Arc<Mutex<Vec<(u8, ConnReport)>>>,
    network: Network,
    net: Option<MemoryNetwork>,
    tls_port: u16,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topology")
            .field("network", &self.network)
            .field("levels", &self.levels)
            .finish_non_exhaustive()
    }
}

impl Topology {
    /// Starts describing a topology.
    pub fn builder() -> TopologyBuilder {
        TopologyBuilder::default()
    }

    /// The level numbered `level`.
    pub fn level(&self, level: u8) -> Option<&LevelHandle> {
        self.levels.iter().find(|l| l.level == level)
    }

    /// The levels, top down.
    pub fn levels(&self) -> &[LevelHandle] {
        &self.levels
    }

    /// The PKI of every origin (to trust it from other clients: curl, openssl).
    pub fn pki(&self) -> &TestPki {
        &self.pki
    }

    /// The destination port of TLS to the cloud.
    pub fn tls_port(&self) -> u16 {
        self.tls_port
    }

    /// A client on level `level`, using that level's gateway for DNS and proxying.
    pub fn client(&self, level: u8) -> Result<Client<'_>, SimError> {
        let handle = self
            .level(level)
            .ok_or_else(|| SimError::Config(format!("no level {level}")))?;
        Ok(Client {
            topology: self,
            level: handle,
        })
    }

    /// Every connection report so far, as (level, report), in completion order.
    pub fn reports(&self) -> Vec<(u8, ConnReport)> {
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Removes and returns the reports so far.
    pub fn take_reports(&self) -> Vec<(u8, ConnReport)> {
        std::mem::take(&mut *self.reports.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Waits (up to `within`) until `n` reports are collected, and takes them.
    pub async fn wait_reports(&self, n: usize, within: Duration) -> Vec<(u8, ConnReport)> {
        let deadline = tokio::time::Instant::now() + within;
        while self.reports.lock().unwrap_or_else(|e| e.into_inner()).len() < n
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.take_reports()
    }

    /// The level numbered `level`, to reload its gateway.
    pub fn level_mut(&mut self, level: u8) -> Option<&mut LevelHandle> {
        self.levels.iter_mut().find(|l| l.level == level)
    }

    /// Stops every level (draining open connections).
    pub async fn shutdown(self) {
        for level in self.levels {
            level.gateway.shutdown().await;
        }
    }
}

/// A host of one level: resolves through its level's DNS and connects through its proxy.
#[derive(Debug)]
pub struct Client<'t> {
    topology: &'t Topology,
    level: &'t LevelHandle,
}

/// Something a client can talk TLS over.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl Client<'_> {
    fn source(&self) -> SocketAddr {
        match self.topology.network {
            Network::Loopback => SocketAddr::new(level_ip(self.level.level, 100), 0),
            Network::InMemory => SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(10, self.level.level, 0, 100)),
                40_000,
            ),
        }
    }

    /// Resolves `name` (A) through the level's DNS: the addresses, or why not
    /// ([`SimError::DnsRefused`] when the level refused the name, [`SimError::DnsNoAddress`]
    /// when it answered without an address).
    pub async fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, SimError> {
        let query = Query::build(name, Rtype::A).map_err(|e| SimError::Invalid(Box::new(e)))?;
        let response = match (self.level.gateway.dns_resolver(), self.level.dns()) {
            (Some(resolver), None) => {
                let request = DnsRequest {
                    query,
                    source: self.source(),
                    transport: Transport::Udp,
                };
                let Ok(response) = resolver.clone().oneshot(request).await;
                response
            }
            (_, Some(server)) => {
                let socket = UdpSocket::bind(SocketAddr::new(self.source().ip(), 0))
                    .await
                    .map_err(SimError::io("binding the DNS client"))?;
                socket
                    .send_to(query.as_bytes(), server)
                    .await
                    .map_err(SimError::io(format!("sending to {server}")))?;
                let mut buf = vec![0u8; 4096];
                let n = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
                    .await
                    .map_err(|_| SimError::Dns(format!("no answer from {server}")))?
                    .map_err(SimError::io(format!("receiving from {server}")))?;
                buf.truncate(n);
                Response::new(buf)
            }
            (None, None) => return Err(SimError::Dns("this level has no DNS".into())),
        };
        let Some(rcode) = response.rcode() else {
            return Err(SimError::Dns(format!("{name}: an answer without a header")));
        };
        let ips: Vec<IpAddr> = response
            .answers()
            .into_iter()
            .filter(IpAddr::is_ipv4)
            .collect();
        if ips.is_empty() {
            if rcode == Rcode::REFUSED {
                return Err(SimError::DnsRefused {
                    name: name.to_owned(),
                });
            }
            return Err(SimError::DnsNoAddress {
                name: name.to_owned(),
                rcode: rcode.to_string(),
            });
        }
        Ok(ips)
    }

    async fn connect(&self, port: u16) -> Result<Box<dyn Io>, SimError> {
        let proxy = self
            .level
            .proxy(port)
            .ok_or_else(|| SimError::Config(format!("no listener for port {port}")))?;
        match (&self.topology.net, self.topology.network) {
            (Some(net), Network::InMemory) => {
                let pipe = net
                    .connect(&format!("l{}:{port}", self.level.level), self.source())
                    .await
                    .map_err(|e| SimError::Io {
                        context: format!("connecting to level {}", self.level.level),
                        source: std::io::Error::other(e),
                    })?;
                Ok(Box::new(pipe))
            }
            _ => {
                let socket = TcpSocket::new_v4().map_err(SimError::io("a client socket"))?;
                socket
                    .bind(self.source())
                    .map_err(SimError::io(format!("binding {}", self.source())))?;
                let tcp = socket
                    .connect(proxy)
                    .await
                    .map_err(SimError::io(format!("connecting to {proxy}")))?;
                Ok(Box::new(tcp))
            }
        }
    }

    /// `GET path` over TLS to `name`: resolved through the level's DNS (which must answer with
    /// the gateway), then through the proxy. Returns the response body.
    pub async fn https_get(&self, name: &str, path: &str) -> Result<String, SimError> {
        let ips = self.resolve(name).await?;
        if !ips.contains(&self.level.gateway_ip) {
            return Err(SimError::NotTheGateway {
                name: name.to_owned(),
                addrs: ips,
                gateway: self.level.gateway_ip,
            });
        }
        self.https_get_via_proxy(name, self.topology.tls_port, path)
            .await
    }

    /// `GET path` over TLS to `name` through the proxy listener for `port`, without asking DNS
    /// (to see what the proxy itself decides).
    pub async fn https_get_via_proxy(
        &self,
        name: &str,
        port: u16,
        path: &str,
    ) -> Result<String, SimError> {
        let io = self.connect(port).await?;
        let connector = tokio_rustls::TlsConnector::from(self.topology.pki.client.clone());
        let server_name =
            ServerName::try_from(name.to_owned()).map_err(|e| SimError::Invalid(Box::new(e)))?;
        let mut tls = connector
            .connect(server_name, io)
            .await
            .map_err(|source| SimError::Tls {
                name: name.to_owned(),
                source,
            })?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
        tls.write_all(request.as_bytes())
            .await
            .map_err(SimError::io(format!("sending the request to {name}")))?;
        let mut response = Vec::new();
        let _ = tls.read_to_end(&mut response).await;
        let text = String::from_utf8_lossy(&response).into_owned();
        Ok(text
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or(text))
    }

    /// `GET path` to the internal service `name` of this level, on its own port.
    pub async fn internal_get(&self, name: &str, path: &str) -> Result<String, SimError> {
        let port = self
            .level
            .service_port(name)
            .ok_or_else(|| SimError::Config(format!("no internal service {name}")))?;
        let ips = self.resolve(name).await?;
        if !ips.contains(&self.level.gateway_ip) {
            return Err(SimError::NotTheGateway {
                name: name.to_owned(),
                addrs: ips,
                gateway: self.level.gateway_ip,
            });
        }
        self.https_get_via_proxy(name, port, path).await
    }
}
