//! [`Gateway`]: one Purdue level — proxy listeners, DNS rewrite server, admin endpoint — from
//! its configuration, sharing one allowlist.
//!
//! The hops follow from the configuration: [`Parent`] when `parentIpAddr(s)` is set, else
//! [`Direct`] with the `resolver` settings; [`Internal`] from `resolver.hosts` for east-west
//! entries. With the `dns` feature (on by default) the `dns` section runs the rewrite server.
//!
//! Every part can be replaced through [`GatewayBuilder`]: the hops (replaced or wrapped), a
//! tower layer over the policy decision, observers, the source of each listener's connections,
//! and the DNS server (bound, or asked in process). The configuration's DNS, admin, limits,
//! PROXY protocol and reload keep working with the application's parts.
//!
//! A gateway runs `workers` event loops (one per CPU by default, see
//! [`Config::effective_workers`]): the runtime that starts it, plus threads with a
//! current-thread runtime each. Every worker accepts on its own `SO_REUSEPORT` copy of each
//! proxy listener and of the DNS socket, and serves what it accepted on its own thread; the
//! allowlist, the connection limits (exact, counted across workers), the metrics, reload and
//! the shutdown drain cover all workers. A listener served from a source the application hands
//! in ([`GatewayBuilder::incoming`]) runs on the starting runtime.
//!
//! [`Gateway::reload`] applies a new configuration without touching live connections: the
//! allowlist is swapped atomically (DNS and proxy alike), and each listener hands its new
//! connections to a proxy built from the new settings and hops. Changing what is bound
//! (listener or DNS addresses, DNS answers or upstreams, the admin address) needs a restart and
//! is reported as such.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use lnm_core::OwnAddrs;
use lnm_core::hop::SharedHop;
use lnm_core::socket::{Bind, tcp_listeners};
use lnm_policy::config::{Config, ListenerConfig};
use lnm_policy::{AllowlistHandle, BoxPolicy, Decision, Policy, Request, Route};
use tokio_util::sync::CancellationToken;

use crate::admin::{Admin, RenderMetrics};
use crate::error::{Error, NeedsRestart, ReloadReport};
use crate::parts::{external_hop, internal_hop};
use crate::workers::Workers;
use crate::{ConnLimits, Incoming, Observer, Proxy, ProxyServer, ProxySettings};

/// Wraps the hops a gateway builds from its configuration (see [`GatewayBuilder::wrap_hops`]).
pub type HopWrapper = Arc<dyn Fn(Route, SharedHop) -> SharedHop + Send + Sync>;

/// Builds the policy a gateway asks from the plain allowlist policy (see
/// [`GatewayBuilder::policy_layer`]).
type PolicyStack = Arc<dyn Fn(Policy) -> BoxPolicy + Send + Sync>;

/// The rewrite resolver of a gateway: the allowlist's rewrite, with the configured upstreams or
/// REFUSED behind it.
#[cfg(feature = "dns")]
pub type GatewayResolver = lnm_dns::RewriteResolver<lnm_dns::Fallback>;

struct Listener {
    config: ListenerConfig,
    addr: SocketAddr,
    server: ProxyServer,
}

/// What a gateway was built with besides its configuration: reload builds with the same.
#[derive(Clone, Default)]
struct Parts {
    observer: Option<Observer>,
    external: Option<SharedHop>,
    internal: Option<SharedHop>,
    wrap: Option<HopWrapper>,
}

/// One level, bound and serving: proxy listeners, DNS rewrite server and admin endpoint
/// sharing one allowlist.
///
/// It runs `workers` event loops ([`Config::effective_workers`]: `workers`, or one per CPU the
/// process may use): worker 0 is the tokio runtime that called [`GatewayBuilder::start`] (any
/// flavour; it also runs the admin endpoint), the others are threads named `lnm-worker-<i>`
/// with a current-thread runtime each, stopped by [`shutdown`](Self::shutdown) or when the
/// gateway is dropped. Each worker accepts on its own `SO_REUSEPORT` copy of every listener the
/// gateway binds and of the DNS sockets, and serves what it accepted on its own thread; the
/// allowlist, the connection limits (exact across workers), the metrics, reload and the drain
/// cover them all. A source handed in with [`GatewayBuilder::incoming`] is served on worker 0.
///
/// [`Gateway::reload`] applies a new configuration without touching live connections: the
/// allowlist is swapped atomically (DNS and proxy alike), and each listener hands its new
/// connections to a proxy built from the new settings and hops (the application's hop
/// replacements and wrapper included). Changing what is bound (listener or DNS addresses, DNS
/// answers or upstreams, the admin address), the connection limits or the number of workers
/// needs a restart and is reported as such.
pub struct Gateway {
    config: Config,
    allowlist: AllowlistHandle,
    policy: BoxPolicy,
    own: OwnAddrs,
    listeners: Vec<Listener>,
    dns: Option<(SocketAddr, CancellationToken)>,
    #[cfg(feature = "dns")]
    resolver: Option<GatewayResolver>,
    admin: Option<Admin>,
    parts: Parts,
    workers: Workers,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("listeners", &self.addrs())
            .field("dns", &self.dns_addr())
            .field("admin", &self.admin_addr())
            .field("workers", &self.workers.count())
            .finish()
    }
}

