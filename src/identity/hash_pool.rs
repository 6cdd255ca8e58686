//! The threads that compute password hashes, at the lowest CPU priority
//! (`SCHED_IDLE` on Linux): a flood of logins gets only the CPU time the proxy
//! path leaves, so proxied requests keep their latency while Argon2id runs.
//!
//! A fixed number of threads (`[login] max_concurrent_hashes`) takes jobs
//! from one queue; further logins wait their turn in the queue.
//!
//! Priority alone does not keep the proxy path fast: an Argon2id hash
//! fills a core's caches with 19 MiB of memory traffic, so a request that
//! preempts it still runs slower. So while other requests are being served
//! (at least [`BUSY_REQUESTS`] in the last [`BUSY_WINDOW`], not counting the
//! logins themselves), at most one core less than the machine has computes
//! hashes: on 2 cores, one hashing thread, leaving one core to the proxy.
//! With no other traffic, every hashing thread works.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use portcullis::identity::hash_pool::HashPool;
//! let pool = HashPool::new(1);
//! assert_eq!(pool.run(|| 6 * 7).await.unwrap(), 42);
//! # });
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::gates::shed::requests_started;

/// Other requests within [`BUSY_WINDOW`] that make the proxy path busy.
pub const BUSY_REQUESTS: u64 = 2;
/// How long the proxy path counts as busy after its last requests.
pub const BUSY_WINDOW: Duration = Duration::from_millis(250);
/// How often a yielding hashing thread looks again.
const POLL: Duration = Duration::from_millis(10);

type Job = Box<dyn FnOnce() + Send>;

/// The hashing threads; they end when the pool is dropped.
#[derive(Debug)]
pub struct HashPool {
    jobs: Sender<Job>,
    submitted: Arc<AtomicU64>,
}

/// The pool is gone (only while the process stops).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the hashing threads stopped")]
pub struct PoolStopped;

impl HashPool {
    /// Starts `threads` hashing threads (at least one); while other
    /// requests are served, only as many as the machine has cores less one.
    pub fn new(threads: usize) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Self::watching(threads, cores.saturating_sub(1), requests_started)
    }

    /// Starts `threads` hashing threads, of which at most `busy_cap` (at
    /// least one) work while `started` (requests entered) grows faster than
    /// the hashes submitted.
    fn watching(threads: usize, busy_cap: usize, started: fn() -> u64) -> Self {
        let (jobs, queue) = channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let submitted = Arc::new(AtomicU64::new(0));
        let busy_cap = busy_cap.max(1);
        for index in 0..threads.max(1) {
            let queue = queue.clone();
            let traffic = (index >= busy_cap).then(|| Traffic::new(started, submitted.clone()));
            let started = std::thread::Builder::new()
                .name(format!("portcullis-hash-{index}"))
                .spawn(move || work(&queue, traffic));
            if let Err(error) = started {
                tracing::error!(%error, "cannot start a password hashing thread");
            }
        }
        Self { jobs, submitted }
    }

    /// Runs `job` on a hashing thread and waits for its result.
    pub async fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Result<T, PoolStopped> {
        let (done, result) = tokio::sync::oneshot::channel();
        self.submitted.fetch_add(1, Ordering::Relaxed);
        self.jobs
            .send(Box::new(move || {
                let _ = done.send(job());
            }))
            .map_err(|_| PoolStopped)?;
        result.await.map_err(|_| PoolStopped)
    }
}

