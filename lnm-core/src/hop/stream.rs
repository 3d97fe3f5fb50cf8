//! The byte stream a hop returns.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::net::TcpStream;

/// Any bidirectional async byte stream.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A connection opened by a [`Hop`](crate::Hop).
///
/// TCP streams stay concrete so the proxy can use zero-copy paths on them; anything else is an
/// in-memory pipe or a boxed [`Io`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Stream {
    /// A TCP connection.
    Tcp(TcpStream),
    /// One end of an in-process pipe (see [`MemoryNetwork`](crate::hop::MemoryNetwork)).
    Memory(DuplexStream),
    /// Any other transport.
    Boxed(BoxedIo),
}

/// A boxed [`Io`] with a `Debug` impl.
pub struct BoxedIo(pub Box<dyn Io>);

impl std::fmt::Debug for BoxedIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BoxedIo")
    }
}

impl Stream {
    /// Boxes any I/O type as a stream.
    pub fn boxed(io: impl Io) -> Self {
        Stream::Boxed(BoxedIo(Box::new(io)))
    }

    /// The TCP stream, if this is one.
    pub fn as_tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Tcp(tcp) => Some(tcp),
            _ => None,
        }
    }
}

impl From<TcpStream> for Stream {
    fn from(tcp: TcpStream) -> Self {
        Stream::Tcp(tcp)
    }
}

impl From<DuplexStream> for Stream {
    fn from(pipe: DuplexStream) -> Self {
        Stream::Memory(pipe)
    }
}

impl From<Box<dyn Io>> for Stream {
    fn from(io: Box<dyn Io>) -> Self {
        Stream::Boxed(BoxedIo(io))
    }
}

macro_rules! delegate {
    ($self:ident, $io:ident => $call:expr) => {
        match $self.get_mut() {
            Stream::Tcp($io) => $call,
            Stream::Memory($io) => $call,
            Stream::Boxed(BoxedIo($io)) => $call,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, io => Pin::new(io).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, io => Pin::new(io).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, io => Pin::new(io).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, io => Pin::new(io).poll_shutdown(cx))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, io => Pin::new(io).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(io) => io.is_write_vectored(),
            Stream::Memory(io) => io.is_write_vectored(),
            Stream::Boxed(BoxedIo(io)) => io.is_write_vectored(),
        }
    }
}
