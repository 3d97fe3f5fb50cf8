//! Zero-copy relay between two TCP sockets: `splice(2)` from one socket into a pipe and from
//! the pipe into the other socket, so bulk payload never crosses into user space.
//!
//! A direction starts with the ordinary user-space copy and switches to splicing once it has
//! moved [`SPLICE_AFTER`] bytes, so TLS handshakes and short exchanges do not pay for a pipe
//! (three system calls and two descriptors). The pipe is closed again when the connection has
//! been quiet for [`PIPE_QUIET`], so idle connections hold no pipe. If no pipe can be opened
//! (descriptor limit), the direction keeps copying.
//!
//! Readiness: the socket is only spliced *into an empty pipe*, so a `WouldBlock` from that call
//! always means the socket has nothing to read (never that the pipe is full), and tokio's
//! readiness for the socket stays exact.

use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use rustix::pipe::{PipeFlags, SpliceFlags, pipe_with, splice};
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::{Budget, Direction, Flow, RelayEnd, Relayed, Slot, Step, both, drive};

/// Bytes a direction copies in user space before it switches to splicing.
pub(crate) const SPLICE_AFTER: u64 = 128 * 1024;

/// A direction's pipe is closed after this long without traffic on the connection.
pub(crate) const PIPE_QUIET: Duration = Duration::from_secs(2);

/// What a default pipe holds (16 pages).
const SMALL_PIPE: usize = 64 * 1024;

/// What an enlarged pipe holds: one splice call then moves up to 1 MiB, which costs clearly
/// less CPU per GiB than 64 KiB (`benches/harness/proxy-cost.sh`: 0.32 against 0.46 s/GiB).
/// Growing a pipe needs no privilege up to `/proc/sys/fs/pipe-max-size` (1 MiB by default).
const BIG_PIPE: usize = 1024 * 1024;

/// Enlarged pipes open at once in the process. A pipe can hold its size in kernel memory while
/// its reader is slow, and unlike socket buffers no TCP memory limit bounds it: this caps what
/// slow readers can make the gateway hold (256 MiB); further pipes keep the default size.
const MAX_BIG_PIPES: usize = 256;

const FLAGS: SpliceFlags = SpliceFlags::MOVE.union(SpliceFlags::NONBLOCK);

/// The process's relay pipes: how many may be open and enlarged, and how many were opened.
#[derive(Debug)]
struct Pipes {
    open: Budget,
    big: Budget,
    opened: AtomicUsize,
}

/// The pipes of every spliced relay of the process.
static PIPES: Pipes = Pipes::new(usize::MAX, MAX_BIG_PIPES);

impl Pipes {
    const fn new(max_open: usize, max_big: usize) -> Self {
        Pipes {
            open: Budget::new(max_open),
            big: Budget::new(max_big),
            opened: AtomicUsize::new(0),
        }
    }

    /// A new non-blocking pipe, enlarged while the budget allows.
    fn open(&'static self) -> io::Result<Pipe> {
        let open = self
            .open
            .take()
            .ok_or_else(|| io::Error::other("relay pipe limit reached"))?;
        let (read, write) = pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        // Over the budget, or the system refuses: the default pipe works too.
        let big = self.big.take().filter(|_| {
            rustix::pipe::fcntl_setpipe_size(&write, BIG_PIPE).is_ok_and(|n| n >= BIG_PIPE)
        });
        Ok(Pipe {
            read,
            write,
            len: 0,
            big,
            _open: open,
        })
    }
}

struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes in the pipe, not yet spliced out.
    len: usize,
    /// Held while the pipe is enlarged to [`BIG_PIPE`].
    big: Option<Slot>,
    /// The pipe's place in the open-pipe budget.
    _open: Slot,
}

impl Pipe {
    /// What the pipe holds ([`SMALL_PIPE`] or [`BIG_PIPE`]).
    fn capacity(&self) -> usize {
        if self.big.is_some() {
            BIG_PIPE
        } else {
            SMALL_PIPE
        }
    }
}