/// A hashing thread's loop; with `traffic`, it stands aside while other
/// requests are served.
fn work(queue: &Mutex<Receiver<Job>>, mut traffic: Option<Traffic>) {
    lower_priority();
    loop {
        let job = match queue.lock() {
            Err(_) => return,
            // Looked at once the queue is ours: the thread may have waited for it.
            Ok(queue) => match traffic.as_mut().map(|traffic| traffic.busy(Instant::now())) {
                None => queue.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(true) => Err(RecvTimeoutError::Timeout),
                Some(false) => queue.recv_timeout(POLL),
            },
        };
        match job {
            Ok(job) => job(),
            // Busy: look again when the window ends (few wake-ups while the proxy works).
            Err(RecvTimeoutError::Timeout) => std::thread::sleep(traffic.as_ref().map_or(POLL, Traffic::quiet_in)),
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Whether requests other than the pool's own logins are being served:
/// requests that entered the gateway, less the hashes submitted.
struct Traffic {
    started: fn() -> u64,
    submitted: Arc<AtomicU64>,
    /// When the current window began, and the count of other requests then.
    mark: (Instant, u64),
    busy_until: Option<Instant>,
}

impl Traffic {
    fn new(started: fn() -> u64, submitted: Arc<AtomicU64>) -> Self {
        let mut traffic = Self { started, submitted, mark: (Instant::now(), 0), busy_until: None };
        traffic.mark.1 = traffic.others();
        traffic
    }

    fn others(&self) -> u64 {
        (self.started)().saturating_sub(self.submitted.load(Ordering::Relaxed))
    }

    /// Whether [`BUSY_REQUESTS`] other requests came within a window of
    /// [`BUSY_WINDOW`] that ended less than [`BUSY_WINDOW`] before `now`.
    fn busy(&mut self, now: Instant) -> bool {
        let others = self.others();
        if others >= self.mark.1 + BUSY_REQUESTS {
            self.busy_until = Some(now + BUSY_WINDOW);
            self.mark = (now, others);
        } else if now.duration_since(self.mark.0) > BUSY_WINDOW {
            self.mark = (now, others);
        }
        self.busy_until.is_some_and(|until| now < until)
    }

    /// How long until the current busy window ends, at least [`POLL`].
    fn quiet_in(&self) -> Duration {
        self.busy_until.map_or(POLL, |until| until.saturating_duration_since(Instant::now()).max(POLL))
    }
}

/// `SCHED_IDLE` for the calling thread (Linux): it runs only when no
/// ordinary thread wants the CPU, and a waking request thread preempts it
/// at once.
#[cfg(target_os = "linux")]
fn lower_priority() {
    use thread_priority::unix::{NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy};
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    let native = thread_priority::unix::thread_native_id();
    if let Err(error) = set_thread_priority_and_policy(native, thread_priority::ThreadPriority::Min, idle) {
        tracing::warn!(?error, "cannot lower the priority of a password hashing thread");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_low_priority_threads() {
        let pool = HashPool::new(2);
        let (name, policy) = pool
            .run(|| (std::thread::current().name().map(str::to_owned), thread_priority::unix::thread_schedule_policy()))
            .await
            .unwrap();
        assert!(name.unwrap().starts_with("portcullis-hash-"));
        let idle = thread_priority::unix::ThreadSchedulePolicy::Normal(
            thread_priority::unix::NormalThreadSchedulePolicy::Idle,
        );
        assert_eq!(policy.unwrap(), idle);
        let results = futures_util::future::join_all((0..10).map(|n| pool.run(move || n * 2))).await;
        assert_eq!(results.into_iter().map(Result::unwrap).sum::<i32>(), 90);
    }

    /// Runs `jobs` jobs of 30 ms on `pool`; returns how many ran at once at most.
    async fn most_at_once(pool: &HashPool, jobs: usize) -> usize {
        let (running, most) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let runs = (0..jobs).map(|_| {
            let (running, most) = (running.clone(), most.clone());
            pool.run(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(30));
                running.fetch_sub(1, Ordering::SeqCst);
            })
        });
        futures_util::future::join_all(runs).await;
        usize::try_from(most.load(Ordering::SeqCst)).unwrap()
    }

    #[tokio::test]
    async fn hashing_leaves_a_core_to_other_requests() {
        // This test's own count of requests: other tests' requests do not disturb it.
        static STARTED: AtomicU64 = AtomicU64::new(0);
        let pool = HashPool::watching(3, 1, || STARTED.load(Ordering::Relaxed));
        assert_eq!(most_at_once(&pool, 6).await, 3, "no other traffic: every thread hashes");
        // Other requests keep coming while the jobs run: one thread only.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let traffic = std::thread::spawn({
            let stop = stop.clone();
            move || {
                while !stop.load(Ordering::Relaxed) {
                    STARTED.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        std::thread::sleep(POLL * 10);
        assert_eq!(most_at_once(&pool, 6).await, 1, "busy: the other threads stand aside");
        stop.store(true, Ordering::Relaxed);
        traffic.join().unwrap();
    }

    #[test]
    fn traffic_is_busy_for_a_window_after_other_requests() {
        static STARTED: AtomicU64 = AtomicU64::new(0);
        let submitted = Arc::new(AtomicU64::new(0));
        let mut traffic = Traffic::new(|| STARTED.load(Ordering::Relaxed), submitted.clone());
        let start = Instant::now();
        assert!(!traffic.busy(start));
        // Logins (their hashes submitted) do not make the path busy.
        submitted.fetch_add(5, Ordering::Relaxed);
        STARTED.fetch_add(5, Ordering::Relaxed);
        assert!(!traffic.busy(start), "five requests, five hashes: only logins");
        STARTED.fetch_add(2, Ordering::Relaxed);
        assert!(traffic.busy(start + POLL));
        assert!(traffic.busy(start + BUSY_WINDOW), "still within the window");
        assert!(!traffic.busy(start + POLL + BUSY_WINDOW * 2), "quiet again");
    }
}
