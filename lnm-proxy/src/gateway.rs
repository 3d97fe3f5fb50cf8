//! [`Gateway`]: the proxy listeners of one Purdue level, built from its configuration.
//!
//! Today a gateway runs the proxy listeners of the configuration (`listeners`, or the defaults)
//! with the hops it implies: [`Parent`] when `parentIpAddr(s)` is set, else [`Direct`] with the
//! `resolver` settings; [`Internal`] from `resolver.hosts` for east-west entries; and, with the
//! `dns` feature (on by default), the DNS rewrite server of the `dns` section, sharing the same
//! allowlist. The admin endpoint and reload are not part of it yet.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lnm_core::hop::{Direct, Internal, Parent};
use lnm_core::{Hop, OwnAddrs, StaticHosts, SystemResolver, UpstreamResolver};
use lnm_policy::AllowlistHandle;
use lnm_policy::config::{Config, ResolverUpstream};
use tokio::net::TcpListener;

use crate::{ConnLimits, Proxy, ProxyServer, ProxySettings};

/// One level's proxy listeners, bound and serving.
#[derive(Debug)]
pub struct Gateway {
    servers: Vec<(SocketAddr, ProxyServer)>,
    dns: Option<(SocketAddr, tokio_util::sync::CancellationToken)>,
    drain: Duration,
}

impl Gateway {
    /// Binds every listener of `config` and starts serving on the current tokio runtime.
    ///
    /// Fails with the address when a listener cannot be bound.
    pub async fn start(config: &Config) -> io::Result<Gateway> {
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
        let external = external_hop(config, &own);
        let internal: Arc<dyn Hop> = Arc::new(internal_hop(config));
        let limits = ConnLimits {
            max_connections: config.limits.max_connections,
            max_per_source: config.limits.max_connections_per_source,
        };
        let mut servers = Vec::new();
        for (listener, tcp, addr) in bound {
            let settings = ProxySettings::from_config(config, &listener);
            let proxy = Proxy::with_shared_hops(
                allowlist.clone(),
                external.clone(),
                internal.clone(),
                settings,
            );
            let server = ProxyServer::new(proxy, limits);
            let serving = server.clone();
            tokio::spawn(async move { serving.serve(tcp).await });
            tracing::info!(%addr, protocol = ?listener.protocol, destination_port = listener.destination_port(), "proxy listening");
            servers.push((addr, server));
        }
        #[cfg(feature = "dns")]
        let dns = match &config.dns {
            Some(dns) => Some(start_dns(dns, allowlist.clone()).await?),
            None => None,
        };
        #[cfg(not(feature = "dns"))]
        let dns = None;
        Ok(Gateway {
            servers,
            dns,
            drain: config.timeouts.shutdown_drain,
        })
    }

    /// The DNS server's address, when one runs.
    pub fn dns_addr(&self) -> Option<SocketAddr> {
        self.dns.as_ref().map(|(addr, _)| *addr)
    }

    /// The bound listener addresses.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.servers.iter().map(|(addr, _)| *addr).collect()
    }

    /// Stops accepting, drains open connections up to `timeouts.shutdownDrain`, and returns how
    /// many had to be closed.
    pub async fn shutdown(self) -> usize {
        if let Some((_, stop)) = &self.dns {
            stop.cancel();
        }
        let drains = self.servers.iter().map(|(_, s)| s.drain(self.drain));
        let mut closed = 0;
        for drain in drains {
            closed += drain.await;
        }
        closed
    }
}

#[cfg(feature = "dns")]
async fn start_dns(
    dns: &lnm_policy::config::DnsConfig,
    allowlist: AllowlistHandle,
) -> io::Result<(SocketAddr, tokio_util::sync::CancellationToken)> {
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
    let stop = tokio_util::sync::CancellationToken::new();
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
    let parents = config.parent_addrs();
    if !parents.is_empty() {
        let port = config.parent_port.unwrap_or(0);
        let addrs = parents.into_iter().map(|ip| SocketAddr::new(ip, port));
        return Arc::new(
            Parent::new(addrs)
                .connect_timeout(config.timeouts.connect)
                .own_addrs(own.clone()),
        );
    }
    let hosts: StaticHosts = config
        .resolver
        .hosts
        .iter()
        .map(|(n, ip)| (n.clone(), *ip))
        .collect();
    let hosts = match &config.resolver.upstream {
        ResolverUpstream::System => hosts.with_fallback(SystemResolver),
        ResolverUpstream::Servers(servers) => {
            hosts.with_fallback(UpstreamResolver::new(servers.clone()))
        }
    };
    Arc::new(
        Direct::with_resolver(hosts)
            .connect_timeout(config.timeouts.connect)
            .own_addrs(own.clone()),
    )
}

fn internal_hop(config: &Config) -> Internal {
    let mut internal = Internal::new().connect_timeout(config.timeouts.connect);
    for (name, ip) in &config.resolver.hosts {
        internal.insert_ip(name.clone(), *ip);
    }
    internal
}
