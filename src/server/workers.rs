//! Connection workers: one thread per core, each with its own single-threaded tokio runtime,
//! serving the connections the accept loop hands it.
//!
//! This is how nginx runs (a worker process per core, each with its own event loop) and why:
//! on tokio's work-stealing runtime the workers share one I/O driver, so a readiness event seen
//! by one worker often has to wake another through a futex, and tasks move between cores. Under
//! load that left the cores idle between wake-ups (6-7% idle while serving segments with wrk,
//! against 1% for nginx) on top of the cost of the wake-ups themselves. A worker here owns its
//! connections for their whole life: their sockets, timers and tasks (including the WebSocket
//! tasks they spawn, and `spawn_blocking` work, on the worker's own blocking pool) stay on its
//! runtime.
//!
//! The accept loop (on the caller's runtime) keeps the connection cap and hands each accepted
//! socket to the next worker in turn. A worker that cannot be started, or has stopped, is
//! replaced by the caller's runtime, so a connection is never dropped for it.

use std::io;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

/// How long a worker's runtime waits for its blocking tasks (a catalog query, a compression) when
/// the server stops.
const BLOCKING_GRACE: Duration = Duration::from_secs(1);

/// Threads of a worker's blocking pool (cache-miss reads, catalog queries, compressions). tokio's
/// default of 512 per runtime let a burst of cache misses at a cold start make ~80 threads
/// (each with its stack) that disk reads could not keep busy; 32 is nginx's default
/// `thread_pool` size. More work than that waits in the pool's queue.
const BLOCKING_THREADS: usize = 32;

/// How often a stopping worker looks whether its last tasks have ended.
const TASK_POLL: Duration = Duration::from_millis(10);

/// Runs on a worker's runtime for each socket handed to it.
pub type Handler<T> = std::sync::Arc<dyn Fn(T) + Send + Sync>;

/// The running workers (see the module doc).
pub struct Workers<T> {
    senders: Vec<mpsc::UnboundedSender<T>>,
    threads: Vec<JoinHandle<()>>,
    next: usize,
    /// When the workers are told to stop: the time until which they wait for their tasks.
    stop: watch::Sender<Option<Instant>>,
}

impl<T: Send + 'static> Workers<T> {
    /// Starts `count` workers (0: one per core this process may use), each calling `handle`
    /// on its own runtime for what it is given. Workers that cannot start are logged and left
    /// out; with none, [`Workers::dispatch`] gives every job back.
    pub fn start(count: usize, handle: &Handler<T>) -> Self {
        let count = match count {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let (stop, _) = watch::channel(None);
        let mut workers = Workers {
            senders: Vec::with_capacity(count),
            threads: Vec::with_capacity(count),
            next: 0,
            stop,
        };
        for index in 0..count {
            match workers.spawn(index, handle) {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "connection worker {index} not started; the accept loop's runtime serves its share");
                }
            }
        }
        workers
    }

    fn spawn(&mut self, index: usize, handle: &Handler<T>) -> io::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(BLOCKING_THREADS)
            .thread_name(format!("segue-http-{index}-blocking"))
            .build()?;
        let (sender, mut jobs) = mpsc::unbounded_channel::<T>();
        let mut stop = self.stop.subscribe();
        let handle = std::sync::Arc::clone(handle);
        let thread = std::thread::Builder::new()
            .name(format!("segue-http-{index}"))
            .spawn(move || {
                runtime.block_on(async move {
                    loop {
                        tokio::select! {
                            job = jobs.recv() => match job {
                                Some(job) => handle(job),
                                None => break,
                            },
                            _ = stop.changed() => break,
                        }
                    }
                    // The accept loop has stopped: the connections in flight go on until the
                    // server says it is done with them.
                    let until = match stop.wait_for(Option::is_some).await {
                        Ok(until) => *until,
                        Err(_) => None,
                    };
                    // Then the tasks still running (WebSockets sending their close frame)
                    // get until the deadline. tokio offers no "all tasks done" future, so
                    // this looks at the task count, briefly.
                    let tasks = tokio::runtime::Handle::current().metrics();
                    while tasks.num_alive_tasks() > 0 && until.is_some_and(|t| Instant::now() < t) {
                        tokio::time::sleep(TASK_POLL).await;
                    }
                });
                runtime.shutdown_timeout(BLOCKING_GRACE);
            })?;
        self.senders.push(sender);
        self.threads.push(thread);
        Ok(())
    }

    /// Hands `job` to the next worker in turn; gives it back when no worker can take it.
    pub fn dispatch(&mut self, mut job: T) -> Result<(), T> {
        for _ in 0..self.senders.len() {
            let index = self.next % self.senders.len();
            self.next = self.next.wrapping_add(1);
            match self.senders[index].send(job) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::SendError(back)) => job = back,
            }
        }
        Err(job)
    }

    /// Stops taking jobs; the workers keep serving what they have.
    pub fn close(&mut self) {
        self.senders.clear();
    }

    /// Stops the workers and waits for their threads: what they still run (the tasks of
    /// upgraded connections) gets up to `grace` to end, then is dropped.
    pub async fn stop(mut self, grace: Duration) {
        self.senders.clear();
        self.stop.send_replace(Some(Instant::now() + grace));
        let threads = std::mem::take(&mut self.threads);
        let joined = tokio::task::spawn_blocking(move || {
            for thread in threads {
                if thread.join().is_err() {
                    tracing::error!("a connection worker panicked");
                }
            }
        });
        if let Err(e) = joined.await {
            tracing::error!(error = %e, "connection workers not joined");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::Mutex;

    #[tokio::test]
    async fn jobs_run_on_the_workers_in_turn() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let handle: Handler<u32> = Arc::new(move |job| {
            let thread = std::thread::current().name().map(str::to_owned);
            record.lock().unwrap().push((job, thread));
        });
        let mut workers = Workers::start(2, &handle);
        for job in 0..4 {
            assert!(workers.dispatch(job).is_ok());
        }
        // Wait for the four jobs, then stop.
        for _ in 0..200 {
            if seen.lock().unwrap().len() == 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        workers.stop(Duration::ZERO).await;
        let mut seen = seen.lock().unwrap().clone();
        seen.sort();
        let names: Vec<_> = seen.iter().map(|(_, t)| t.clone().unwrap()).collect();
        assert_eq!(
            names,
            [
                "segue-http-0",
                "segue-http-1",
                "segue-http-0",
                "segue-http-1"
            ]
        );
    }

    #[tokio::test]
    async fn a_closed_pool_gives_jobs_back() {
        let handle: Handler<u32> = Arc::new(|_| {});
        let mut workers = Workers::start(1, &handle);
        workers.close();
        assert_eq!(workers.dispatch(7), Err(7));
        workers.stop(Duration::ZERO).await;
    }
}
