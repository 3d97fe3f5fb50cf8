//! Resolving real names: the [`Resolve`] trait and the built-in resolvers.
//!
//! The top-level gateway resolves the server name a client asked for with *real* DNS — never
//! through its own rewrite resolver, which would answer with its own address and loop. Which real
//! DNS is pluggable: the system resolver ([`SystemResolver`]), explicit upstream DNS servers
//! (`lnm_dns::UpstreamResolver`, which shares lnm's one DNS client with the forwarder of the
//! rewrite resolver), or a static map ([`StaticHosts`]) in front of either. This crate speaks
//! no DNS wire format itself.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;

use crate::{Error, Name};

/// Turns a server name into IP addresses.
#[async_trait]
pub trait Resolve: Send + Sync + 'static {
    /// The addresses of `name`, in the order they should be tried. An empty answer is
    /// [`Error::NoAddress`], never `Ok(vec![])`.
    async fn resolve(&self, name: &Name) -> Result<Vec<IpAddr>, Error>;
}

#[async_trait]
impl<R: Resolve + ?Sized> Resolve for Arc<R> {
    async fn resolve(&self, name: &Name) -> Result<Vec<IpAddr>, Error> {
        (**self).resolve(name).await
    }
}

/// The operating system's resolver (`getaddrinfo`, run on tokio's blocking pool).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

#[async_trait]
impl Resolve for SystemResolver {
    async fn resolve(&self, name: &Name) -> Result<Vec<IpAddr>, Error> {
        let addrs = tokio::net::lookup_host((name.as_str(), 0))
            .await
            .map_err(|source| Error::Resolve {
                name: name.clone(),
                source,
            })?;
        let mut ips: Vec<IpAddr> = Vec::new();
        for addr in addrs {
            if !ips.contains(&addr.ip()) {
                ips.push(addr.ip());
            }
        }
        if ips.is_empty() {
            return Err(Error::NoAddress { name: name.clone() });
        }
        Ok(ips)
    }
}

/// A static name → addresses map (`resolver.hosts`), optionally in front of another resolver.
///
/// Keys are exact [`Name`]s, so lookups get the same normalisation as everything else (case,
/// trailing dot). Names not in the map go to the fallback, or fail with [`Error::Resolve`].
#[derive(Clone, Default)]
pub struct StaticHosts {
    hosts: HashMap<Name, Vec<IpAddr>>,
    fallback: Option<Arc<dyn Resolve>>,
}

impl StaticHosts {
    /// An empty map with no fallback.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an address for `name` (several calls add several addresses, tried in order).
    pub fn insert(&mut self, name: Name, ip: IpAddr) -> &mut Self {
        self.hosts.entry(name).or_default().push(ip);
        self
    }

    /// Asks `fallback` for names that are not in the map.
    pub fn with_fallback(mut self, fallback: impl Resolve) -> Self {
        self.fallback = Some(Arc::new(fallback));
        self
    }

    /// The addresses configured for `name`, if any.
    pub fn get(&self, name: &Name) -> Option<&[IpAddr]> {
        self.hosts.get(name).map(Vec::as_slice)
    }

    /// Whether `name` has an entry.
    pub fn contains(&self, name: &Name) -> bool {
        self.hosts.contains_key(name)
    }
}

impl FromIterator<(Name, IpAddr)> for StaticHosts {
    fn from_iter<I: IntoIterator<Item = (Name, IpAddr)>>(iter: I) -> Self {
        let mut hosts = StaticHosts::new();
        for (name, ip) in iter {
            hosts.insert(name, ip);
        }
        hosts
    }
}

impl std::fmt::Debug for StaticHosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticHosts")
            .field("hosts", &self.hosts)
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}

#[async_trait]
impl Resolve for StaticHosts {
    async fn resolve(&self, name: &Name) -> Result<Vec<IpAddr>, Error> {
        if let Some(ips) = self.hosts.get(name) {
            return Ok(ips.clone());
        }
        match &self.fallback {
            Some(fallback) => fallback.resolve(name).await,
            None => Err(Error::Resolve {
                name: name.clone(),
                source: io::Error::new(io::ErrorKind::NotFound, "not in the static host map"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn static_hosts_normalise_and_fall_back() {
        let mut inner = StaticHosts::new();
        inner.insert(
            "fallback.example".parse().unwrap(),
            "192.0.2.9".parse().unwrap(),
        );
        let mut hosts = StaticHosts::new();
        hosts.insert(
            "Broker.L3.local.".parse().unwrap(),
            "10.3.0.20".parse().unwrap(),
        );
        let hosts = hosts.with_fallback(inner);

        let ip: IpAddr = "10.3.0.20".parse().unwrap();
        assert_eq!(
            hosts
                .resolve(&"broker.l3.local".parse().unwrap())
                .await
                .unwrap(),
            [ip]
        );
        assert_eq!(
            hosts
                .resolve(&"fallback.example".parse().unwrap())
                .await
                .unwrap(),
            ["192.0.2.9".parse::<IpAddr>().unwrap()]
        );
        let err = hosts
            .resolve(&"missing.example".parse().unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Resolve { .. }), "{err}");
    }

    #[tokio::test]
    async fn system_resolver_resolves_localhost() {
        let ips = SystemResolver
            .resolve(&"localhost".parse().unwrap())
            .await
            .unwrap();
        assert!(ips.iter().all(IpAddr::is_loopback), "{ips:?}");
    }
}