impl Gateway {
    /// Binds every listener, the DNS server and the admin endpoint of `config` and starts
    /// serving: on the current tokio runtime (any flavour), which is worker 0, and on
    /// `workers - 1` threads of its own with a current-thread runtime each (see [`Gateway`]).
    /// `metrics` renders `/metrics` (the application's exporter); without it `/metrics` is
    /// empty.
    ///
    /// Fails, naming the address, when something cannot be bound.
    pub async fn start(config: &Config, metrics: Option<RenderMetrics>) -> Result<Gateway, Error> {
        let mut builder = Gateway::builder(config.clone());
        if let Some(render) = metrics {
            builder = builder.metrics(render);
        }
        builder.start().await
    }

    /// A gateway built from `config` with the application's own parts: hops, a policy layer,
    /// observers, connection sources (see [`GatewayBuilder`]).
    pub fn builder(config: Config) -> GatewayBuilder {
        GatewayBuilder {
            config,
            metrics: None,
            policy: None,
            incoming: Vec::new(),
            dns_in_process: false,
            parts: Parts::default(),
        }
    }
}

/// Builds a [`Gateway`]: the configuration, plus every part the application replaces.
///
/// Whatever is replaced, the rest of the configuration keeps working: DNS, admin, limits,
/// PROXY protocol, timeouts and [`reload`](Gateway::reload).
///
/// ```no_run
/// use std::sync::Arc;
/// use lnm_core::hop::SharedHop;
/// use lnm_policy::{Config, Decision, Reason};
/// use lnm_proxy::Gateway;
/// use lnm_proxy::tower::{ServiceBuilder, layer::layer_fn};
///
/// # async fn run(config: Config) -> Result<(), lnm_proxy::Error> {
/// let gateway = Gateway::builder(config)
///     // Around every hop the configuration gives (rebuilt the same way on reload).
///     .wrap_hops(|_route, hop: SharedHop| hop)
///     // Over every decision of the allowlist.
///     .policy_layer(layer_fn(|policy| {
///         ServiceBuilder::new()
///             .map_response(|d: Decision| d)
///             .service(policy)
///     }))
///     .start()
///     .await?;
/// # Ok(())
/// # }
/// ```
pub struct GatewayBuilder {
    config: Config,
    metrics: Option<RenderMetrics>,
    policy: Option<PolicyStack>,
    incoming: Vec<(SocketAddr, Incoming)>,
    dns_in_process: bool,
    parts: Parts,
}

impl std::fmt::Debug for GatewayBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayBuilder").finish_non_exhaustive()
    }
}

impl GatewayBuilder {
    /// Renders `/metrics` with the application's exporter.
    pub fn metrics(mut self, render: RenderMetrics) -> Self {
        self.metrics = Some(render);
        self
    }

    /// Calls `observer` with the report of every finished proxied connection.
    pub fn observer(mut self, observer: Observer) -> Self {
        self.parts.observer = Some(observer);
        self
    }

    /// Forwards external routes through `hop` instead of the [`Parent`](lnm_core::hop::Parent)
    /// or [`Direct`](lnm_core::hop::Direct) hop of the configuration. Kept across reloads.
    pub fn external_hop(mut self, hop: impl lnm_core::Hop) -> Self {
        self.parts.external = Some(Arc::new(hop));
        self
    }

    /// Forwards internal (east-west) routes through `hop` instead of the configuration's
    /// `resolver.hosts` map. Kept across reloads.
    pub fn internal_hop(mut self, hop: impl lnm_core::Hop) -> Self {
        self.parts.internal = Some(Arc::new(hop));
        self
    }

    /// Wraps each hop — the one of the configuration, or a replacement — with `wrap` (called
    /// with the route it serves): an audit log, a tower stack through
    /// [`HopService`](lnm_core::hop::HopService) and [`TowerHop`](lnm_core::hop::TowerHop), a
    /// policy of its own. Called again for the hops a reload builds.
    pub fn wrap_hops(
        mut self,
        wrap: impl Fn(Route, SharedHop) -> SharedHop + Send + Sync + 'static,
    ) -> Self {
        self.parts.wrap = Some(Arc::new(wrap));
        self
    }

