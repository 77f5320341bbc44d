//! The bounded pool for CPU-heavy work: certificate imports (parsing,
//! chain ordering, key decryption), argon2id password hashing and QR
//! codes. Such work runs on tokio's blocking threads, at most
//! [`CPU_PERMITS`] jobs at a time, so the async workers that serve the API
//! and the TLS listeners are never the ones computing, and a burst of
//! costly requests queues instead of taking every core.
//!
//! **Priority.** A job runs at nice [`JOB_NICE`]: when it competes for a
//! core with the threads that serve phones (their own runtime, see
//! `switchboard_web::https::Plane`), the kernel gives it about a tenth of
//! their share, so a costly import slows down rather than the phones.
//! The thread's priority is restored after the job (Linux keeps the nice
//! value per thread; without `CAP_SYS_NICE` a thread cannot raise it back,
//! and the blocking thread stays at the lower priority).
//!
//! **Cancellation.** A caller that is dropped (its client went away) stops
//! waiting; a job that had started runs to its end, still holding its
//! permit, and its result is dropped. So abandoned jobs never exceed the
//! bound, and nothing a dropped caller would have done after the job (such
//! as storing an imported certificate) happens.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::{EngineError, Result};

/// How many CPU-heavy jobs run at once: the appliance has few cores, and
/// the listeners need some.
pub const CPU_PERMITS: usize = 2;

/// The nice value a job runs at (0 is the default, 19 the lowest).
pub const JOB_NICE: i32 = 10;

#[derive(Debug, Clone)]
pub struct CpuPool {
    permits: Arc<Semaphore>,
    size: usize,
}

impl Default for CpuPool {
    fn default() -> Self {
        CpuPool::new(CPU_PERMITS)
    }
}

impl CpuPool {
    pub fn new(size: usize) -> CpuPool {
        CpuPool {
            permits: Arc::new(Semaphore::new(size)),
            size,
        }
    }

    /// Runs `job` (`what`, for an error message) on a blocking thread once
    /// a permit is free, and returns what it returned.
    pub async fn run<T: Send + 'static>(
        &self,
        what: &'static str,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| EngineError::System(format!("{what}: the CPU pool is closed")))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _nice = Niced::enter();
            job()
        })
        .await
        .map_err(|e| EngineError::System(format!("{what} failed: {e}")))
    }

    /// How many jobs run now.
    pub fn busy(&self) -> usize {
        self.size - self.permits.available_permits()
    }

    /// Waits until no job runs, abandoned ones included.
    pub async fn idle(&self) {
        let all = u32::try_from(self.size).unwrap_or(u32::MAX);
        // Only a closed semaphore fails, and this one is never closed.
        let _all = self.permits.acquire_many(all).await;
    }
}

/// The calling thread at [`JOB_NICE`] until dropped. (On Linux,
/// `setpriority(PRIO_PROCESS, 0, …)` changes the calling thread only.)
struct Niced {
    before: Option<i32>,
}

impl Niced {
    fn enter() -> Niced {
        let before = rustix::process::getpriority_process(None).ok();
        let lowered = before
            .filter(|&b| b < JOB_NICE)
            .and_then(|_| rustix::process::setpriority_process(None, JOB_NICE).ok());
        Niced {
            before: lowered.and(before),
        }
    }
}

impl Drop for Niced {
    fn drop(&mut self) {
        if let Some(before) = self.before {
            // Fails without CAP_SYS_NICE: the thread stays lower.
            let _ = rustix::process::setpriority_process(None, before);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn at_most_the_pool_size_runs_at_once_and_dropped_callers_keep_their_permit() {
        let pool = CpuPool::new(2);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let job = |running: Arc<AtomicUsize>, most: Arc<AtomicUsize>| {
            move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(50));
                running.fetch_sub(1, Ordering::SeqCst);
            }
        };
        let mut callers = Vec::new();
        for _ in 0..6 {
            let (pool, job) = (pool.clone(), job(running.clone(), most.clone()));
            callers.push(tokio::spawn(async move { pool.run("test", job).await }));
        }
        // Abandon two callers once their jobs may have started.
        tokio::time::sleep(Duration::from_millis(10)).await;
        callers[0].abort();
        callers[1].abort();
        for caller in callers.drain(2..) {
            caller.await.expect("joined").expect("ran");
        }
        pool.idle().await;
        assert_eq!(running.load(Ordering::SeqCst), 0);
        assert_eq!(most.load(Ordering::SeqCst), 2);
        assert_eq!(pool.busy(), 0);
    }

    #[tokio::test]
    async fn a_job_runs_at_a_lower_priority_than_its_caller() {
        let pool = CpuPool::new(1);
        let caller = rustix::process::getpriority_process(None).expect("nice");
        let job = pool
            .run("test", || {
                rustix::process::getpriority_process(None).expect("nice")
            })
            .await
            .expect("ran");
        assert_eq!(job, JOB_NICE.max(caller));
        assert_eq!(
            rustix::process::getpriority_process(None).expect("nice"),
            caller,
            "the caller's thread is left as it was"
        );
    }
}
