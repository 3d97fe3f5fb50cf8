//! Copying bytes both ways until both sides close, with half-close and an idle timeout.
//!
//! Buffers are allocated only while data flows: each direction takes a buffer when it reads and
//! gives it back as soon as its reader has nothing more to offer and everything read was
//! written. An idle proxied connection therefore holds no relay buffer at all.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The buffer of one direction while data flows.
const BUF_SIZE: usize = 16 * 1024;

/// How a relay ended.
#[derive(Debug)]
pub(crate) enum RelayEnd {
    /// Both sides closed their sending half.
    Closed,
    /// No byte moved in either direction for the idle timeout.
    Idle,
    /// A read or write failed (reset by peer, broken pipe...).
    Error(io::Error),
}

/// Bytes moved and how it ended.
#[derive(Debug)]
pub(crate) struct Relayed {
    /// Client → upstream.
    pub(crate) up: u64,
    /// Upstream → client.
    pub(crate) down: u64,
    pub(crate) end: RelayEnd,
}

#[derive(Default)]
struct Direction {
    buf: Option<Box<[u8]>>,
    pos: usize,
    cap: usize,
    read_done: bool,
    done: bool,
    need_flush: bool,
    moved: u64,
}

impl Direction {
    /// Moves bytes from `reader` to `writer`; `Ready(Ok)` once the reader's EOF has been passed
    /// on as a shutdown of the writer. Sets `progress` whenever a byte moves.
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut reader: Pin<&mut R>,
        mut writer: Pin<&mut W>,
        progress: &mut bool,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        loop {
            if self.pos == self.cap && !self.read_done {
                let buf = self
                    .buf
                    .get_or_insert_with(|| vec![0u8; BUF_SIZE].into_boxed_slice());
                let mut read_buf = ReadBuf::new(buf);
                match reader.as_mut().poll_read(cx, &mut read_buf) {
                    Poll::Pending => {
                        // Nothing to write and nothing to read: give the buffer back.
                        self.buf = None;
                        if self.need_flush {
                            ready!(writer.as_mut().poll_flush(cx))?;
                            self.need_flush = false;
                        }
                        return Poll::Pending;
                    }
                    Poll::Ready(result) => result?,
                }
                let n = read_buf.filled().len();
                if n == 0 {
                    self.read_done = true;
                    self.buf = None;
                } else {
                    self.pos = 0;
                    self.cap = n;
                    *progress = true;
                }
            }
            while self.pos < self.cap {
                let Some(buf) = self.buf.as_deref() else {
                    break;
                };
                let n = ready!(writer.as_mut().poll_write(cx, &buf[self.pos..self.cap]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.pos += n;
                self.moved += n as u64;
                self.need_flush = true;
                *progress = true;
            }
            if self.read_done {
                ready!(writer.as_mut().poll_shutdown(cx))?;
                self.done = true;
                return Poll::Ready(Ok(()));
            }
        }
    }
}

/// Relays between `client` and `upstream` until both directions are closed, one fails, or
/// nothing moves for `idle`. EOF on one side is propagated as a shutdown (FIN) of the other
/// side's writer, and the other direction keeps flowing.
pub(crate) async fn relay<C, U>(client: &mut C, upstream: &mut U, idle: Duration) -> Relayed
where
    C: AsyncRead + AsyncWrite + Unpin + ?Sized,
    U: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let mut up = Direction::default();
    let mut down = Direction::default();
    let mut timer: Pin<Box<Sleep>> = Box::pin(tokio::time::sleep(idle));
    let end = poll_fn(|cx| {
        let mut progress = false;
        let a = up.poll_copy(
            cx,
            Pin::new(&mut *client),
            Pin::new(&mut *upstream),
            &mut progress,
        );
        let b = down.poll_copy(
            cx,
            Pin::new(&mut *upstream),
            Pin::new(&mut *client),
            &mut progress,
        );
        match (a, b) {
            (Poll::Ready(Err(e)), _) | (_, Poll::Ready(Err(e))) => {
                return Poll::Ready(RelayEnd::Error(e));
            }
            (Poll::Ready(Ok(())), Poll::Ready(Ok(()))) => return Poll::Ready(RelayEnd::Closed),
            _ => {}
        }
        if progress {
            timer.as_mut().reset(Instant::now() + idle);
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(RelayEnd::Idle),
            Poll::Pending => Poll::Pending,
        }
    })
    .await;
    Relayed {
        up: up.moved,
        down: down.moved,
        end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    #[tokio::test]
    async fn copies_both_ways_and_propagates_half_close() {
        let (mut client, mut client_side) = duplex(1024);
        let (mut upstream_side, mut upstream) = duplex(1024);
        let relay = tokio::spawn(async move {
            relay(&mut client_side, &mut upstream_side, Duration::from_secs(5)).await
        });
        client.write_all(b"request").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        upstream.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"request", "EOF reached the upstream after the bytes");
        // The other direction still flows after the client's half-close (read concurrently:
        // the pipes hold 1 KiB).
        let reader = tokio::spawn(async move {
            let mut back = Vec::new();
            client.read_to_end(&mut back).await.unwrap();
            back.len()
        });
        upstream.write_all(&vec![7u8; 100_000]).await.unwrap();
        upstream.shutdown().await.unwrap();
        assert_eq!(reader.await.unwrap(), 100_000);
        let relayed = relay.await.unwrap();
        assert_eq!((relayed.up, relayed.down), (7, 100_000));
        assert!(matches!(relayed.end, RelayEnd::Closed), "{:?}", relayed.end);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_are_closed() {
        let (_client, mut client_side) = duplex(64);
        let (mut upstream_side, _upstream) = duplex(64);
        let relayed = relay(
            &mut client_side,
            &mut upstream_side,
            Duration::from_secs(30),
        )
        .await;
        assert!(matches!(relayed.end, RelayEnd::Idle));
    }

    #[tokio::test(start_paused = true)]
    async fn traffic_resets_the_idle_timer() {
        let (mut client, mut client_side) = duplex(64);
        let (mut upstream_side, mut upstream) = duplex(64);
        let task = tokio::spawn(async move {
            relay(
                &mut client_side,
                &mut upstream_side,
                Duration::from_secs(10),
            )
            .await
        });
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(8)).await;
            client.write_all(b"x").await.unwrap();
            let mut b = [0u8; 1];
            upstream.read_exact(&mut b).await.unwrap();
        }
        assert!(
            !task.is_finished(),
            "40 s of periodic traffic must not hit a 10 s idle timeout"
        );
        let relayed = task.await.unwrap();
        assert!(matches!(relayed.end, RelayEnd::Idle));
        assert_eq!(relayed.up, 5);
    }
}
