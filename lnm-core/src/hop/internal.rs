//! [`Internal`]: east-west destinations on the gateway's own level.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use async_trait::async_trait;

use super::connect::connect_first;
use super::direct::DEFAULT_CONNECT_TIMEOUT;
use crate::{ConnInfo, Error, Hop, Name, Stream, Target};

/// Delivers connections for `internal` allowlist entries (an MQTT broker on 8883, say) to a
/// machine on the gateway's own level, from a static name → address map (`resolver.hosts`).
///
/// An entry is an IP (the target's port is kept) or a full socket address.
#[derive(Debug, Clone, Default)]
pub struct Internal {
    map: HashMap<Name, Vec<Endpoint>>,
    connect_timeout: Option<Duration>,
}

#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Ip(IpAddr),
    Addr(SocketAddr),
}

impl Internal {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps `name` to `ip` on the target's port.
    pub fn insert_ip(&mut self, name: Name, ip: IpAddr) -> &mut Self {
        self.map.entry(name).or_default().push(Endpoint::Ip(ip));
        self
    }

    /// Maps `name` to a fixed socket address, whatever the target's port.
    pub fn insert_addr(&mut self, name: Name, addr: SocketAddr) -> &mut Self {
        self.map.entry(name).or_default().push(Endpoint::Addr(addr));
        self
    }

    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Whether `name` has an entry.
    pub fn contains(&self, name: &Name) -> bool {
        self.map.contains_key(name)
    }
}

#[async_trait]
impl Hop for Internal {
    async fn connect(&self, target: &Target, _info: &ConnInfo) -> Result<Stream, Error> {
        let endpoints = self
            .map
            .get(&target.name)
            .ok_or_else(|| Error::UnknownInternal {
                name: target.name.clone(),
            })?;
        let addrs: Vec<SocketAddr> = endpoints
            .iter()
            .map(|e| match *e {
                Endpoint::Ip(ip) => SocketAddr::new(ip, target.port),
                Endpoint::Addr(addr) => addr,
            })
            .collect();
        let timeout = self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        Ok(Stream::Tcp(
            connect_first(target, &addrs, None, timeout).await?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn maps_names_and_keeps_the_port() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut hop = Internal::new();
        hop.insert_ip("Broker.L3.local".parse().unwrap(), addr.ip());
        let target = Target::new("broker.l3.local.".parse().unwrap(), addr.port());
        let stream = hop.connect(&target, &ConnInfo::default()).await.unwrap();
        assert_eq!(stream.as_tcp().unwrap().peer_addr().unwrap(), addr);

        let unknown = Target::new("other.l3.local".parse().unwrap(), 8883);
        let err = hop
            .connect(&unknown, &ConnInfo::default())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::UnknownInternal { .. }), "{err}");
    }
}