    /// Puts `layer` over the allowlist decision: every connection is decided by
    /// `layer.layer(Policy)` (see [`BoxPolicy`]). The layered service is built once and
    /// shared by every listener; reloads swap the allowlist under it.
    pub fn policy_layer<L, S, E>(mut self, layer: L) -> Self
    where
        L: tower::Layer<Policy, Service = S> + Send + Sync + 'static,
        S: for<'a> tower::Service<Request<'a>, Response = Decision, Error = E>
            + Clone
            + Send
            + Sync
            + 'static,
        for<'a> <S as tower::Service<Request<'a>>>::Future: Send,
        E: Into<lnm_core::BoxError>,
    {
        self.policy = Some(Arc::new(move |policy| BoxPolicy::new(layer.layer(policy))));
        self
    }

    /// Serves the configured listener bound to `bind` from `incoming` instead of binding TCP
    /// (an in-memory listener, a channel of the application's connections, a listener it
    /// bound itself). Connections from a non-TCP source report `bind` as their local address.
    pub fn incoming(mut self, bind: SocketAddr, incoming: Incoming) -> Self {
        self.incoming.push((bind, incoming));
        self
    }

    /// Builds the DNS rewrite resolver of the `dns` section without binding its address:
    /// the application (or a simulation) asks [`Gateway::dns_resolver`] directly.
    #[cfg(feature = "dns")]
    #[cfg_attr(docsrs, doc(cfg(feature = "dns")))]
    pub fn dns_in_process(mut self) -> Self {
        self.dns_in_process = true;
        self
    }

    /// Binds and starts the gateway; the error names what could not be bound, and where.
    pub async fn start(self) -> Result<Gateway, Error> {
        let GatewayBuilder {
            config,
            metrics,
            policy,
            mut incoming,
            dns_in_process,
            parts,
        } = self;
        let allowlist = AllowlistHandle::new(config.allowlist());
        let policy = match policy {
            Some(stack) => stack(Policy::new(allowlist.clone())),
            None => BoxPolicy::allowlist(allowlist.clone()),
        };
        let own = OwnAddrs::new();
        let workers = Workers::start(config.effective_workers())
            .await
            .map_err(|source| Error::Workers { source })?;
        let bind = Bind::new(workers.count(), config.limits.listen_backlog);
        let mut sources = Vec::new();
        for listener in config.effective_listeners() {
            let given = incoming
                .iter()
                .position(|(bind, _)| *bind == listener.bind)
                .map(|i| incoming.swap_remove(i).1);
            let bind_err = |source| Error::Bind {
                what: "proxy listener",
                addr: listener.bind,
                source,
            };
            let (source, addr) = match given {
                Some(Incoming::Tcp(tcp)) => {
                    let addr = tcp.local_addr().map_err(bind_err)?;
                    own.add_listener(addr);
                    (Source::Given(Incoming::Tcp(tcp)), addr)
                }
                Some(other) => (Source::Given(other), listener.bind),
                None => {
                    let copies = tcp_listeners(listener.bind, bind).map_err(bind_err)?;
                    let addr = copies[0].local_addr().map_err(bind_err)?;
                    warn_if_backlog_capped(addr, bind.backlog);
                    own.add_listener(addr);
                    (Source::PerWorker(copies), addr)
                }
            };
            sources.push((listener, source, addr));
        }
        if let Some(&(bind, _)) = incoming.first() {
            return Err(Error::UnknownListener { bind });
        }
        let admin = match &config.admin {
            Some(admin) => {
                let render = metrics.unwrap_or_else(|| Arc::new(String::new));
                let started = Admin::start(admin.bind, render).await;
                Some(started.map_err(|source| Error::Bind {
                    what: "admin endpoint",
                    addr: admin.bind,
                    source,
                })?)
            }
            None => None,
        };
        let hops = Hops::build(&config, &own, &parts);
        let limits = ConnLimits::from(&config.limits);
        let mut listeners = Vec::new();
        for (listener, source, addr) in sources {
            let proxy = hops.proxy(&config, &listener, &allowlist, &policy, &parts);
            let server = ProxyServer::new(proxy, limits);
            match source {
                Source::Given(incoming) => {
                    let serving = server.clone();
                    tokio::spawn(async move { serving.serve_incoming(incoming, addr).await });
                }
                Source::PerWorker(copies) => {
                    for (i, copy) in copies.into_iter().enumerate() {
                        let serving = server.clone();
                        workers.spawn(i, async move {
                            match tokio::net::TcpListener::from_std(copy) {
                                Ok(tcp) => serving.serve(tcp).await,
                                Err(e) => tracing::error!(%addr, worker = i, error = %e, "a worker cannot serve its copy of the listener; the other workers serve it"),
                            }
                        });
                    }
                }
            }
            tracing::info!(%addr, protocol = ?listener.protocol, destination_port = listener.destination_port(), workers = workers.count(), "proxy listening");
            listeners.push(Listener {
                config: listener,
                addr,
                server,
            });
        }
        #[cfg(feature = "dns")]
        let (dns, resolver) = match &config.dns {
            Some(dns) => {
                let resolver = crate::parts::dns_resolver(dns, allowlist.clone())
                    .await
                    .map_err(|source| Error::DnsUpstream { source })?;
                if dns_in_process {
                    (None, Some(resolver))
                } else {
                    let running = serve_dns(dns, resolver.clone(), &workers).map_err(|source| {
                        Error::Bind {
                            what: "DNS server",
                            addr: dns.bind,
                            source,
                        }
                    })?;
                    (Some(running), Some(resolver))
                }
            }
            None => (None, None),
        };
        #[cfg(not(feature = "dns"))]
        let dns = {
            let _ = dns_in_process;
            if let Some(dns) = &config.dns {
                tracing::warn!(bind = %dns.bind, "the configuration has a dns section, but this build of lnm-proxy has no DNS server (feature `dns`): no DNS is served");
            }
            None
        };
        if let Some(admin) = &admin {
            admin.set_ready(true);
        }
        Ok(Gateway {
            config,
            allowlist,
            policy,
            own,
            listeners,
            dns,
            #[cfg(feature = "dns")]
            resolver,
            admin,
            parts,
            workers,
        })
    }
}

