//! Copying bytes both ways until both sides close, with half-close and an idle timeout.
//!
//! Buffers are allocated only while data flows: each direction takes a buffer when it reads and
//! gives it back as soon as its reader has nothing more to offer and everything read was
//! written. An idle proxied connection therefore holds no relay buffer at all.
//!
//! Between two TCP sockets on Linux (feature `splice`, on by default), a direction that has
//! moved more than [`splice::SPLICE_AFTER`] bytes switches to `splice(2)` through a pipe: the
//! payload then stays in the kernel. Short exchanges (TLS handshakes, small requests) keep the
//! user-space copy, which costs fewer system calls than a pipe.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

#[cfg(all(target_os = "linux", feature = "splice"))]
pub(crate) mod splice;

/// The buffer of one direction while data flows.
const BUF_SIZE: usize = 16 * 1024;

/// The buffer of a direction that has moved [`BULK_AFTER`] bytes: eight times fewer system calls
/// per byte than [`BUF_SIZE`]. Measured in the peer harness (1 GiB through one and two levels):
/// the copy with it moves as fast as nginx in both pinnings at less CPU per GiB, where 16 KiB
/// costs more than nginx (`benches/README.md`).
const BULK_BUF_SIZE: usize = 128 * 1024;

/// Bytes a direction moves before it takes a [`BULK_BUF_SIZE`] buffer: handshakes and short
/// exchanges keep the small one.
const BULK_AFTER: u64 = 128 * 1024;

/// Directions of the process using a bulk buffer at once. A buffer is only held while its
/// data is in flight, but this bounds what slow readers can make the gateway hold (32 MiB);
/// further directions keep [`BUF_SIZE`].
const MAX_BULK_BUFFERS: usize = 256;

/// A process-wide bound on something relays hold while data flows (bulk buffers here, pipes
/// and enlarged pipes in `splice`): how many are taken, of how many.
#[derive(Debug)]
pub(crate) struct Budget {
    taken: AtomicUsize,
    max: usize,
}

/// The bulk-buffer slots of every relay of the process.
static BULK_BUFFERS: Budget = Budget::new(MAX_BULK_BUFFERS);

impl Budget {
    pub(crate) const fn new(max: usize) -> Self {
        Budget {
            taken: AtomicUsize::new(0),
            max,
        }
    }

    /// One slot, if the budget has one left; given back when the slot is dropped.
    pub(crate) fn take(&'static self) -> Option<Slot> {
        if self.taken.fetch_add(1, Ordering::Relaxed) < self.max {
            Some(Slot(self))
        } else {
            self.taken.fetch_sub(1, Ordering::Relaxed);
            None
        }
    }

    /// Slots taken now.
    #[cfg(test)]
    pub(crate) fn taken(&self) -> usize {
        self.taken.load(Ordering::Relaxed)
    }
}

/// A claim on one slot of a [`Budget`]; given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot(&'static Budget);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.taken.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Which budget a direction takes its bulk buffer from (the process's, unless a test says).
#[derive(Clone, Copy)]
struct BulkBudget(&'static Budget);

impl Default for BulkBudget {
    fn default() -> Self {
        BulkBudget(&BULK_BUFFERS)
    }
}

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

/// Where a direction's copy stopped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    /// The reader's EOF was passed on as a shutdown of the writer.
    Closed,
    /// The direction moved its `switch_at` bytes and its buffer is empty: the caller may move
    /// the rest another way.
    Bulk,
}

#[derive(Default)]
pub(crate) struct Direction {
    buf: Option<BytesMut>,
    pos: usize,
    cap: usize,
    read_done: bool,
    done: bool,
    need_flush: bool,
    pub(crate) moved: u64,
    /// Held once the direction is bulk: its buffer is [`BULK_BUF_SIZE`].
    bulk: Option<Slot>,
    /// Whether the direction asked for a bulk slot already (asked once).
    bulk_asked: bool,
    budget: BulkBudget,
}

