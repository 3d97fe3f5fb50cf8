//! The gateway's own listening addresses, so hops can refuse to dial themselves.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};

/// The set of addresses a gateway listens on, shared between its listeners (which add to it as
/// they bind) and its hops (which refuse to dial any of them: a name that resolves back to the
/// gateway, or a parent address that is the gateway itself, would loop).
///
/// A listener bound to an unspecified address (`0.0.0.0:443`) owns that port on every loopback
/// address and on every address added with [`OwnAddrs::add_host_ip`].
#[derive(Debug, Clone, Default)]
pub struct OwnAddrs {
    inner: Arc<RwLock<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    listeners: Vec<SocketAddr>,
    host_ips: Vec<IpAddr>,
}

impl OwnAddrs {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a listener address.
    pub fn add_listener(&self, addr: SocketAddr) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if !inner.listeners.contains(&addr) {
            inner.listeners.push(addr);
        }
    }

    /// Forgets a listener address (the listener was closed).
    pub fn remove_listener(&self, addr: SocketAddr) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.listeners.retain(|a| *a != addr);
    }

    /// Records an address of this host, for listeners bound to an unspecified address.
    pub fn add_host_ip(&self, ip: IpAddr) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if !inner.host_ips.contains(&ip) {
            inner.host_ips.push(ip);
        }
    }

    /// Whether dialling `addr` would reach one of this gateway's own listeners.
    pub fn contains(&self, addr: SocketAddr) -> bool {
        let ip = addr.ip().to_canonical();
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.listeners.iter().any(|l| {
            if l.port() != addr.port() {
                return false;
            }
            let own = l.ip().to_canonical();
            own == ip
                || (own.is_unspecified()
                    && (ip.is_loopback() || ip.is_unspecified() || inner.host_ips.contains(&ip)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_unspecified_listeners() {
        let own = OwnAddrs::new();
        own.add_listener("10.3.0.1:443".parse().unwrap());
        own.add_listener("0.0.0.0:80".parse().unwrap());
        own.add_host_ip("10.3.0.1".parse().unwrap());
        assert!(own.contains("10.3.0.1:443".parse().unwrap()));
        assert!(own.contains("[::ffff:10.3.0.1]:443".parse().unwrap()));
        assert!(!own.contains("10.3.0.2:443".parse().unwrap()));
        assert!(!own.contains("10.3.0.1:8443".parse().unwrap()));
        assert!(own.contains("127.0.0.5:80".parse().unwrap()));
        assert!(own.contains("10.3.0.1:80".parse().unwrap()));
        assert!(!own.contains("10.9.9.9:80".parse().unwrap()));
        own.remove_listener("10.3.0.1:443".parse().unwrap());
        assert!(!own.contains("10.3.0.1:443".parse().unwrap()));
    }
}
