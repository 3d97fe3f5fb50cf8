//! The parts of a level, built from its configuration: what [`Gateway`](crate::Gateway) uses,
//! public for applications that assemble a level themselves.
//!
//! - [`external_hop`]: `parentIpAddr(s)` → [`Parent`] (failover in order, PROXY v2 when
//!   `proxyProtocol.send`), else [`Direct`] with the `resolver` section (upstream DNS servers
//!   through lnm-dns's [`UpstreamResolver`], or the system resolver; `hosts`, `refusedRanges`);
//! - [`internal_hop`]: `resolver.hosts` → [`Internal`];
//! - [`dns_resolver`] (feature `dns`): the `dns` section → the rewrite resolver;
//! - [`ProxySettings::from_config`](crate::ProxySettings::from_config) and
//!   [`ConnLimits::from`](crate::ConnLimits) for the listeners' settings and limits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lnm_core::hop::{Direct, Internal, Parent, SharedHop};
use lnm_core::{OwnAddrs, StaticHosts, SystemResolver};
use lnm_dns::UpstreamResolver;
use lnm_policy::config::{Config, ResolverUpstream};

/// The hop of external routes that `config` describes; `own` holds the gateway's listener
/// addresses, which the hop refuses to dial (loop protection).
pub fn external_hop(config: &Config, own: &OwnAddrs) -> SharedHop {
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

/// The hop of internal (east-west) routes that `config` describes: `resolver.hosts`.
pub fn internal_hop(config: &Config) -> Internal {
    let mut internal = Internal::new().connect_timeout(config.timeouts.connect);
    for (name, ip) in &config.resolver.hosts {
        internal.insert_ip(name.clone(), *ip);
    }
    internal
}

/// The rewrite resolver that the `dns` section describes, deciding with `allowlist`: the
/// configured answers, and a forwarder to `dns.upstream` (REFUSED when there is none).
#[cfg(feature = "dns")]
#[cfg_attr(docsrs, doc(cfg(feature = "dns")))]
pub async fn dns_resolver(
    dns: &lnm_policy::config::DnsConfig,
    allowlist: lnm_policy::AllowlistHandle,
) -> std::io::Result<crate::GatewayResolver> {
    use lnm_dns::{Fallback, Forwarder, ForwarderConfig, Refuser, RewriteConfig, RewriteResolver};

    let rewrite = RewriteConfig::new(dns.answer_ipv4.clone(), dns.answer_ipv6.clone()).ttl(dns.ttl);
    let fallback = if dns.upstream.is_empty() {
        Fallback::Refuse(Refuser)
    } else {
        Fallback::Forward(Forwarder::new(ForwarderConfig::new(dns.upstream.clone())).await?)
    };
    Ok(RewriteResolver::new(allowlist, rewrite, fallback))
}