impl Direction {
    /// Moves bytes from `reader` to `writer`; `Ready(Ok(Closed))` once the reader's EOF has been
    /// passed on (see [`poll_finish`](Self::poll_finish)), `Ready(Ok(Bulk))` once `switch_at`
    /// bytes have moved and none is left in the buffer. Sets `progress` whenever a byte moves.
    pub(crate) fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut reader: Pin<&mut R>,
        mut writer: Pin<&mut W>,
        progress: &mut bool,
        switch_at: u64,
        fin_by_close: bool,
    ) -> Poll<io::Result<Flow>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        if self.done {
            return Poll::Ready(Ok(Flow::Closed));
        }
        loop {
            if self.pos == self.cap && !self.read_done {
                if self.moved >= switch_at {
                    self.buf = None;
                    return Poll::Ready(Ok(Flow::Bulk));
                }
                if self.moved >= BULK_AFTER && !self.bulk_asked {
                    self.bulk_asked = true;
                    self.bulk = self.budget.0.take();
                    if self.bulk.is_some() {
                        // The small buffer goes; the next read fills a bulk one.
                        self.buf = None;
                    }
                }
                let size = if self.bulk.is_some() {
                    BULK_BUF_SIZE
                } else {
                    BUF_SIZE
                };
                // Not zeroed: the read fills what the write then sends.
                let buf = self
                    .buf
                    .get_or_insert_with(|| BytesMut::with_capacity(size));
                buf.clear();
                match tokio_util::io::poll_read_buf(reader.as_mut(), cx, buf) {
                    Poll::Pending => {
                        // Nothing to write and nothing to read: give the buffer back.
                        self.buf = None;
                        if self.need_flush {
                            ready!(writer.as_mut().poll_flush(cx))?;
                            self.need_flush = false;
                        }
                        return Poll::Pending;
                    }
                    Poll::Ready(result) => {
                        result?;
                    }
                }
                let n = buf.len();
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
                ready!(self.poll_finish(cx, writer.as_mut(), fin_by_close))?;
                return Poll::Ready(Ok(Flow::Closed));
            }
        }
    }

    /// Passes the reader's EOF on as a shutdown (FIN) of `writer` and marks the direction done.
    /// With `fin_by_close` — the other direction has ended and both plain sockets are closed
    /// right after — the close sends the FIN and the shutdown call is left out (a TLS or
    /// buffered writer always needs its shutdown).
    pub(crate) fn poll_finish<W: AsyncWrite + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        writer: Pin<&mut W>,
        fin_by_close: bool,
    ) -> Poll<io::Result<()>> {
        if !fin_by_close {
            ready!(writer.poll_shutdown(cx))?;
        }
        self.done = true;
        Poll::Ready(Ok(()))
    }
}

/// The relay's clock: the idle timeout, and an optional shorter "quiet" signal (nothing moved
/// for a while) that lets a relay release resources it keeps while data flows.
///
/// Progress only records a time stamp; the timer is re-armed when it fires, so a busy relay
/// does not touch the timer wheel for every chunk.
struct Clock {
    idle: Duration,
    quiet: Option<Duration>,
    quiet_signalled: bool,
    last_progress: Instant,
    timer: Pin<Box<Sleep>>,
}

/// What the clock says when polled.
enum Tick {
    Running,
    Quiet,
    Idle,
}

impl Clock {
    fn new(idle: Duration, quiet: Option<Duration>) -> Self {
        let now = Instant::now();
        let first = quiet.map_or(idle, |q| q.min(idle));
        Clock {
            idle,
            quiet,
            quiet_signalled: false,
            last_progress: now,
            timer: Box::pin(tokio::time::sleep_until(now + first)),
        }
    }

    fn progress(&mut self) {
        self.last_progress = Instant::now();
        if self.quiet_signalled {
            // Come back to the quiet deadline, which is earlier than the idle one.
            self.quiet_signalled = false;
            self.arm();
        }
    }

    fn arm(&mut self) {
        let wait = match self.quiet {
            Some(quiet) if !self.quiet_signalled => quiet.min(self.idle),
            _ => self.idle,
        };
        self.timer.as_mut().reset(self.last_progress + wait);
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Tick {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return Tick::Running;
            }
            let quiet_for = Instant::now().saturating_duration_since(self.last_progress);
            if quiet_for >= self.idle {
                return Tick::Idle;
            }
            match self.quiet {
                Some(quiet) if !self.quiet_signalled && quiet_for >= quiet => {
                    self.quiet_signalled = true;
                    self.arm();
                    return Tick::Quiet;
                }
                _ => self.arm(),
            }
        }
    }
}

