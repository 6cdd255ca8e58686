//! The threads that compute password hashes, at the lowest CPU priority
//! (`SCHED_IDLE` on Linux): a flood of logins gets only the CPU time the proxy
//! path leaves, so proxied requests keep their latency while Argon2id runs.
//!
//! A fixed number of threads (`[login] max_concurrent_hashes`) takes jobs
//! from one queue; further logins wait their turn in the queue.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use portcullis::identity::hash_pool::HashPool;
//! let pool = HashPool::new(1);
//! assert_eq!(pool.run(|| 6 * 7).await.unwrap(), 42);
//! # });
//! ```

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// The hashing threads; they end when the pool is dropped.
#[derive(Debug)]
pub struct HashPool {
    jobs: Sender<Job>,
}

/// The pool is gone (only while the process stops).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the hashing threads stopped")]
pub struct PoolStopped;

impl HashPool {
    /// Starts `threads` hashing threads (at least one).
    pub fn new(threads: usize) -> Self {
        let (jobs, queue) = channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for index in 0..threads.max(1) {
            let queue = queue.clone();
            let started =
                std::thread::Builder::new().name(format!("portcullis-hash-{index}")).spawn(move || work(&queue));
            if let Err(error) = started {
                tracing::error!(%error, "cannot start a password hashing thread");
            }
        }
        Self { jobs }
    }

    /// Runs `job` on a hashing thread and waits for its result.
    pub async fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Result<T, PoolStopped> {
        let (done, result) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = done.send(job());
            }))
            .map_err(|_| PoolStopped)?;
        result.await.map_err(|_| PoolStopped)
    }
}

fn work(queue: &Mutex<Receiver<Job>>) {
    lower_priority();
    loop {
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
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
}
