//! [`Gateway`]: one Purdue level — proxy listeners, DNS rewrite server, admin endpoint — from
//! its configuration, sharing one allowlist.
//!
//! The hops follow from the configuration: [`Parent`] when `parentIpAddr(s)` is set, else
//! [`Direct`] with the `resolver` settings; [`Internal`] from `resolver.hosts` for east-west
//! entries. With the `dns` feature (on by default) the `dns` section runs the rewrite server.
//!
//! [`Gateway::reload`] applies a new configuration without touching live connections: the
//! allowlist is swapped atomically (DNS and proxy alike), and each listener hands its new
//! connections to a proxy built from the new settings and hops. Changing what is bound
//! (listener or DNS addresses, DNS answers or upstreams, the admin address) needs a restart and
//! is reported as such.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lnm_core::hop::{Direct, Internal, Parent};
use lnm_core::{Hop, OwnAddrs, StaticHosts, SystemResolver, UpstreamResolver};
use lnm_policy::AllowlistHandle;
use lnm_policy::config::{Config, ListenerConfig, ResolverUpstream};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::{Admin, RenderMetrics};
use crate::{ConnLimits, Proxy, ProxyServer, ProxySettings};

struct Listener {
    config: ListenerConfig,
    addr: SocketAddr,
    server: ProxyServer,
}

/// One level, bound and serving: proxy listeners, DNS rewrite server and admin endpoint
/// sharing one allowlist.
///
/// [`Gateway::reload`] applies a new configuration without touching live connections: the
/// allowlist is swapped atomically (DNS and proxy alike), and each listener hands its new
/// connections to a proxy built from the new settings and hops. Changing what is bound
/// (listener or DNS addresses, DNS answers or upstreams, the admin address) or the connection
/// limits needs a restart and is reported as such.
pub struct Gateway {
    config: Config,
    allowlist: AllowlistHandle,
    own: OwnAddrs,
    listeners: Vec<Listener>,
    dns: Option<(SocketAddr, CancellationToken)>,
    admin: Option<Admin>,
    observer: Option<crate::Observer>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("listeners", &self.addrs())
            .field("dns", &self.dns_addr())
            .field("admin", &self.admin_addr())
            .finish()
    }
}

impl Gateway {
    /// Binds every listener, the DNS server and the admin endpoint of `config` and starts
    /// serving on the current tokio runtime. `metrics` renders `/metrics` (the application's
    /// exporter); without it `/metrics` is empty.
    ///
    /// Fails, naming the address, when something cannot be bound.
    pub async fn start(config: &Config, metrics: Option<RenderMetrics>) -> io::Result<Gateway> {
        GatewayBuilder {
            config,
            metrics,
            observer: None,
        }
        .start()
        .await
    }

    /// A builder for the less common options (a connection observer).
    pub fn builder(config: &Config) -> GatewayBuilder<'_> {
        GatewayBuilder {
            config,
            metrics: None,
            observer: None,
        }
    }
}

/// Options of [`Gateway::start`].
pub struct GatewayBuilder<'a> {
    config: &'a Config,
    metrics: Option<RenderMetrics>,
    observer: Option<crate::Observer>,
}

impl std::fmt::Debug for GatewayBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayBuilder").finish_non_exhaustive()
    }
}

impl GatewayBuilder<'_> {
    /// Renders `/metrics` with the application's exporter.
    pub fn metrics(mut self, render: RenderMetrics) -> Self {
        self.metrics = Some(render);
        self
    }

    /// Calls `observer` with the report of every finished proxied connection.
    pub fn observer(mut self, observer: crate::Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Binds and starts the gateway.
    pub async fn start(self) -> io::Result<Gateway> {
        let GatewayBuilder {
            config,
            metrics,
            observer,
        } = self;
        let allowlist = AllowlistHandle::new(config.allowlist());
        let own = OwnAddrs::new();
        let mut bound = Vec::new();
        for listener in config.effective_listeners() {
            let tcp = TcpListener::bind(listener.bind).await.map_err(|e| {
                io::Error::new(e.kind(), format!("cannot listen on {}: {e}", listener.bind))
            })?;
            let addr = tcp.local_addr()?;
            own.add_listener(addr);
            bound.push((listener, tcp, addr));
        }
        let admin = match &config.admin {
            Some(admin) => {
                let render = metrics.unwrap_or_else(|| Arc::new(String::new));
                Some(Admin::start(admin.bind, render).await?)
            }
            None => None,
        };
        let mut listeners = Vec::new();
        for (listener, tcp, addr) in bound {
            let mut proxy = build_proxy(config, &listener, &allowlist, &own);
            if let Some(observer) = &observer {
                proxy = proxy.with_observer(observer.clone());
            }
            let server = ProxyServer::new(proxy, limits(config));
            let serving = server.clone();
            tokio::spawn(async move { serving.serve(tcp).await });
            tracing::info!(%addr, protocol = ?listener.protocol, destination_port = listener.destination_port(), "proxy listening");
            listeners.push(Listener {
                config: listener,
                addr,
                server,
            });
        }
        #[cfg(feature = "dns")]
        let dns = match &config.dns {
            Some(dns) => Some(start_dns(dns, allowlist.clone()).await?),
            None => None,
        };
        #[cfg(not(feature = "dns"))]
        let dns = None;
        if let Some(admin) = &admin {
            admin.set_ready(true);
        }
        Ok(Gateway {
            config: config.clone(),
            allowlist,
            own,
            listeners,
            dns,
            admin,
            observer,
        })
    }
}

