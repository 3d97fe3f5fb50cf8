//! [`Gateway`]: the proxy listeners of one Purdue level, built from its configuration.
//!
//! Today a gateway runs the proxy listeners of the configuration (`listeners`, or the defaults)
//! with the hops it implies: [`Parent`] when `parentIpAddr(s)` is set, else [`Direct`] with the
//! `resolver` settings; [`Internal`] from `resolver.hosts` for east-west entries. The DNS
//! server, the admin endpoint and reload are not part of it yet.

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
        Ok(Gateway {
            servers,
            drain: config.timeouts.shutdown_drain,
        })
    }

    /// The bound listener addresses.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.servers.iter().map(|(addr, _)| *addr).collect()
    }

    /// Stops accepting, drains open connections up to `timeouts.shutdownDrain`, and returns how
    /// many had to be closed.
    pub async fn shutdown(self) -> usize {
        let drains = self.servers.iter().map(|(_, s)| s.drain(self.drain));
        let mut closed = 0;
        for drain in drains {
            closed += drain.await;
        }
        closed
    }
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
