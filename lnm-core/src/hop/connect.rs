//! Connecting to a list of addresses: staggered attempts (happy eyeballs, RFC 8305) or strict
//! order (failover), both bounded by one overall timeout.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::net::TcpStream;

use crate::Error;

/// The delay before starting the next attempt while one is still pending (RFC 8305 §5).
pub(crate) const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Orders addresses for happy eyeballs: alternate families, starting with the first one's.
pub(crate) fn interleave(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let Some(first) = addrs.first() else {
        return Vec::new();
    };
    let (mut same, mut other): (Vec<SocketAddr>, Vec<SocketAddr>) =
        addrs.iter().partition(|a| a.is_ipv4() == first.is_ipv4());
    same.reverse();
    other.reverse();
    let mut out = Vec::with_capacity(addrs.len());
    while !same.is_empty() || !other.is_empty() {
        out.extend(same.pop());
        out.extend(other.pop());
    }
    out
}

/// Connects to the first address that answers, starting a new attempt every `stagger` while
/// earlier ones are pending (or at once when one fails). `stagger = None` tries strictly one
/// after the other. The whole thing is bounded by `timeout`.
pub(crate) async fn connect_first(
    what: &(dyn std::fmt::Display + Sync),
    addrs: &[SocketAddr],
    stagger: Option<Duration>,
    timeout: Duration,
) -> Result<TcpStream, Error> {
    let mut attempts: Vec<(SocketAddr, io::Error)> = Vec::new();
    let run = async {
        let mut pending = FuturesUnordered::new();
        let mut next = addrs.iter();
        loop {
            if pending.is_empty() {
                match next.next() {
                    Some(&addr) => pending.push(attempt(addr)),
                    None => return None,
                }
            }
            let delay = stagger.unwrap_or(Duration::MAX);
            tokio::select! {
                Some((addr, result)) = pending.next() => match result {
                    Ok(stream) => return Some(stream),
                    Err(e) => {
                        attempts.push((addr, e));
                        if let Some(&addr) = next.next() {
                            pending.push(attempt(addr));
                        }
                    }
                },
                () = tokio::time::sleep(delay), if stagger.is_some() => {
                    if let Some(&addr) = next.next() {
                        pending.push(attempt(addr));
                    }
                }
            }
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Some(stream)) => Ok(stream),
        Ok(None) => Err(Error::Connect {
            target: what.to_string(),
            attempts,
        }),
        Err(_) => Err(Error::ConnectTimeout {
            target: what.to_string(),
            after: timeout,
        }),
    }
}

async fn attempt(addr: SocketAddr) -> (SocketAddr, io::Result<TcpStream>) {
    let result = TcpStream::connect(addr).await;
    if let Ok(stream) = &result {
        // Proxied traffic is latency-sensitive (TLS handshakes): no Nagle delay.
        let _ = stream.set_nodelay(true);
    }
    (addr, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaves_families_starting_with_the_first() {
        let a: Vec<SocketAddr> = ["[::1]:1", "[::2]:1", "1.1.1.1:1", "2.2.2.2:1", "3.3.3.3:1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let order: Vec<String> = interleave(&a).iter().map(|a| a.to_string()).collect();
        assert_eq!(
            order,
            ["[::1]:1", "1.1.1.1:1", "[::2]:1", "2.2.2.2:1", "3.3.3.3:1"]
        );
    }

    #[tokio::test]
    async fn skips_refused_addresses_and_reports_each() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let good = listener.local_addr().unwrap();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let stream = connect_first(&"t", &[closed, good], None, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(stream.peer_addr().unwrap(), good);

        let err = connect_first(&"t", &[closed], Some(ATTEMPT_DELAY), Duration::from_secs(5))
            .await
            .unwrap_err();
        match err {
            Error::Connect { attempts, .. } => assert_eq!(attempts[0].0, closed),
            other => panic!("unexpected {other}"),
        }
    }
}