/// One relay as [`drive`] runs it.
pub(crate) trait Step {
    /// Polls both directions, setting `progress` when a byte moved; ready when the relay ends.
    fn step(&mut self, cx: &mut Context<'_>, progress: &mut bool) -> Poll<RelayEnd>;

    /// Nothing moved for the quiet period given to [`drive`].
    fn quiet(&mut self) {}
}

/// Runs `relay` until its step is ready, or until nothing moved for `idle`;
/// [`Step::quiet`] is called whenever nothing moved for `quiet`.
pub(crate) async fn drive(
    idle: Duration,
    quiet: Option<Duration>,
    relay: &mut impl Step,
) -> RelayEnd {
    let mut clock = Clock::new(idle, quiet);
    poll_fn(|cx| {
        let mut progress = false;
        if let Poll::Ready(end) = relay.step(cx, &mut progress) {
            return Poll::Ready(end);
        }
        if progress {
            clock.progress();
        }
        loop {
            match clock.poll(cx) {
                Tick::Running => return Poll::Pending,
                // The timer was re-armed: the next round polls it so it wakes us.
                Tick::Quiet => relay.quiet(),
                Tick::Idle => return Poll::Ready(RelayEnd::Idle),
            }
        }
    })
    .await
}

/// Combines the polls of the two directions into the relay's verdict.
pub(crate) fn both<T>(
    a: Poll<io::Result<T>>,
    b: Poll<io::Result<T>>,
    closed: impl Fn(&T) -> bool,
) -> Poll<RelayEnd> {
    match (a, b) {
        (Poll::Ready(Err(e)), _) | (_, Poll::Ready(Err(e))) => Poll::Ready(RelayEnd::Error(e)),
        (Poll::Ready(Ok(a)), Poll::Ready(Ok(b))) if closed(&a) && closed(&b) => {
            Poll::Ready(RelayEnd::Closed)
        }
        _ => Poll::Pending,
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
    let mut copy = Copy {
        client,
        upstream,
        up: Direction::default(),
        down: Direction::default(),
    };
    let end = drive(idle, None, &mut copy).await;
    Relayed {
        up: copy.up.moved,
        down: copy.down.moved,
        end,
    }
}

/// The user-space copy of both directions.
struct Copy<'a, C: ?Sized, U: ?Sized> {
    client: &'a mut C,
    upstream: &'a mut U,
    up: Direction,
    down: Direction,
}

impl<C, U> Step for Copy<'_, C, U>
where
    C: AsyncRead + AsyncWrite + Unpin + ?Sized,
    U: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    fn step(&mut self, cx: &mut Context<'_>, progress: &mut bool) -> Poll<RelayEnd> {
        let a = self.up.poll_copy(
            cx,
            Pin::new(&mut *self.client),
            Pin::new(&mut *self.upstream),
            progress,
            u64::MAX,
            false,
        );
        let b = self.down.poll_copy(
            cx,
            Pin::new(&mut *self.upstream),
            Pin::new(&mut *self.client),
            progress,
            u64::MAX,
            false,
        );
        both(a, b, |flow| *flow == Flow::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    /// A writer that takes everything and notes the largest single write.
    #[derive(Default)]
    struct Largest {
        bytes: usize,
        largest: usize,
    }

    impl AsyncWrite for Largest {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.bytes += buf.len();
            self.largest = self.largest.max(buf.len());
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Copies `len` bytes through one direction taking bulk slots from `budget`; returns the
    /// largest write.
    async fn largest_write(len: usize, budget: &'static Budget) -> usize {
        let data = vec![1u8; len];
        let mut reader: &[u8] = &data;
        let mut writer = Largest::default();
        let mut direction = Direction {
            budget: BulkBudget(budget),
            ..Direction::default()
        };
        let mut progress = false;
        let flow = std::future::poll_fn(|cx| {
            direction.poll_copy(
                cx,
                Pin::new(&mut reader),
                Pin::new(&mut writer),
                &mut progress,
                u64::MAX,
                false,
            )
        })
        .await
        .unwrap();
        assert_eq!(flow, Flow::Closed);
        assert_eq!(writer.bytes, len);
        writer.largest
    }

    #[tokio::test]
    async fn bulk_transfers_take_a_bigger_buffer_within_a_budget() {
        // Short exchanges keep the small buffer; a bulk transfer moves in bulk-sized chunks
        // once it has moved BULK_AFTER bytes, and gives its slot back at the end.
        static BUDGET: Budget = Budget::new(2);
        assert_eq!(
            largest_write(BULK_AFTER as usize / 2, &BUDGET).await,
            BUF_SIZE
        );
        assert_eq!(
            largest_write(4 * BULK_BUF_SIZE, &BUDGET).await,
            BULK_BUF_SIZE
        );
        assert_eq!(
            BUDGET.taken.load(Ordering::Relaxed),
            0,
            "the slot came back"
        );
        // With every slot taken, bulk transfers keep the small buffer.
        let held = [BUDGET.take(), BUDGET.take()];
        assert!(held.iter().all(Option::is_some) && BUDGET.take().is_none());
        assert_eq!(largest_write(4 * BULK_BUF_SIZE, &BUDGET).await, BUF_SIZE);
        drop(held);
        assert_eq!(
            largest_write(4 * BULK_BUF_SIZE, &BUDGET).await,
            BULK_BUF_SIZE
        );
    }

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
