//! The one retry component: exponential backoff with full jitter, a cap, an overall
//! deadline, and errors classified as retryable or fatal by the caller.
//!
//! Delay before attempt n+1 is uniform in [0, min(cap, initial * 2^n)] ("full
//! jitter"), so a fleet booting against a dead control plane spreads out instead of
//! retrying in lockstep. At the cap (30 s by default) a node averages one request
//! every 15 s.

use std::time::{Duration, Instant};

/// What an attempt's failure means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Worth trying again (connection refused, timeout, 5xx, 429, snap store down).
    Retry(String),
    /// Trying again cannot help (bad plan, rejected credentials).
    Fatal(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Retry(m) | Failure::Fatal(m) => f.write_str(m),
        }
    }
}

/// How a retried operation ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome<T> {
    Done(T),
    Fatal(String),
    /// The deadline passed; the last retryable error.
    TimedOut(String),
}

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub cap: Duration,
    pub deadline: Instant,
}

/// A small xorshift generator: jitter needs spread, not secrecy.
pub struct Jitter(u64);

impl Jitter {
    pub fn new(seed: u64) -> Jitter {
        Jitter(seed | 1)
    }

    /// Seeded from the clock and the process id, so nodes differ.
    pub fn from_entropy() -> Jitter {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Jitter::new(t ^ (u64::from(std::process::id()) << 32))
    }

    /// Uniform in [0, max].
    pub fn upto(&mut self, max: Duration) -> Duration {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        let ms = max.as_millis() as u64;
        Duration::from_millis(if ms == 0 { 0 } else { x % (ms + 1) })
    }
}

impl Backoff {
    /// The ceiling of the delay after `attempt` failures (1-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.saturating_sub(1).min(30)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.cap)
    }

    /// Run `op` until it succeeds, fails fatally, or the deadline passes. `log` gets
    /// one line per failed attempt. `sleep` is injectable so tests run instantly.
    pub fn run<T>(
        &self,
        jitter: &mut Jitter,
        mut op: impl FnMut(u32) -> Result<T, Failure>,
        mut log: impl FnMut(u32, &Failure, Duration),
        mut sleep: impl FnMut(Duration),
        now: impl Fn() -> Instant,
    ) -> Outcome<T> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match op(attempt) {
                Ok(v) => return Outcome::Done(v),
                Err(Failure::Fatal(m)) => {
                    log(attempt, &Failure::Fatal(m.clone()), Duration::ZERO);
                    return Outcome::Fatal(m);
                }
                Err(Failure::Retry(m)) => {
                    let left = self.deadline.saturating_duration_since(now());
                    if left.is_zero() {
                        log(attempt, &Failure::Retry(m.clone()), Duration::ZERO);
                        return Outcome::TimedOut(m);
                    }
                    let delay = jitter.upto(self.ceiling(attempt)).min(left);
                    log(attempt, &Failure::Retry(m), delay);
                    sleep(delay);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn backoff(deadline_ms: u64, start: Instant) -> Backoff {
        Backoff {
            initial: Duration::from_millis(100),
            cap: Duration::from_millis(1000),
            deadline: start + Duration::from_millis(deadline_ms),
        }
    }

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let b = backoff(0, Instant::now());
        let c: Vec<_> = (1..=6).map(|a| b.ceiling(a).as_millis()).collect();
        assert_eq!(c, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.ceiling(200), Duration::from_millis(1000));
    }

    #[test]
    fn jitter_stays_within_bounds_and_spreads() {
        let mut j = Jitter::new(42);
        let max = Duration::from_millis(1000);
        let xs: Vec<_> = (0..2000).map(|_| j.upto(max)).collect();
        assert!(xs.iter().all(|d| *d <= max));
        let mean = xs.iter().map(|d| d.as_millis()).sum::<u128>() / xs.len() as u128;
        assert!((400..600).contains(&mean), "mean {mean}");
        assert!(xs.iter().any(|d| d.as_millis() < 100) && xs.iter().any(|d| d.as_millis() > 900));
    }

    /// A fake clock that advances only by sleeping.
    fn run_with_fake_clock<T>(
        b: Backoff,
        start: Instant,
        op: impl FnMut(u32) -> Result<T, Failure>,
    ) -> (Outcome<T>, u32, Duration) {
        let now = Cell::new(start);
        let mut logged = 0;
        let out = b.run(&mut Jitter::new(7), op, |_, _, _| logged += 1, |d| now.set(now.get() + d), || now.get());
        (out, logged, now.get() - start)
    }

    #[test]
    fn retries_until_success() {
        let start = Instant::now();
        let (out, logged, _) = run_with_fake_clock(backoff(60_000, start), start, |a| {
            if a < 4 {
                Err(Failure::Retry(format!("refused {a}")))
            } else {
                Ok(a)
            }
        });
        assert_eq!(out, Outcome::Done(4));
        assert_eq!(logged, 3, "one line per failed attempt");
    }

    #[test]
    fn fatal_stops_at_once() {
        let start = Instant::now();
        let mut calls = 0;
        let (out, _, waited) = run_with_fake_clock(backoff(60_000, start), start, |_| -> Result<(), _> {
            calls += 1;
            Err(Failure::Fatal("401".into()))
        });
        assert_eq!(out, Outcome::Fatal("401".into()));
        assert_eq!(calls, 1);
        assert_eq!(waited, Duration::ZERO);
    }

    #[test]
    fn the_deadline_bounds_the_total_wait_and_the_request_rate() {
        let start = Instant::now();
        let mut calls = 0;
        let (out, _, waited) = run_with_fake_clock(backoff(30_000, start), start, |_| -> Result<(), _> {
            calls += 1;
            Err(Failure::Retry("connection refused".into()))
        });
        assert_eq!(out, Outcome::TimedOut("connection refused".into()));
        assert_eq!(waited, Duration::from_millis(30_000), "stops at the deadline, not past it");
        // With a 1 s cap and full jitter the mean delay is ~0.5 s: about 60 calls in 30 s,
        // never a tight loop.
        assert!((20..=150).contains(&calls), "{calls} calls in 30 s");
    }
}