impl Gateway {
    /// Applies `new` to the running gateway (see [`Gateway`]). Returns what could
    /// not be applied without a restart (empty: everything was applied).
    pub fn reload(&mut self, new: Config) -> Vec<String> {
        let mut needs_restart = Vec::new();
        self.allowlist.store(new.allowlist());
        let new_listeners = new.effective_listeners();
        for listener in &mut self.listeners {
            match new_listeners
                .iter()
                .find(|l| l.bind == listener.config.bind)
            {
                Some(updated) => {
                    let mut proxy = build_proxy(&new, updated, &self.allowlist, &self.own);
                    if let Some(observer) = &self.observer {
                        proxy = proxy.with_observer(observer.clone());
                    }
                    listener.server.replace(proxy);
                    listener.config = updated.clone();
                }
                None => {
                    needs_restart.push(format!("listener {} was removed", listener.config.bind))
                }
            }
        }
        for added in new_listeners
            .iter()
            .filter(|l| !self.listeners.iter().any(|o| o.config.bind == l.bind))
        {
            needs_restart.push(format!("listener {} is new", added.bind));
        }
        if new.dns != self.config.dns {
            needs_restart
                .push("the dns section changed (the allowlist was applied to DNS already)".into());
        }
        if new.admin != self.config.admin {
            needs_restart.push("the admin address changed".into());
        }
        if new.limits != self.config.limits {
            needs_restart.push("connection limits changed".into());
        }
        self.config = new;
        needs_restart
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The allowlist shared by every part of the gateway.
    pub fn allowlist(&self) -> &AllowlistHandle {
        &self.allowlist
    }

    /// The bound proxy listener addresses.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|l| l.addr).collect()
    }

    /// The DNS server's address, when one runs.
    pub fn dns_addr(&self) -> Option<SocketAddr> {
        self.dns.as_ref().map(|(addr, _)| *addr)
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
        futures_util::future::join_all(drains)
            .await
            .into_iter()
            .sum()
    }
}

fn limits(config: &Config) -> ConnLimits {
    ConnLimits {
        max_connections: config.limits.max_connections,
        max_per_source: config.limits.max_connections_per_source,
    }
}

fn build_proxy(
    config: &Config,
    listener: &ListenerConfig,
    allowlist: &AllowlistHandle,
    own: &OwnAddrs,
) -> Proxy {
    let settings = ProxySettings::from_config(config, listener);
    Proxy::with_shared_hops(
        allowlist.clone(),
        external_hop(config, own),
        Arc::new(internal_hop(config)),
        settings,
    )
}

#[cfg(feature = "dns")]
async fn start_dns(
    dns: &lnm_policy::config::DnsConfig,
    allowlist: AllowlistHandle,
) -> io::Result<(SocketAddr, CancellationToken)> {
    use lnm_dns::{
        DnsLimits, DnsServer, Forwarder, ForwarderConfig, Refuser, RewriteConfig, RewriteResolver,
    };
    use tower::util::Either;

    let rewrite = RewriteConfig::new(dns.answer_ipv4.clone(), dns.answer_ipv6.clone()).ttl(dns.ttl);
    let fallback = if dns.upstream.is_empty() {
        Either::Right(Refuser)
    } else {
        Either::Left(Forwarder::new(ForwarderConfig::new(dns.upstream.clone())).await?)
    };
    let resolver = RewriteResolver::new(allowlist, rewrite, fallback);
    let (udp, tcp) = lnm_dns::bind(dns.bind).await?;
    let addr = udp.local_addr()?;
    let server = DnsServer::new(resolver, DnsLimits::default());
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = server.serve(udp, tcp) => {}
            () = stopped.cancelled() => server.shutdown(),
        }
    });
    tracing::info!(%addr, upstreams = dns.upstream.len(), "DNS rewrite server listening");
    Ok((addr, stop))
}

fn external_hop(config: &Config, own: &OwnAddrs) -> Arc<dyn Hop> {
    let connect_timeout = config.timeouts.connect;
    let parents = config.parent_addrs();
    if !parents.is_empty() {
        // Port 0: the parent listens on each listener's destination port.
        let port = config.parent_port.unwrap_or(0);
        let addrs = parents.into_iter().map(|ip| SocketAddr::new(ip, port));
        return Arc::new(
            Parent::new(addrs)
                .connect_timeout(connect_timeout)
                .own_addrs(own.clone())
                .send_proxy_protocol(config.proxy_protocol.send),
        );
    }
    let hosts: StaticHosts = config
        .resolver
        .hosts
        .iter()
        .map(|(n, ip)| (n.clone(), *ip))
        .collect();
    let resolver = match &config.resolver.upstream {
        ResolverUpstream::System => hosts.with_fallback(SystemResolver),
        ResolverUpstream::Servers(servers) => hosts.with_fallback(
            UpstreamResolver::new(servers.clone())
                .with_timeout(connect_timeout.min(Duration::from_secs(2))),
        ),
    };
    let mut direct = Direct::with_resolver(resolver)
        .connect_timeout(connect_timeout)
        .own_addrs(own.clone())
        .trust_names(config.resolver.hosts.keys().cloned());
    if let Some(ranges) = &config.resolver.refused_ranges {
        direct = direct.refused_ranges(ranges.iter().copied());
    }
    Arc::new(direct)
}

fn internal_hop(config: &Config) -> Internal {
    let mut internal = Internal::new().connect_timeout(config.timeouts.connect);
    for (name, ip) in &config.resolver.hosts {
        internal.insert_ip(name.clone(), *ip);
    }
    internal
}
