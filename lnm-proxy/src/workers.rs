//! Thread-per-core workers: one event loop per CPU, each serving its own sockets.
//!
//! Worker 0 is the runtime that started the gateway; every other worker is a thread running a
//! current-thread tokio runtime. A gateway gives each worker its own `SO_REUSEPORT` copy of
//! every proxy listener and of the DNS socket, so a connection is accepted, sniffed, decided
//! and relayed on one thread: no cross-thread wake-ups and no work stealing on the hot path.
//! What the workers share is what must be global: the allowlist snapshot, the connection
//! limits (exact across workers), the metrics and the drain bookkeeping.

use std::future::Future;
use std::io;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// How long a stopping worker waits for its blocking tasks (name lookups) before it lets them
/// go.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// The workers of one gateway. Dropping them stops the worker threads (their tasks end).
#[derive(Debug)]
pub(crate) struct Workers {
    /// Worker 0 is the starting runtime; worker `i > 0` runs on `threads[i - 1]`.
    handles: Vec<Handle>,
    threads: Vec<JoinHandle<()>>,
    stop: CancellationToken,
}

impl Workers {
    /// `count` workers: this runtime plus `count - 1` threads (`lnm-worker-<i>`), each with a
    /// current-thread runtime. Must be called on a tokio runtime.
    pub(crate) async fn start(count: usize) -> io::Result<Workers> {
        let stop = CancellationToken::new();
        let mut workers = Workers {
            handles: vec![Handle::current()],
            threads: Vec::new(),
            stop: stop.clone(),
        };
        for i in 1..count.max(1) {
            let (ready, handle) = tokio::sync::oneshot::channel();
            let stopped = stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("lnm-worker-{i}"))
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(runtime) => runtime,
                        Err(e) => {
                            let _ = ready.send(Err(e));
                            return;
                        }
                    };
                    if ready.send(Ok(runtime.handle().clone())).is_ok() {
                        runtime.block_on(stopped.cancelled());
                    }
                    runtime.shutdown_timeout(STOP_GRACE);
                })?;
            workers.threads.push(thread);
            let handle = handle.await.map_err(|_| {
                io::Error::other("worker thread ended before its runtime started")
            })??;
            workers.handles.push(handle);
        }
        Ok(workers)
    }

    /// How many workers there are.
    pub(crate) fn count(&self) -> usize {
        self.handles.len()
    }

    /// Runs `task` on worker `i` (taken modulo the count).
    pub(crate) fn spawn<F>(&self, i: usize, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = &self.handles[i % self.handles.len()];
        drop(handle.spawn(task));
    }

    /// Stops the worker threads (their remaining tasks are dropped) and waits for them.
    pub(crate) async fn stop(mut self) {
        self.stop.cancel();
        let threads = std::mem::take(&mut self.threads);
        if threads.is_empty() {
            return;
        }
        let joined = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        });
        let _ = joined.await;
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn each_worker_runs_on_its_own_thread_and_stops() {
        let workers = Workers::start(3).await.unwrap();
        assert_eq!(workers.count(), 3);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..3 {
            let tx = tx.clone();
            workers.spawn(i, async move {
                let _ = tx.send((i, std::thread::current().id()));
            });
        }
        drop(tx);
        let mut threads = Vec::new();
        while let Some((_, id)) = rx.recv().await {
            threads.push(id);
        }
        threads.sort_by_key(|id| format!("{id:?}"));
        threads.dedup();
        assert_eq!(threads.len(), 3, "three workers, three threads");
        assert!(
            threads.contains(&std::thread::current().id()),
            "worker 0 is this runtime"
        );

        // A task still running on a worker ends when the workers stop.
        let (alive, ended) = tokio::sync::oneshot::channel::<()>();
        workers.spawn(1, async move {
            let _alive = alive;
            std::future::pending::<()>().await;
        });
        workers.stop().await;
        assert!(ended.await.is_err(), "the task was dropped with its worker");
    }
}
