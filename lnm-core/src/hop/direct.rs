//! [`Direct`]: resolve the real name and connect to it (the top level's hop).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::connect::{ATTEMPT_DELAY, connect_first, interleave};
use crate::{ConnInfo, Error, Hop, OwnAddrs, Resolve, Stream, SystemResolver, Target};

/// The default connect timeout of the built-in hops.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to the real destination: resolves `target.name` with a pluggable [`Resolve`]r, then
/// connects to `target.port` over IPv4 and IPv6 with happy eyeballs, within a connect timeout.
///
/// It refuses to dial any address in its [`OwnAddrs`]: a name that resolves back to this
/// gateway (for example because the host's resolver points at the gateway's own rewriting DNS)
/// would otherwise make the gateway connect to itself forever.
#[derive(Clone)]
pub struct Direct {
    resolver: Arc<dyn Resolve>,
    own: OwnAddrs,
    connect_timeout: Duration,
}

impl Direct {
    /// A direct hop using the system resolver.
    pub fn new() -> Self {
        Direct::with_resolver(SystemResolver)
    }

    /// A direct hop using `resolver`.
    pub fn with_resolver(resolver: impl Resolve) -> Self {
        Direct {
            resolver: Arc::new(resolver),
            own: OwnAddrs::new(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// Sets the timeout for resolving and connecting together.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Shares the gateway's own addresses, which this hop will refuse to dial.
    pub fn own_addrs(mut self, own: OwnAddrs) -> Self {
        self.own = own;
        self
    }
}

impl Default for Direct {
    fn default() -> Self {
        Direct::new()
    }
}

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direct")
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Hop for Direct {
    async fn connect(&self, target: &Target, _info: &ConnInfo) -> Result<Stream, Error> {
        let deadline = tokio::time::Instant::now() + self.connect_timeout;
        let ips = tokio::time::timeout_at(deadline, self.resolver.resolve(&target.name))
            .await
            .map_err(|_| Error::ConnectTimeout {
                target: target.to_string(),
                after: self.connect_timeout,
            })??;
        let addrs: Vec<SocketAddr> = ips
            .iter()
            .map(|ip| SocketAddr::new(*ip, target.port))
            .collect();
        if let Some(&addr) = addrs.iter().find(|a| self.own.contains(**a)) {
            return Err(Error::OwnAddress {
                target: target.clone(),
                addr,
            });
        }
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let stream = connect_first(target, &interleave(&addrs), Some(ATTEMPT_DELAY), remaining)
            .await
            .map_err(|e| match e {
                Error::ConnectTimeout { target, .. } => Error::ConnectTimeout {
                    target,
                    after: self.connect_timeout,
                },
                other => other,
            })?;
        Ok(Stream::Tcp(stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StaticHosts;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn hosts(name: &str, ips: &[&str]) -> StaticHosts {
        ips.iter()
            .map(|ip| (name.parse().unwrap(), ip.parse().unwrap()))
            .collect()
    }

    #[tokio::test]
    async fn resolves_and_connects() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"hi").await.unwrap();
        });
        let hop = Direct::with_resolver(hosts("cloud.example", &["127.0.0.1"]));
        let target = Target::new("cloud.example".parse().unwrap(), port);
        let mut stream = hop.connect(&target, &ConnInfo::default()).await.unwrap();
        let mut buf = [0u8; 2];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hi");
    }

    #[tokio::test]
    async fn refuses_its_own_listener() {
        let own = OwnAddrs::new();
        own.add_listener("0.0.0.0:8443".parse().unwrap());
        let hop = Direct::with_resolver(hosts("loop.example", &["127.0.0.1"])).own_addrs(own);
        let target = Target::new("loop.example".parse().unwrap(), 8443);
        let err = hop
            .connect(&target, &ConnInfo::default())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::OwnAddress { .. }), "{err}");
        assert!(err.to_string().contains("loop"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn unroutable_destination_times_out() {
        // 192.0.2.0/24 (TEST-NET-1) is never routed; with time paused the timeout fires at once
        // unless the connect fails first (no route): either is a clear, bounded error.
        let hop = Direct::with_resolver(hosts("blackhole.example", &["192.0.2.1"]))
            .connect_timeout(Duration::from_millis(300));
        let target = Target::new("blackhole.example".parse().unwrap(), 443);
        let err = hop
            .connect(&target, &ConnInfo::default())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::ConnectTimeout { .. } | Error::Connect { .. }),
            "{err}"
        );
    }
}