/// Where a direction is.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Copying until [`SPLICE_AFTER`] bytes have moved.
    #[default]
    Copy,
    /// Splicing through a pipe.
    Splice,
    /// Copying to the end: no pipe could be opened.
    CopyOnly,
}

/// One direction: the copy first, then the pipe. The EOF, the byte count and the end are the
/// copy's own state, whichever phase saw them.
#[derive(Default)]
struct SpliceDirection {
    copy: Direction,
    phase: Phase,
    pipe: Option<Pipe>,
}

impl SpliceDirection {
    /// Moves bytes from `reader` to `writer` until the reader's EOF has been passed on;
    /// `fin_by_close` as in [`Direction::poll_copy`].
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut TcpStream,
        writer: &mut TcpStream,
        progress: &mut bool,
        pipes: &'static Pipes,
        fin_by_close: bool,
    ) -> Poll<io::Result<()>> {
        loop {
            if self.phase != Phase::Splice {
                let switch_at = match self.phase {
                    Phase::Copy => SPLICE_AFTER,
                    _ => u64::MAX,
                };
                let flow = ready!(self.copy.poll_copy(
                    cx,
                    Pin::new(&mut *reader),
                    Pin::new(&mut *writer),
                    progress,
                    switch_at,
                    fin_by_close,
                ))?;
                match flow {
                    Flow::Closed => return Poll::Ready(Ok(())),
                    Flow::Bulk => self.phase = Phase::Splice,
                }
            }
            if self.copy.done {
                return Poll::Ready(Ok(()));
            }
            let pipe = match self.pipe.as_mut() {
                Some(pipe) => pipe,
                None if self.copy.read_done => {
                    // Everything read was written: pass the EOF on.
                    ready!(
                        self.copy
                            .poll_finish(cx, Pin::new(&mut *writer), fin_by_close)
                    )?;
                    continue;
                }
                None => match pipes.open() {
                    Ok(pipe) => self.pipe.insert(pipe),
                    Err(_) => {
                        // Out of descriptors (or pipes): the user-space copy needs neither.
                        self.phase = Phase::CopyOnly;
                        continue;
                    }
                },
            };
            if pipe.len == 0 {
                if self.copy.read_done {
                    self.pipe = None;
                    continue;
                }
                ready!(reader.poll_read_ready(cx))?;
                match reader.try_io(Interest::READABLE, || {
                    splice(&*reader, None, &pipe.write, None, pipe.capacity(), FLAGS)
                        .map_err(io::Error::from)
                }) {
                    Ok(0) => self.copy.read_done = true,
                    Ok(n) => {
                        pipe.len = n;
                        *progress = true;
                    }
                    // Readiness was cleared: the next poll_read_ready registers the waker.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
                continue;
            }
            ready!(writer.poll_write_ready(cx))?;
            match writer.try_io(Interest::WRITABLE, || {
                splice(&pipe.read, None, &*writer, None, pipe.len, FLAGS).map_err(io::Error::from)
            }) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    pipe.len -= n;
                    self.copy.moved += n as u64;
                    *progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Closes the pipe if it is empty.
    fn release_pipe(&mut self) {
        if self.pipe.as_ref().is_some_and(|pipe| pipe.len == 0) {
            self.pipe = None;
        }
    }
}

/// [`relay`](super::relay) for two TCP sockets, splicing bulk transfers.
pub(crate) async fn relay(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    idle: Duration,
) -> Relayed {
    relay_with(client, upstream, idle, PIPE_QUIET, &PIPES).await
}

async fn relay_with(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    idle: Duration,
    quiet: Duration,
    pipes: &'static Pipes,
) -> Relayed {
    let mut relay = Splice {
        client,
        upstream,
        up: SpliceDirection::default(),
        down: SpliceDirection::default(),
        pipes,
    };
    let end = drive(idle, Some(quiet), &mut relay).await;
    Relayed {
        up: relay.up.copy.moved,
        down: relay.down.copy.moved,
        end,
    }
}

struct Splice<'a> {
    client: &'a mut TcpStream,
    upstream: &'a mut TcpStream,
    up: SpliceDirection,
    down: SpliceDirection,
    pipes: &'static Pipes,
}

impl Step for Splice<'_> {
    fn step(&mut self, cx: &mut Context<'_>, progress: &mut bool) -> Poll<RelayEnd> {
        // The direction that ends last leaves its FIN to the close of both sockets that follows
        // (one system call less per connection).
        let up_last = self.down.copy.done;
        let a = self.up.poll(
            cx,
            self.client,
            self.upstream,
            progress,
            self.pipes,
            up_last,
        );
        let down_last = self.up.copy.done;
        let b = self.down.poll(
            cx,
            self.upstream,
            self.client,
            progress,
            self.pipes,
            down_last,
        );
        both(a, b, |_| true)
    }

    fn quiet(&mut self) {
        self.up.release_pipe();
        self.down.release_pipe();
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::relay::RelayEnd;

    /// A connected pair of loopback sockets.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (a, b) = tokio::join!(
            TcpStream::connect(listener.local_addr().unwrap()),
            listener.accept()
        );
        (a.unwrap(), b.unwrap().0)
    }

    fn pattern(seed: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 12) as u8)
            .collect()
    }

    /// client app ⇄ (client socket | relay | upstream socket) ⇄ origin app.
    struct Rig {
        client: TcpStream,
        origin: TcpStream,
        relay: tokio::task::JoinHandle<Relayed>,
        /// This relay's own pipe accounting.
        pipes: &'static Pipes,
    }

    impl Pipes {
        fn opened(&self) -> usize {
            self.opened.load(Ordering::Relaxed)
        }

        fn now_open(&self) -> usize {
            self.open.taken()
        }
    }

    /// A relay with its own pipe accounting: `max_open` pipes at most (0: none can be opened).
    async fn rig(quiet: Duration, max_open: usize) -> Rig {
        let (client, mut client_side) = pair().await;
        let (mut upstream_side, origin) = pair().await;
        let pipes: &'static Pipes = Box::leak(Box::new(Pipes::new(max_open, MAX_BIG_PIPES)));
        let relay = tokio::spawn(async move {
            relay_with(
                &mut client_side,
                &mut upstream_side,
                Duration::from_secs(30),
                quiet,
                pipes,
            )
            .await
        });
        Rig {
            client,
            origin,
            relay,
            pipes,
        }
    }

    /// Sends `up` from the client and `down` from the origin at once, each side half-closing
    /// after its data, and returns what each side received.
    async fn exchange(rig: &mut Rig, up: &[u8], down: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let (mut client_read, mut client_write) = rig.client.split();
        let (mut origin_read, mut origin_write) = rig.origin.split();
        let mut at_origin = Vec::new();
        let mut at_client = Vec::new();
        tokio::try_join!(
            async {
                client_write.write_all(up).await?;
                client_write.shutdown().await
            },
            async {
                origin_write.write_all(down).await?;
                origin_write.shutdown().await
            },
            origin_read.read_to_end(&mut at_origin),
            client_read.read_to_end(&mut at_client),
        )
        .unwrap();
        (at_origin, at_client)
    }

    #[tokio::test]
    async fn bulk_both_ways_is_spliced_intact_with_half_close() {
        let mut rig = rig(PIPE_QUIET, usize::MAX).await;
        let up = pattern(1, 3_000_017);
        let down = pattern(2, 5_000_011);
        let (at_origin, at_client) = exchange(&mut rig, &up, &down).await;
        assert!(at_origin == up, "client → origin bytes intact");
        assert!(at_client == down, "origin → client bytes intact");
        let relayed = rig.relay.await.unwrap();
        assert!(matches!(relayed.end, RelayEnd::Closed), "{:?}", relayed.end);
        assert_eq!((relayed.up, relayed.down), (3_000_017, 5_000_011));
        assert!(
            rig.pipes.opened() >= 2,
            "both directions went past {SPLICE_AFTER} bytes and spliced"
        );
        assert_eq!(rig.pipes.now_open(), 0, "pipes closed");
    }

    #[tokio::test]
    async fn short_exchanges_open_no_pipe() {
        let mut rig = rig(PIPE_QUIET, usize::MAX).await;
        let (at_origin, at_client) =
            exchange(&mut rig, &pattern(3, 2000), &pattern(4, 90_000)).await;
        assert_eq!((at_origin.len(), at_client.len()), (2000, 90_000));
        let relayed = rig.relay.await.unwrap();
        assert_eq!((relayed.up, relayed.down), (2000, 90_000));
        assert_eq!(rig.pipes.opened(), 0);
    }

    #[tokio::test]
    async fn a_quiet_connection_gives_its_pipe_back_and_splices_again_later() {
        let mut rig = rig(Duration::from_millis(100), usize::MAX).await;
        let burst = pattern(5, 1_000_000);
        let mut got = vec![0u8; burst.len()];
        rig.origin.write_all(&burst).await.unwrap();
        rig.client.read_exact(&mut got).await.unwrap();
        assert!(got == burst);
        assert_eq!(rig.pipes.now_open(), 1, "pipe held while flowing");
        // Quiet for longer than the quiet period: the pipe is closed, the connection stays.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while rig.pipes.now_open() != 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "pipe never released"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        rig.origin.write_all(&burst).await.unwrap();
        rig.client.read_exact(&mut got).await.unwrap();
        assert!(got == burst, "second burst intact");
        assert_eq!(rig.pipes.opened(), 2, "a new pipe for the new burst");
        let (_, rest) = exchange(&mut rig, b"", b"bye").await;
        assert_eq!(rest, b"bye");
        let relayed = rig.relay.await.unwrap();
        assert_eq!(relayed.down, 2_000_003);
    }

    #[tokio::test]
    async fn without_pipes_bulk_is_copied() {
        let mut rig = rig(PIPE_QUIET, 0).await;
        let down = pattern(6, 2_000_000);
        let (_, at_client) = exchange(&mut rig, b"GET", &down).await;
        assert!(at_client == down);
        let relayed = rig.relay.await.unwrap();
        assert_eq!(relayed.down, 2_000_000);
        assert_eq!(rig.pipes.opened(), 0);
    }

    #[tokio::test]
    async fn a_reset_during_a_spliced_transfer_ends_the_relay_with_an_error() {
        let mut rig = rig(PIPE_QUIET, usize::MAX).await;
        let burst = pattern(7, 1_000_000);
        let mut got = vec![0u8; burst.len()];
        rig.origin.write_all(&burst).await.unwrap();
        rig.client.read_exact(&mut got).await.unwrap();
        // Abortive close of the origin (RST) while the direction is in its splice phase.
        // Linger 0 makes close() send a RST at once (it does not block with a zero timeout).
        #[allow(deprecated)]
        rig.origin.set_linger(Some(Duration::ZERO)).unwrap();
        drop(rig.origin);
        let relayed = rig.relay.await.unwrap();
        assert!(
            matches!(relayed.end, RelayEnd::Error(_)),
            "{:?}",
            relayed.end
        );
        assert_eq!(relayed.down, 1_000_000);
        assert_eq!(rig.pipes.now_open(), 0);
    }

    #[test]
    fn enlarged_pipes_stay_within_their_budget() {
        let pipes: &'static Pipes = Box::leak(Box::new(Pipes::new(usize::MAX, 1)));
        let first = pipes.open().unwrap();
        let second = pipes.open().unwrap();
        assert_eq!(
            (first.capacity(), second.capacity()),
            (BIG_PIPE, SMALL_PIPE)
        );
        drop(first);
        let third = pipes.open().unwrap();
        assert_eq!(
            third.capacity(),
            BIG_PIPE,
            "the budget came back with the pipe"
        );
        assert_eq!(pipes.now_open(), 2);
        drop((second, third));
        assert_eq!((pipes.now_open(), pipes.big.taken()), (0, 0));
        let none: &'static Pipes = Box::leak(Box::new(Pipes::new(0, 1)));
        assert!(none.open().is_err());
        assert_eq!(none.now_open(), 0);
    }
}
