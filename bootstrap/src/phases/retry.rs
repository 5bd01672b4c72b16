//! A phase's retried operation: the plan's backoff until the run's deadline, with
//! one log line and one status update per failed attempt.

use std::time::{Duration, Instant};

use crate::phases::cx::{PhaseCx, StepError};
use crate::plan::JoinPlan;
use crate::retry::{Backoff, Failure, Jitter, Outcome};

/// Retry `op` under the plan's backoff until the run's deadline. A fatal failure
/// stops at once (exit 78); the deadline passing is retryable (exit 75).
pub fn retry<T>(
    cx: &mut dyn PhaseCx,
    phase: &str,
    plan: &JoinPlan,
    mut op: impl FnMut(u32) -> Result<T, Failure>,
) -> Result<T, StepError> {
    let backoff = Backoff {
        initial: Duration::from_millis(plan.timing.retry_initial_ms),
        cap: Duration::from_millis(plan.timing.retry_cap_ms),
        deadline: cx.deadline(),
    };
    let before = cx.attempts();
    let mut attempts = 0;
    // `Backoff::run` holds the jitter while the log callback holds the context: the
    // jitter is lent out for the run and put back after it.
    let mut jitter = std::mem::replace(cx.jitter(), Jitter::new(0));
    let outcome = backoff.run(
        &mut jitter,
        |a| {
            attempts = a;
            op(a)
        },
        |a, f, delay| {
            // The status file shows every attempt while a phase retries.
            cx.record_attempt(before + a, Some(&f.to_string()));
            let line = match f {
                Failure::Retry(m) => format!("attempt {a} failed: {m}; retrying in {:.1}s", delay.as_secs_f64()),
                Failure::Fatal(m) => format!("attempt {a} failed, not retrying: {m}"),
            };
            cx.log(phase, &line);
        },
        std::thread::sleep,
        Instant::now,
    );
    *cx.jitter() = jitter;
    cx.record_attempt(before + attempts, None);
    match outcome {
        Outcome::Done(v) => Ok(v),
        Outcome::Fatal(m) => Err(StepError::Fatal(m)),
        Outcome::TimedOut(m) => Err(StepError::Retryable(format!("gave up after {attempts} attempt(s): {m}"))),
    }
}

/// A 401/403 (the only fatal answers of a Node read) is retried until `grace` has
/// passed since the first one (`first`, kept by the caller across attempts).
pub fn retry_rejections_for<T>(
    grace: Duration,
    first: &mut Option<Instant>,
    r: Result<T, Failure>,
) -> Result<T, Failure> {
    match r {
        Err(Failure::Fatal(m)) => {
            let since = *first.get_or_insert_with(Instant::now);
            if since.elapsed() < grace {
                Err(Failure::Retry(format!("{m} [retrying for up to {}s]", grace.as_secs())))
            } else {
                Err(Failure::Fatal(m))
            }
        }
        other => other,
    }
}