/// Where a listener's connections come from once bound.
enum Source {
    /// One `SO_REUSEPORT` copy per worker (bound by the gateway).
    PerWorker(Vec<std::net::TcpListener>),
    /// The application's source, served on the starting runtime.
    Given(Incoming),
}

/// The two hops of a gateway, as the configuration and the application's parts make them.
struct Hops {
    external: SharedHop,
    internal: SharedHop,
}

impl Hops {
    fn build(config: &Config, own: &OwnAddrs, parts: &Parts) -> Hops {
        let external = parts
            .external
            .clone()
            .unwrap_or_else(|| external_hop(config, own));
        let internal = parts
            .internal
            .clone()
            .unwrap_or_else(|| Arc::new(internal_hop(config)));
        match &parts.wrap {
            Some(wrap) => Hops {
                external: wrap(Route::External, external),
                internal: wrap(Route::Internal, internal),
            },
            None => Hops { external, internal },
        }
    }

    fn proxy(
        &self,
        config: &Config,
        listener: &ListenerConfig,
        allowlist: &AllowlistHandle,
        policy: &BoxPolicy,
        parts: &Parts,
    ) -> Proxy {
        let settings = ProxySettings::from_config(config, listener);
        let mut proxy = Proxy::builder(allowlist.clone(), settings)
            .policy(policy.clone())
            .external_shared(self.external.clone())
            .internal_shared(self.internal.clone());
        if let Some(observer) = &parts.observer {
            proxy = proxy.observer(observer.clone());
        }
        proxy.build()
    }
}

impl Gateway {
    /// Applies `new` to the running gateway (see [`Gateway`]). Reports what could not be
    /// applied without a restart.
    pub fn reload(&mut self, new: Config) -> ReloadReport {
        let mut needs_restart = Vec::new();
        self.allowlist.store(new.allowlist());
        let new_listeners = new.effective_listeners();
        let hops = Hops::build(&new, &self.own, &self.parts);
        for listener in &mut self.listeners {
            match new_listeners
                .iter()
                .find(|l| l.bind == listener.config.bind)
            {
                Some(updated) => {
                    let proxy =
                        hops.proxy(&new, updated, &self.allowlist, &self.policy, &self.parts);
                    listener.server.replace(proxy);
                    listener.config = updated.clone();
                }
                None => needs_restart.push(NeedsRestart::ListenerRemoved(listener.config.bind)),
            }
        }
        for added in new_listeners
            .iter()
            .filter(|l| !self.listeners.iter().any(|o| o.config.bind == l.bind))
        {
            needs_restart.push(NeedsRestart::ListenerAdded(added.bind));
        }
        if new.dns != self.config.dns {
            needs_restart.push(NeedsRestart::Dns);
        }
        if new.admin != self.config.admin {
            needs_restart.push(NeedsRestart::Admin);
        }
        if new.limits != self.config.limits {
            needs_restart.push(NeedsRestart::Limits);
        }
        if new.effective_workers() != self.workers.count() {
            needs_restart.push(NeedsRestart::Workers);
        }
        if new.open_telemetry_metrics_collector_addr
            != self.config.open_telemetry_metrics_collector_addr
            || new.metrics_export != self.config.metrics_export
        {
            needs_restart.push(NeedsRestart::MetricsExport);
        }
        self.config = new;
        ReloadReport { needs_restart }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The allowlist shared by every part of the gateway.
    pub fn allowlist(&self) -> &AllowlistHandle {
        &self.allowlist
    }

    /// The bound proxy listener addresses (for a listener served from another source, its
    /// configured address), in the order of the configuration.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|l| l.addr).collect()
    }

