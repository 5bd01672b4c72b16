//! What the balancer knows about each backend, and the choices made from it: the
//! dial order (power of two choices, then fail open), the back-off of a benched
//! backend, when a backend is due for a probe. Pure where it can be: the clock and
//! the random draws are arguments, so the tests need no sleeping.

use std::hash::{BuildHasher, Hasher};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{lock, log};

/// A random u64 without a random crate: std's per-process random hash keys,
/// stirred with the clock and a counter. Spread, not secrecy.
pub fn rand_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Relaxed));
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Uniform in [d/2, d] ("equal jitter"), from the random draw `r`.
pub fn equal_jitter(d: Duration, r: u64) -> Duration {
    let half = ms(d) / 2;
    Duration::from_millis(ms(d) - half + r % (half + 1))
}

/// Uniform in [i/2, 3i/2], so that `i` is the mean: the sweep's spacing.
pub fn sweep_jitter(i: Duration, r: u64) -> Duration {
    let i = ms(i);
    Duration::from_millis(i / 2 + r % (i.saturating_add(1)))
}

/// The back-off ceiling after `fails` consecutive failures (1-based): `base`
/// doubling, at most `cap`.
pub fn backoff(fails: u32, base: Duration, cap: Duration) -> Duration {
    base.saturating_mul(1u32 << fails.saturating_sub(1).min(20)).min(cap)
}

/// One backend's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// In rotation (else benched).
    pub up: bool,
    /// Consecutive failures, for the back-off.
    pub fails: u32,
    /// Benched: when it is re-probed.
    pub retry_at: Instant,
    /// In rotation: when it is probed next (the sweep, or sooner for a suspect).
    pub next_check: Instant,
    /// The last time it became a suspect (one re-probe per suspect gap).
    pub last_suspect: Option<Instant>,
    pub probing: bool,
}

/// A client connection piped to a backend: both sockets, so that a failed probe or
/// a reload can end it from another thread.
pub struct Conn {
    pub id: u64,
    pub client: TcpStream,
    pub server: TcpStream,
    /// Milliseconds since the balancer's epoch (+1) of the first client byte the
    /// backend has not answered yet; 0 when nothing is waiting.
    pub waiting_since: AtomicU64,
    /// Set when the balancer itself ends the connection.
    pub closing: AtomicBool,
}

impl Conn {
    pub fn close(&self) {
        self.closing.store(true, Relaxed);
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
    }

    /// Bytes sent and nothing back for `stall` (never when `stall` is zero).
    pub fn stalled(&self, now_ms: u64, stall: Duration) -> bool {
        let w = self.waiting_since.load(Relaxed);
        !stall.is_zero() && w != 0 && now_ms.saturating_sub(w) >= ms(stall)
    }
}

pub struct Backend {
    pub addr: SocketAddr,
    /// Connections piped to it now: the power of two choices compares these.
    pub active: AtomicUsize,
    health: Mutex<Health>,
    conns: Mutex<Vec<Arc<Conn>>>,
}

impl Backend {
    /// In rotation, first swept after `first_check`.
    pub fn new(addr: SocketAddr, now: Instant, first_check: Duration) -> Backend {
        let health = Health {
            up: true,
            fails: 0,
            retry_at: now,
            next_check: now + first_check,
            last_suspect: None,
            probing: false,
        };
        Backend { addr, active: AtomicUsize::new(0), health: Mutex::new(health), conns: Mutex::new(Vec::new()) }
    }

    pub fn health(&self) -> Health {
        *lock(&self.health)
    }

    pub fn is_up(&self) -> bool {
        lock(&self.health).up
    }

    /// A failure: out of rotation until a probe after the back-off (equal jitter
    /// from `r`) says otherwise. Existing connections are left alone: one lost SYN
    /// must not move every watch. Returns the wait until the re-probe.
    pub fn bench(&self, why: &str, now: Instant, r: u64, base: Duration, cap: Duration) -> Duration {
        let mut h = lock(&self.health);
        h.fails = h.fails.saturating_add(1);
        let wait = equal_jitter(backoff(h.fails, base, cap), r);
        h.retry_at = now + wait;
        if h.up {
            h.up = false;
            log(format_args!("{} out of rotation: {why}; re-probe in {:.1}s", self.addr, wait.as_secs_f64()));
        }
        wait
    }

    /// A success (an answer to a client or a probe): back in rotation, the
    /// back-off forgotten.
    pub fn admit(&self, why: &str) {
        let mut h = lock(&self.health);
        h.fails = 0;
        if !h.up {
            h.up = true;
            log(format_args!("{} back in rotation: {why}", self.addr));
        }
    }

