//! Log output off the hot path: lines are appended to a memory buffer and written out in
//! batches by a background thread.
//!
//! A gateway logs one line per connection. Written straight to stderr, each line costs a
//! `write` system call on the thread that serves connections; through [`batched`], a line
//! costs an append under a lock, and a flusher thread writes everything gathered within
//! `period` in one call. Lines keep their order and their timestamps (taken when the event
//! happened). Memory stays bounded: when the buffer reaches [`HIGH_WATER`] bytes, the line
//! that fills it writes the whole buffer out itself. When the [`FlushGuard`] is dropped (at the
//! end of `main`) the rest is written: no line is lost at exit.
//!
//! Drop the guard after everything that may still log has stopped — with a runtime built by
//! hand, after the runtime (with `#[tokio::main]`, its tasks still run while `main` returns, so
//! lines they log in that moment may miss the final write). With tracing-subscriber, turn its
//! colours off (`.with_ansi(false)`) unless the output is a terminal: the batch is written as
//! it was formatted.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! let (writer, guard) = lnm_proxy::logging::batched(std::io::stderr(), Duration::from_millis(100));
//! // With tracing-subscriber:
//! //     tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).init();
//! let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//! runtime.block_on(async { /* the gateway */ });
//! drop(runtime); // its tasks end (and log) first
//! drop(guard); // then the last lines are written
//! # let _ = writer;
//! ```

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// Bytes gathered before the line that fills the buffer writes it out itself.
pub const HIGH_WATER: usize = 256 * 1024;

struct Shared {
    /// The output; held while writing, so batches go out in order.
    out: Mutex<Box<dyn Write + Send>>,
    /// Lines not yet written, and whether the guard was dropped.
    pending: Mutex<Pending>,
    /// Wakes the flusher when the buffer stops being empty, or at the end.
    wake: Condvar,
}

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    closing: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Writes out what is pending; the output lock is taken first, so a later batch never
    /// overtakes an earlier one.
    fn flush(&self) -> io::Result<()> {
        let mut out = lock(&self.out);
        let lines = std::mem::take(&mut lock(&self.pending).lines);
        if lines.is_empty() {
            return Ok(());
        }
        out.write_all(&lines)?;
        out.flush()
    }
}

/// A cheap, clonable [`io::Write`] that appends to the batch buffer (see the module docs).
/// Every clone feeds the same buffer.
#[derive(Clone)]
pub struct BatchedWriter {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for BatchedWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchedWriter").finish_non_exhaustive()
    }
}

impl Write for BatchedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let full = {
            let mut pending = lock(&self.shared.pending);
            let was_empty = pending.lines.is_empty();
            pending.lines.extend_from_slice(buf);
            if was_empty {
                self.shared.wake.notify_one();
            }
            pending.lines.len() >= HIGH_WATER
        };
        if full {
            self.shared.flush()?;
        }
        Ok(buf.len())
    }

    /// Lines are written by the flusher; an explicit flush writes them now.
    fn flush(&mut self) -> io::Result<()> {
        self.shared.flush()
    }
}

/// Writes what is left when dropped, then stops the flusher thread.
pub struct FlushGuard {
    shared: Arc<Shared>,
    flusher: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FlushGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlushGuard").finish_non_exhaustive()
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        lock(&self.shared.pending).closing = true;
        self.shared.wake.notify_one();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
        // Whatever was logged after the flusher ended (or all of it, if it never started).
        let _ = self.shared.flush();
    }
}

/// A batched writer over `out`, flushed by a thread (`lnm-log`) at most `period` after the
/// first line of each batch; nothing is written and the thread sleeps while nothing is logged.
/// Keep the guard until the end of the program.
pub fn batched(out: impl Write + Send + 'static, period: Duration) -> (BatchedWriter, FlushGuard) {
    let shared = Arc::new(Shared {
        out: Mutex::new(Box::new(out)),
        pending: Mutex::new(Pending::default()),
        wake: Condvar::new(),
    });
    let flushing = shared.clone();
    let flusher = std::thread::Builder::new()
        .name("lnm-log".into())
        .spawn(move || {
            loop {
                {
                    let pending = lock(&flushing.pending);
                    let pending = flushing
                        .wake
                        .wait_while(pending, |p| p.lines.is_empty() && !p.closing)
                        .unwrap_or_else(PoisonError::into_inner);
                    if pending.closing {
                        return;
                    }
                }
                // Gather for one period, then write the batch in one call.
                let closing = {
                    let pending = lock(&flushing.pending);
                    let (pending, _) = flushing
                        .wake
                        .wait_timeout_while(pending, period, |p| !p.closing)
                        .unwrap_or_else(PoisonError::into_inner);
                    pending.closing
                };
                // A failing output (a closed stderr) cannot be reported anywhere: the lines are
                // dropped and logging goes on.
                let _ = flushing.flush();
                if closing {
                    return;
                }
            }
        })
        .ok();
    let guard = FlushGuard {
        shared: shared.clone(),
        flusher,
    };
    (BatchedWriter { shared }, guard)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output that records each write call.
    #[derive(Clone, Default)]
    struct Calls(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Calls {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Calls {
        fn joined(&self) -> Vec<u8> {
            self.0.lock().unwrap().concat()
        }
        fn count(&self) -> usize {
            self.0.lock().unwrap().len()
        }
    }

    #[test]
    fn lines_are_written_in_batches_and_in_order() {
        let out = Calls::default();
        let (writer, guard) = batched(out.clone(), Duration::from_millis(200));
        let mut expected = Vec::new();
        for i in 0..1000 {
            let line = format!("line {i}\n");
            writer.clone().write_all(line.as_bytes()).unwrap();
            expected.extend_from_slice(line.as_bytes());
        }
        // Within one period, 1000 lines make one or two writes, not 1000.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while out.joined().len() < expected.len() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(out.joined(), expected);
        assert!(out.count() <= 3, "{} writes", out.count());
        drop(guard);
    }

    #[test]
    fn nothing_is_lost_at_exit_and_memory_is_bounded() {
        let out = Calls::default();
        // A period far longer than the test: only the high-water mark and the guard write.
        let (writer, guard) = batched(out.clone(), Duration::from_secs(3600));
        let line = vec![b'x'; 1000];
        let mut written = 0;
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let mut writer = writer.clone();
                let line = line.clone();
                std::thread::spawn(move || {
                    for _ in 0..300 {
                        writer.write_all(&line).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
            written += 300 * line.len();
        }
        // Over the high-water mark the writers wrote out themselves: what is still pending is
        // less than one buffer.
        assert!(
            written - out.joined().len() < HIGH_WATER,
            "{} of {written} written",
            out.joined().len()
        );
        drop(guard);
        assert_eq!(out.joined().len(), written, "the guard wrote the rest");
    }
}
