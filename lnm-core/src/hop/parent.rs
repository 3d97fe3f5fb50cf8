//! [`Parent`]: dial the parent gateway one level up, failing over in order.

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;

use super::connect::connect_first;
use super::direct::DEFAULT_CONNECT_TIMEOUT;
use crate::proxy_header::ProxyHeader;
use crate::{ConnInfo, Error, Hop, OwnAddrs, Stream, Target};
use tokio::io::AsyncWriteExt;

fn stream_peer(stream: &tokio::net::TcpStream) -> SocketAddr {
    stream
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// Forwards every connection to the parent gateway, whatever its target name: the parent sniffs
/// the same bytes again and makes its own decision.
///
/// Addresses are tried in order; the next one is tried when one refuses or fails, all within one
/// connect timeout. The port of an address may be 0, meaning "the target's port" (the parent
/// listens on the same port as this level). Dialling one of this gateway's own listeners is
/// refused ([`Error::OwnAddress`]): a parent that is ourselves is a static loop.
#[derive(Debug, Clone)]
pub struct Parent {
    addrs: Vec<SocketAddr>,
    own: OwnAddrs,
    connect_timeout: Duration,
    proxy_protocol: bool,
}

impl Parent {
    /// A hop to the parent gateway at `addrs`, tried in order.
    pub fn new(addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        Parent {
            addrs: addrs.into_iter().collect(),
            own: OwnAddrs::new(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            proxy_protocol: false,
        }
    }

    /// Sets the timeout for all attempts together.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Shares the gateway's own addresses, which this hop will refuse to dial.
    pub fn own_addrs(mut self, own: OwnAddrs) -> Self {
        self.own = own;
        self
    }

    /// Starts every connection with a PROXY protocol v2 header carrying the original client and
    /// the hop count plus one (see [`crate::proxy_header`]); the parent must be configured to
    /// accept it from this gateway.
    pub fn send_proxy_protocol(mut self, send: bool) -> Self {
        self.proxy_protocol = send;
        self
    }

    /// The parent addresses (port 0: the target's port).
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }
}

#[async_trait]
impl Hop for Parent {
    async fn connect(&self, target: &Target, info: &ConnInfo) -> Result<Stream, Error> {
        if self.addrs.is_empty() {
            return Err(Error::NoDestination { hop: "parent" });
        }
        let addrs: Vec<SocketAddr> = self
            .addrs
            .iter()
            .map(|a| {
                if a.port() == 0 {
                    SocketAddr::new(a.ip(), target.port)
                } else {
                    *a
                }
            })
            .collect();
        if let Some(&addr) = addrs.iter().find(|a| self.own.contains(**a)) {
            return Err(Error::OwnAddress {
                target: target.clone(),
                addr,
            });
        }
        let what = format!("parent gateway for {target}");
        let mut stream = connect_first(&what, &addrs, None, self.connect_timeout).await?;
        if self.proxy_protocol {
            let header = ProxyHeader {
                client: info.client,
                destination: info.local,
                hops: info.hops.saturating_add(1),
            };
            let peer = stream_peer(&stream);
            let fail = |e: std::io::Error| Error::Connect {
                target: what.clone(),
                attempts: vec![(peer, e)],
            };
            let bytes = header.encode().map_err(&fail)?;
            stream.write_all(&bytes).await.map_err(fail)?;
        }
        Ok(Stream::Tcp(stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed_port() -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    #[tokio::test]
    async fn fails_over_in_order() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = listener.local_addr().unwrap();
        let hop = Parent::new([closed_port(), up]);
        let target = Target::new("management.azure.com".parse().unwrap(), 443);
        let stream = hop.connect(&target, &ConnInfo::default()).await.unwrap();
        assert_eq!(stream.as_tcp().unwrap().peer_addr().unwrap(), up);
    }

    #[tokio::test]
    async fn all_down_names_every_attempt() {
        let (a, b) = (closed_port(), closed_port());
        let hop = Parent::new([a, b]);
        let target = Target::new("x.example".parse().unwrap(), 443);
        let err = hop
            .connect(&target, &ConnInfo::default())
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&a.to_string()) && text.contains(&b.to_string()),
            "{text}"
        );
    }

    #[tokio::test]
    async fn port_zero_means_the_target_port_and_self_is_refused() {
        let own = OwnAddrs::new();
        own.add_listener("127.0.0.1:9443".parse().unwrap());
        let hop = Parent::new(["127.0.0.1:0".parse().unwrap()]).own_addrs(own);
        let target = Target::new("x.example".parse().unwrap(), 9443);
        let err = hop
            .connect(&target, &ConnInfo::default())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::OwnAddress { addr, .. } if addr.port() == 9443),
            "{err}"
        );
    }
}