    /// A connection ended by the backend, or a stall: probe it soon, at most once
    /// per `gap`. Benched backends are re-probed on their back-off anyway.
    pub fn suspect(&self, now: Instant, gap: Duration) {
        let mut h = lock(&self.health);
        if h.up && h.last_suspect.is_none_or(|t| now.saturating_duration_since(t) >= gap) {
            h.last_suspect = Some(now);
            h.next_check = h.next_check.min(now);
        }
    }

    /// Whether a probe is due now (benched past its back-off, or in rotation past
    /// its next check); if so it is marked as being probed.
    pub fn take_due(&self, now: Instant) -> bool {
        let mut h = lock(&self.health);
        let due = !h.probing && if h.up { now >= h.next_check } else { now >= h.retry_at };
        h.probing |= due;
        due
    }

    /// A probe ended; the next sweep is `next` from now.
    pub fn probed(&self, now: Instant, next: Duration) {
        let mut h = lock(&self.health);
        h.probing = false;
        h.next_check = now + next;
    }

    pub fn add_conn(&self, c: Arc<Conn>) {
        lock(&self.conns).push(c);
        self.active.fetch_add(1, Relaxed);
    }

    pub fn remove_conn(&self, id: u64) {
        lock(&self.conns).retain(|c| c.id != id);
        self.active.fetch_sub(1, Relaxed);
    }

    /// End every connection to it (client and backend sockets); how many.
    pub fn close_all(&self) -> usize {
        let conns = lock(&self.conns);
        conns.iter().for_each(|c| c.close());
        conns.len()
    }

    pub fn any_stalled(&self, now_ms: u64, stall: Duration) -> bool {
        lock(&self.conns).iter().any(|c| c.stalled(now_ms, stall))
    }
}

/// What the dial order looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    pub up: bool,
    pub active: usize,
    pub retry_at: Instant,
}

/// The dial order, as indexes into `v`: the better of two random backends in
/// rotation (fewer active connections; `r` draws the pair), then the other
/// backends in rotation (fewest connections first), then the benched ones, soonest
/// re-probe first. Fail open: every backend is in the list.
pub fn order(v: &[View], r: u64) -> Vec<usize> {
    let (mut up, mut down): (Vec<usize>, Vec<usize>) = (0..v.len()).partition(|&i| v[i].up);
    up.sort_by_key(|&i| v[i].active);
    if up.len() > 1 {
        let n = up.len() as u64;
        let a = (r % n) as usize;
        let b = (a + 1 + ((r >> 32) % (n - 1)) as usize) % up.len();
        let (a, b) = (up[a], up[b]);
        let best = if v[b].active < v[a].active { b } else { a };
        up.retain(|&i| i != best);
        up.insert(0, best);
    }
    down.sort_by_key(|&i| v[i].retry_at);
    up.extend(down);
    up
}