    /// The proxy listener addresses by destination port.
    pub fn addrs_by_port(&self) -> HashMap<u16, SocketAddr> {
        self.listeners
            .iter()
            .map(|l| (l.config.destination_port(), l.addr))
            .collect()
    }

    /// The DNS server's address, when one is bound.
    pub fn dns_addr(&self) -> Option<SocketAddr> {
        self.dns.as_ref().map(|(addr, _)| *addr)
    }

    /// The DNS rewrite resolver of the `dns` section (bound or not): a tower service to ask
    /// in process.
    #[cfg(feature = "dns")]
    #[cfg_attr(docsrs, doc(cfg(feature = "dns")))]
    pub fn dns_resolver(&self) -> Option<&GatewayResolver> {
        self.resolver.as_ref()
    }

    /// How many workers serve this gateway's listeners and DNS: the calling runtime plus the
    /// gateway's own worker threads (see [`Gateway`]).
    pub fn workers(&self) -> usize {
        self.workers.count()
    }

    /// The admin endpoint's address, when one runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(Admin::addr)
    }

    /// Stops accepting (proxy and DNS), drains open connections up to
    /// `timeouts.shutdownDrain`, and returns how many had to be closed.
    pub async fn shutdown(self) -> usize {
        if let Some(admin) = &self.admin {
            admin.set_ready(false);
        }
        if let Some((_, stop)) = &self.dns {
            stop.cancel();
        }
        for l in &self.listeners {
            l.server.shutdown();
        }
        // One deadline for the whole gateway: the listeners drain together.
        let deadline = self.config.timeouts.shutdown_drain;
        let drains = self.listeners.iter().map(|l| l.server.drain(deadline));
        let closed = futures_util::future::join_all(drains)
            .await
            .into_iter()
            .sum();
        self.workers.stop().await;
        closed
    }
}

/// Logs once when the kernel caps a listener's backlog below the configured one.
fn warn_if_backlog_capped(addr: SocketAddr, backlog: u32) {
    let cap = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok());
    if let Some(cap) = cap.filter(|&cap| cap < backlog) {
        tracing::warn!(%addr, backlog, somaxconn = cap, "listen backlog capped by net.core.somaxconn; raise it for bursts");
    }
}

/// Binds the DNS server's sockets, one UDP + TCP pair per worker, and serves each pair on its
/// worker.
#[cfg(feature = "dns")]
fn serve_dns(
    dns: &lnm_policy::config::DnsConfig,
    resolver: GatewayResolver,
    workers: &Workers,
) -> std::io::Result<(SocketAddr, CancellationToken)> {
    use lnm_dns::{DnsLimits, DnsServer};

    let pairs = lnm_dns::bind_workers(dns.bind, workers.count())?;
    let addr = pairs[0].0.local_addr()?;
    let server = DnsServer::new(resolver, DnsLimits::default());
    let stop = CancellationToken::new();
    for (i, (udp, tcp)) in pairs.into_iter().enumerate() {
        let server = server.clone();
        let stopped = stop.clone();
        workers.spawn(i, async move {
            let sockets = tokio::net::UdpSocket::from_std(udp)
                .and_then(|udp| Ok((udp, tokio::net::TcpListener::from_std(tcp)?)));
            let (udp, tcp) = match sockets {
                Ok(sockets) => sockets,
                Err(e) => {
                    tracing::error!(%addr, worker = i, error = %e, "a worker cannot serve its copy of the DNS sockets; the other workers serve them");
                    return;
                }
            };
            tokio::select! {
                () = server.serve(udp, tcp) => {}
                () = stopped.cancelled() => server.shutdown(),
            }
        });
    }
    tracing::info!(%addr, upstreams = dns.upstream.len(), workers = workers.count(), "DNS rewrite server listening");
    Ok((addr, stop))
}
