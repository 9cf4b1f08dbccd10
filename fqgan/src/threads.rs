//! How many CPU threads the CPU backends use.
//!
//! burn-flex (and its gemm) run their parallel loops on rayon's process-wide pool. That pool
//! is built once, on first use; [`configure`] builds it first with the count asked for, so it
//! must run before any tensor work (the CLI does it while parsing flags, the C library in
//! `fqgan_set_num_threads`).

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use crate::codec::Progress;
use crate::error::{Error, Result};

/// The environment variable that sets the thread count when no explicit count is given.
pub const THREADS_ENV: &str = "FQGAN_NUM_THREADS";

/// The most threads one process may ask for: far above any CPU, low enough that a typo
/// (`--threads 1000000`) is an error instead of a million OS threads.
pub const MAX_THREADS: usize = 1024;

/// The count the pool was built with by [`configure`]; 0 until then.
static CONFIGURED: AtomicUsize = AtomicUsize::new(0);

/// The thread count from `FQGAN_NUM_THREADS`, if it is set (an error names a bad value).
pub fn from_env() -> Result<Option<usize>> {
    match std::env::var(THREADS_ENV) {
        Ok(value) if !value.trim().is_empty() => parse(value.trim()).map(Some),
        _ => Ok(None),
    }
}

/// Parses a thread count: an integer in `1..=MAX_THREADS`.
pub fn parse(value: &str) -> Result<usize> {
    value.parse::<usize>().ok().filter(|n| (1..=MAX_THREADS).contains(n)).ok_or_else(|| out_of_range(value))
}

fn out_of_range(value: impl std::fmt::Display) -> Error {
    Error::Input(format!("thread count '{value}' must be an integer from 1 to {MAX_THREADS}"))
}

/// Builds the process-wide pool with `threads` workers (`None`: `FQGAN_NUM_THREADS`, else one
/// per logical CPU) and returns the count in use. Calling it again with the same count, or
/// with `None` once configured, is fine; asking for another count once the pool runs is an
/// error, since rayon cannot resize it.
pub fn configure(threads: Option<usize>) -> Result<usize> {
    let wanted = match threads {
        Some(n) if (1..=MAX_THREADS).contains(&n) => Some(n),
        Some(n) => return Err(out_of_range(n)),
        None => from_env()?,
    };
    let running = match CONFIGURED.load(Ordering::SeqCst) {
        0 => {
            let n = wanted.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let built =
                rayon::ThreadPoolBuilder::new().num_threads(n).thread_name(|i| format!("fqgan-cpu-{i}")).build_global();
            // Failure: someone (rayon's lazy default, or another library) built it first.
            let running = if built.is_ok() { n } else { rayon::current_num_threads() };
            CONFIGURED.store(running, Ordering::SeqCst);
            running
        }
        running => running,
    };
    match wanted {
        Some(n) if n != running => Err(Error::Input(format!(
            "the CPU thread pool already runs {running} threads; set the count before the first model call"
        ))),
        _ => Ok(running),
    }
}

/// Runs `work` on one of the pool's threads and waits for it.
///
/// Every parallel loop started from outside the pool hands its job to a sleeping worker and
/// puts the caller to sleep until the job is done: two thread wake-ups per tensor op, which
/// on a virtual machine cost 14% of a training step. From inside the pool, the loops split
/// the work with the other workers directly. Long CPU jobs (a training run, a whole-texture
/// decode, a generation) therefore run through this once, at their entry point.
pub fn on_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return work();
    }
    configure(None).ok();
    rayon::scope(|_| work())
}

/// [`on_pool`] for work that reports progress: `progress` still runs on the calling thread
/// (where the C API promises to run its callbacks), told each report over a channel.
pub fn on_pool_reporting<R: Send>(progress: &mut Progress<'_>, work: impl FnOnce(&mut Progress<'_>) -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return work(progress);
    }
    configure(None).ok();
    let (report, reports) = mpsc::channel::<(usize, usize)>();
    let (answer, answers) = mpsc::sync_channel::<ControlFlow<()>>(1);
    let mut result = None;
    rayon::in_place_scope(|scope| {
        let result = &mut result;
        scope.spawn(move |_| {
            let mut relay = |done, total| {
                // A calling thread that stopped listening can only have unwound: stop too.
                if report.send((done, total)).is_err() {
                    return ControlFlow::Break(());
                }
                // While the callback runs, this worker runs other pool jobs: the callback may
                // itself call into fqgan, which with one worker would otherwise wait forever.
                loop {
                    match answers.recv_timeout(Duration::from_micros(100)) {
                        Ok(answer) => return answer,
                        Err(RecvTimeoutError::Timeout) => drop(rayon::yield_now()),
                        Err(RecvTimeoutError::Disconnected) => return ControlFlow::Break(()),
                    }
                }
            };
            *result = Some(work(&mut relay));
        });
        // Ends when the work ends and drops its sender.
        for (done, total) in reports {
            answer.send(progress(done, total)).ok();
        }
    });
    result.expect("the scope waited for the work")
}

/// The number of threads the CPU backends use now (the pool's size; building it with the
/// default count if nothing has).
pub fn current() -> usize {
    match CONFIGURED.load(Ordering::SeqCst) {
        0 => rayon::current_num_threads(),
        n => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reporting_work_runs_on_the_pool_and_its_progress_on_the_calling_thread() {
        let caller = std::thread::current().id();
        let mut seen = Vec::new();
        let mut progress = |done, total| {
            assert_eq!(std::thread::current().id(), caller);
            // A callback may call into the pool itself.
            seen.push(on_pool(|| (done, total)));
            if done == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let stopped_at = on_pool_reporting(&mut progress, |progress| {
            assert!(rayon::current_thread_index().is_some(), "the work runs on a pool thread");
            (1..=5).find(|&done| progress(done, 5).is_break())
        });
        assert_eq!(stopped_at, Some(2));
        assert_eq!(seen, [(1, 5), (2, 5)]);
    }

    #[test]
    fn counts_outside_the_range_are_errors_that_name_the_value() {
        assert_eq!(parse("4").unwrap(), 4);
        for bad in ["0", "-1", "two", "1025", ""] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("'{bad}'")), "{err}");
        }
    }
}
