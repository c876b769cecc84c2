//! CPU-heavy pure work off the async workers: the assessment engine (`yunwei_sla::assess`),
//! building the report model and signing and rendering it take seconds of CPU on a large month,
//! which on a tokio worker stalls every request and background loop sharing that thread.
//! [`run`] moves such work to tokio's blocking threads, at most
//! [`MAX_CONCURRENT_COMPUTE`](yunwei_conf::limits::MAX_CONCURRENT_COMPUTE) at once, within a
//! time limit (waiting for a slot included). Store reads and writes stay async around it.
//!
//! A computation past its limit is abandoned, not stopped (a blocking thread cannot be
//! interrupted): its caller gets [`ComputeError::TimedOut`] at once, while the work finishes
//! in the background still holding its slot, so abandoned work never lets more than the
//! limit run at once. Work that can stop early takes a flag the caller sets when it gives up:
//! PromQL queries ([`yunwei_rules::promql::Cancel`], set by the query API past its limit or
//! when the client hangs up) stop at their next step and free the slot.

use std::time::Duration;

use tokio::sync::Semaphore;

static SLOTS: Semaphore = Semaphore::const_new(yunwei_conf::limits::MAX_CONCURRENT_COMPUTE);

/// Why a computation gave no result.
#[derive(Debug, thiserror::Error)]
pub enum ComputeError {
    /// It did not finish (or found no free slot) within the limit.
    #[error("the computation did not finish within {} ms", .0.as_millis())]
    TimedOut(Duration),
    /// It panicked (a bug; the message is logged, not returned to clients).
    #[error("the computation failed: {0}")]
    Failed(String),
}

/// Runs `f` on a blocking thread, at most `MAX_CONCURRENT_COMPUTE` at once, and waits at most
/// `limit` (`None`: no limit, for the command line) for its result.
pub async fn run<T, F>(limit: Option<Duration>, f: F) -> Result<T, ComputeError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let work = async {
        let slot = SLOTS
            .acquire()
            .await
            .expect("the semaphore is never closed");
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            f()
        })
        .await
        .map_err(|e| ComputeError::Failed(e.to_string()))
    };
    match limit {
        None => work.await,
        Some(limit) => tokio::time::timeout(limit, work)
            .await
            .map_err(|_| ComputeError::TimedOut(limit))?,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn work_runs_off_the_async_thread_and_times_out_at_its_limit() {
        let here = std::thread::current().id();
        let there = run(None, || std::thread::current().id()).await.unwrap();
        assert_ne!(here, there, "the work ran on the async worker");
        let slow = run(Some(Duration::from_millis(20)), || {
            std::thread::sleep(Duration::from_millis(500))
        })
        .await;
        assert!(matches!(slow, Err(ComputeError::TimedOut(_))), "{slow:?}");
        let quick = run(Some(Duration::from_secs(10)), || 6 * 7).await.unwrap();
        assert_eq!(quick, 42);
    }
}
