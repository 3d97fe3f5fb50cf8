//! An in-process network: named listeners connected by tokio duplex pipes.
//!
//! A whole Purdue topology (clients, gateways of every level, origins) can run in one test
//! without a single socket: each part binds a name on a shared [`MemoryNetwork`], and
//! [`Memory`] hops dial those names.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::io::DuplexStream;
use tokio::sync::mpsc;

use crate::{ConnInfo, Error, Hop, Stream, Target};

/// The buffer of each direction of an in-memory pipe.
pub const PIPE_BUFFER: usize = 64 * 1024;
/// How many connections may wait in a listener's backlog.
const BACKLOG: usize = 1024;

/// The sending side of a listener's backlog: a pipe end and the address it claims to come from.
type Backlog = mpsc::Sender<(DuplexStream, SocketAddr)>;

/// A set of named in-memory listeners. Cloning shares the network.
#[derive(Clone, Default)]
pub struct MemoryNetwork {
    listeners: Arc<Mutex<HashMap<String, Backlog>>>,
}

impl std::fmt::Debug for MemoryNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.lock().keys().cloned().collect();
        f.debug_struct("MemoryNetwork")
            .field("listeners", &names)
            .finish()
    }
}

impl MemoryNetwork {
    /// An empty network.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::Sender<(DuplexStream, SocketAddr)>>> {
        self.listeners.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Binds `addr` (any string, e.g. `"l4:443"`); fails if it is bound already.
    pub fn bind(&self, addr: impl Into<String>) -> Result<MemoryListener, Error> {
        let addr = addr.into();
        let mut map = self.lock();
        if map.get(&addr).is_some_and(|tx| !tx.is_closed()) {
            return Err(Error::MemoryAddrInUse { addr });
        }
        let (tx, rx) = mpsc::channel(BACKLOG);
        map.insert(addr.clone(), tx);
        Ok(MemoryListener {
            addr,
            rx,
            net: self.clone(),
        })
    }

    /// Connects to the listener bound at `addr`, appearing to it as `from`.
    pub async fn connect(&self, addr: &str, from: SocketAddr) -> Result<DuplexStream, Error> {
        let tx = self
            .lock()
            .get(addr)
            .cloned()
            .ok_or_else(|| Error::MemoryUnreachable {
                addr: addr.to_owned(),
            })?;
        let (ours, theirs) = tokio::io::duplex(PIPE_BUFFER);
        tx.send((theirs, from))
            .await
            .map_err(|_| Error::MemoryUnreachable {
                addr: addr.to_owned(),
            })?;
        Ok(ours)
    }
}

/// A listener on a [`MemoryNetwork`]; the name is released when it is dropped.
#[derive(Debug)]
pub struct MemoryListener {
    addr: String,
    rx: mpsc::Receiver<(DuplexStream, SocketAddr)>,
    net: MemoryNetwork,
}

impl MemoryListener {
    /// The next connection and the address it claims to come from; `None` never happens while
    /// the network exists, but is returned if it is torn down.
    pub async fn accept(&mut self) -> Option<(DuplexStream, SocketAddr)> {
        self.rx.recv().await
    }

    /// The bound name.
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

impl Drop for MemoryListener {
    fn drop(&mut self) {
        self.rx.close();
        let mut map = self.net.lock();
        if map.get(&self.addr).is_some_and(mpsc::Sender::is_closed) {
            map.remove(&self.addr);
        }
    }
}

/// A hop over a [`MemoryNetwork`]: to a fixed address (like [`Parent`](super::Parent)) or to
/// `"{name}:{port}"` of each target (like [`Direct`](super::Direct)).
#[derive(Debug, Clone)]
pub struct Memory {
    net: MemoryNetwork,
    to: Option<String>,
    from: SocketAddr,
}

impl Memory {
    /// Dials `addr` for every target.
    pub fn to(net: &MemoryNetwork, addr: impl Into<String>) -> Self {
        Memory {
            net: net.clone(),
            to: Some(addr.into()),
            from: SocketAddr::from(([0, 0, 0, 0], 0)),
        }
    }

    /// Dials `"{name}:{port}"` of each target.
    pub fn by_target(net: &MemoryNetwork) -> Self {
        Memory {
            net: net.clone(),
            to: None,
            from: SocketAddr::from(([0, 0, 0, 0], 0)),
        }
    }

    /// The source address the far end sees (default `0.0.0.0:0`).
    pub fn from_addr(mut self, from: SocketAddr) -> Self {
        self.from = from;
        self
    }
}

#[async_trait]
impl Hop for Memory {
    async fn connect(&self, target: &Target, _info: &ConnInfo) -> Result<Stream, Error> {
        let stream = match &self.to {
            Some(addr) => self.net.connect(addr, self.from).await?,
            None => self.net.connect(&target.to_string(), self.from).await?,
        };
        Ok(Stream::Memory(stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn named_listeners_carry_bytes_both_ways() {
        let net = MemoryNetwork::new();
        let mut listener = net.bind("cloud.example:443").unwrap();
        assert!(matches!(
            net.bind("cloud.example:443"),
            Err(Error::MemoryAddrInUse { .. })
        ));
        let server = tokio::spawn(async move {
            let (mut s, from) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(b"pong").await.unwrap();
            (buf, from)
        });
        let from: SocketAddr = "10.2.0.7:5555".parse().unwrap();
        let hop = Memory::by_target(&net).from_addr(from);
        let target = Target::new("cloud.example".parse().unwrap(), 443);
        let mut s = hop.connect(&target, &ConnInfo::default()).await.unwrap();
        s.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        assert_eq!(server.await.unwrap(), (*b"ping", from));
    }

    #[tokio::test]
    async fn dropped_listener_frees_its_name() {
        let net = MemoryNetwork::new();
        drop(net.bind("a").unwrap());
        let err = Memory::to(&net, "a")
            .connect(
                &Target::new("x.example".parse().unwrap(), 1),
                &ConnInfo::default(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::MemoryUnreachable { .. }), "{err}");
        assert!(net.bind("a").is_ok());
    }
}