/// The dial order of these backends, with a fresh random draw.
pub fn dial_order(list: &[Arc<Backend>]) -> Vec<Arc<Backend>> {
    let views: Vec<View> = list
        .iter()
        .map(|b| {
            let h = b.health();
            View { up: h.up, active: b.active.load(Relaxed), retry_at: h.retry_at }
        })
        .collect();
    order(&views, rand_u64()).into_iter().map(|i| list[i].clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn backoff_doubles_from_half_a_second_to_the_cap() {
        let c: Vec<u64> = (1..=10).map(|f| ms(backoff(f, MS(500), S(120)))).collect();
        assert_eq!(c, vec![500, 1000, 2000, 4000, 8000, 16_000, 32_000, 64_000, 120_000, 120_000]);
        assert_eq!(backoff(u32::MAX, MS(500), S(120)), S(120), "no overflow");
        assert_eq!(backoff(0, MS(500), S(120)), MS(500));
    }

    #[test]
    fn equal_jitter_stays_in_its_half_and_spreads() {
        let d = S(120);
        let xs: Vec<Duration> = (0..4000).map(|_| equal_jitter(d, rand_u64())).collect();
        assert!(xs.iter().all(|x| (S(60)..=S(120)).contains(x)), "in [d/2, d]");
        assert!(xs.iter().any(|x| *x < S(66)) && xs.iter().any(|x| *x > S(114)), "spread over the range");
        assert_eq!(equal_jitter(d, 0), S(60));
        assert_eq!(equal_jitter(d, 60_000), S(120));
        assert_eq!(equal_jitter(Duration::ZERO, 7), Duration::ZERO);
        let mean = xs.iter().map(|x| ms(*x)).sum::<u64>() / xs.len() as u64;
        assert!((85_000..95_000).contains(&mean), "mean {mean} ms");
    }

    #[test]
    fn the_sweep_is_uniform_around_its_interval() {
        let i = S(300);
        let xs: Vec<u64> = (0..4000).map(|_| ms(sweep_jitter(i, rand_u64()))).collect();
        assert!(xs.iter().all(|x| (150_000..=450_000).contains(x)), "in [I/2, 3I/2]");
        let mean = xs.iter().sum::<u64>() / xs.len() as u64;
        assert!((285_000..315_000).contains(&mean), "mean {mean} ms is I");
        assert_eq!(sweep_jitter(i, 0), S(150));
        assert_eq!(sweep_jitter(i, 300_000), S(450));
    }

    fn views(spec: &[(bool, usize, u64)]) -> Vec<View> {
        let t0 = Instant::now();
        spec.iter().map(|&(up, active, retry)| View { up, active, retry_at: t0 + S(retry) }).collect()
    }

    #[test]
    fn power_of_two_choices_takes_the_less_loaded_of_the_pair() {
        let v = views(&[(true, 5, 0), (true, 1, 0), (true, 9, 0)]);
        // Every pair that holds backend 1 picks it; the pair (0, 2) picks 0.
        let mut firsts = [0usize; 3];
        for r in 0..3000u64 {
            let o = order(&v, r.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            assert_eq!(o.len(), 3);
            firsts[o[0]] += 1;
            let mut rest = o[1..].to_vec();
            rest.sort_by_key(|&i| v[i].active);
            assert_eq!(o[1..], rest[..], "then the others by load");
        }
        assert_eq!(firsts[2], 0, "the busiest never wins a pair");
        assert!(firsts[1] > firsts[0] * 3 / 2, "{firsts:?}");
        assert!(firsts[0] > 0, "a pair without the idlest one: {firsts:?}");
        // Equal loads: every backend comes first sometimes (a fleet spreads).
        let even = views(&[(true, 0, 0), (true, 0, 0), (true, 0, 0)]);
        let mut seen = [false; 3];
        (0..200).for_each(|_| seen[order(&even, rand_u64())[0]] = true);
        assert_eq!(seen, [true; 3]);
    }

    #[test]
    fn fail_open_benched_backends_come_last_soonest_reprobe_first() {
        let v = views(&[(false, 0, 30), (true, 7, 0), (false, 0, 5), (false, 0, 60)]);
        for r in [0, 1, u64::MAX, rand_u64()] {
            assert_eq!(order(&v, r), vec![1, 2, 0, 3]);
        }
        let all_down = views(&[(false, 0, 9), (false, 0, 3), (false, 0, 6)]);
        assert_eq!(order(&all_down, rand_u64()), vec![1, 2, 0], "all benched: still every one, in re-probe order");
        assert_eq!(order(&[], 3), Vec::<usize>::new());
    }

    #[test]
    fn bench_admit_suspect_and_due() {
        let t0 = Instant::now();
        let b = Backend::new("127.0.0.1:1".parse().unwrap(), t0, S(300));
        assert!(b.is_up() && !b.take_due(t0));
        let w1 = b.bench("dial: refused", t0, 0, MS(500), S(120));
        let w2 = b.bench("dial: refused", t0, u64::MAX, MS(500), S(120));
        assert_eq!((w1, b.health().fails, b.is_up()), (MS(250), 2, false));
        assert!((MS(500)..=S(1)).contains(&w2), "second failure: [0.5 s, 1 s]");
        b.suspect(t0, S(5));
        assert_eq!(b.health().last_suspect, None, "a benched backend waits for its back-off");
        assert!(!b.take_due(t0) && b.take_due(t0 + w2), "re-probed after the back-off");
        assert!(!b.take_due(t0 + w2), "one probe at a time");
        b.admit("check: 200");
        b.probed(t0 + w2, S(300));
        assert_eq!((b.is_up(), b.health().fails), (true, 0));
        let t1 = t0 + S(10);
        b.suspect(t1, S(5));
        assert!(b.take_due(t1), "a suspect is probed at once");
        b.probed(t1, S(300));
        b.suspect(t1 + S(4), S(5));
        assert!(!b.take_due(t1 + S(4)), "at most one suspect probe per gap");
        b.suspect(t1 + S(5), S(5));
        assert!(b.take_due(t1 + S(5)));
    }
}
