//! `mk8s-bootstrap balance`: the node-local apiserver balancer, the built-in
//! alternative to traefik and HAProxy (issue 17; the design is section 5 of the
//! balancer audit). It reads the traefik-style files the generator writes
//! ([`config`]), passes TLS through untouched to the control plane, and never reads
//! the JoinPlan: its unit runs as a dynamic user that can read only those files and
//! the cluster CA.
//!
//! - Choice ([`state`]): power of two choices on active connections among the
//!   backends in rotation, then the others in rotation, then the benched ones,
//!   soonest re-probe first: fail open, a client is never refused because every
//!   backend is benched.
//! - Failover ([`pipe`]): a refused or slow dial, or no first byte within the
//!   first-byte timeout, benches the backend and replays the client's first TLS
//!   record to the next one, so a killed apiserver costs clients nothing and a hung
//!   one one timeout.
//! - Bench: exponential back-off from 0.5 s to 120 s with equal jitter; a passive
//!   failure never closes existing connections by itself.
//! - Checks ([`probe`]): TLS verified against the CA, anonymous `GET /readyz`,
//!   200 or 401 healthy. Only to re-admit a benched backend, to confirm a suspect
//!   (a connection the backend ended, or a stall), and as a sweep every
//!   `healthCheck.interval` (uniform in [I/2, 3I/2]). A failed check benches the
//!   backend and closes its connections, so watches move at once.
//! - Reload ([`reload`]) of the provider file; readiness ([`notify`]) for systemd.
//! - One log line on stderr per state change, none per connection.

pub mod config;
pub mod notify;
mod pipe;
pub mod probe;
pub mod reload;
pub mod state;

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use config::{Settings, Tuning};
use state::{rand_u64, sweep_jitter, Backend};

/// What the command line gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// `traefik.yaml`.
    pub config: PathBuf,
    /// The cluster CA (PEM) the backends' certificates must chain to.
    pub ca: PathBuf,
    pub tuning: Tuning,
}

/// Exit codes: the listener cannot be bound (systemd restarts the unit), and a
/// configuration or CA file that cannot be used.
pub const EXIT_RETRY: u8 = 75;
pub const EXIT_CONFIG: u8 = 78;

/// One line on stderr (the journal). A failed write is ignored, never a panic.
pub fn log(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "balance: {args}");
}

/// A lock, even if a thread panicked while holding it: the data stays usable.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

/// The state shared by the acceptor, the connections, the prober and the reloader.
pub struct Balancer {
    /// The probes' TLS client (trusts the cluster CA only).
    pub tls: Arc<rustls::ClientConfig>,
    settings: RwLock<Settings>,
    list: RwLock<Vec<Arc<Backend>>>,
    /// Client connections being served.
    pub open: Arc<AtomicUsize>,
    epoch: Instant,
    next_id: AtomicU64,
}

impl Balancer {
    pub fn new(tls: Arc<rustls::ClientConfig>, settings: Settings, servers: &[std::net::SocketAddr]) -> Balancer {
        let now = Instant::now();
        let list = servers
            .iter()
            .map(|a| Arc::new(Backend::new(*a, now, sweep_jitter(settings.check_interval, rand_u64()))))
            .collect();
        Balancer {
            tls,
            settings: RwLock::new(settings),
            list: RwLock::new(list),
            open: Arc::new(AtomicUsize::new(0)),
            epoch: now,
            next_id: AtomicU64::new(0),
        }
    }

    /// The backends now, in the provider file's order.
    pub fn backends(&self) -> Vec<Arc<Backend>> {
        read(&self.list).clone()
    }

    pub fn settings(&self) -> Settings {
        *read(&self.settings)
    }

    /// Milliseconds since start, plus one (0 means "never").
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Relaxed)
    }
}

/// Run the balancer; returns only on a fatal error, with the exit code.
pub fn run(args: &Args) -> u8 {
    match start(args) {
        Ok(never) => match never {},
        Err((code, why)) => {
            log(format_args!("{why}"));
            code
        }
    }
}

fn start(args: &Args) -> Result<std::convert::Infallible, (u8, String)> {
    let config = |e| (EXIT_CONFIG, e);
    let entry = config::read_entry(&args.config).map_err(config)?;
    let ca_file = args.ca.display();
    let ca = std::fs::read_to_string(&args.ca).map_err(|e| config(format!("{ca_file}: {e}")))?;
    let tls = probe::client_config(&ca).map_err(|e| config(format!("{ca_file}: {e}")))?;
    let stamp = reload::stamp(&entry.provider);
    let provider = config::read_provider(&entry.provider).map_err(config)?;
    let b = Arc::new(Balancer::new(tls, args.tuning.settings(&provider), &provider.servers));
    let listener =
        TcpListener::bind(entry.listen).map_err(|e| (EXIT_RETRY, format!("cannot listen on {}: {e}", entry.listen)))?;
    let servers: Vec<String> = provider.servers.iter().map(|s| s.to_string()).collect();
    log(format_args!("listening on {}; {} server(s): {}", entry.listen, servers.len(), servers.join(", ")));
    if let Err(e) = notify::ready() {
        log(format_args!("{e}"));
    }
    // Room for serde_json's 128 levels of nesting in a hostile provider file; only
    // the pages touched count in memory.
    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name.into())
            .stack_size(1024 * 1024)
            .spawn(f)
            .map_err(|e| (EXIT_RETRY, format!("cannot start the {name}: {e}")))
    };
    let b2 = b.clone();
    spawn("prober", Box::new(move || probe::run(b2)))?;
    let (b3, path, tuning) = (b.clone(), entry.provider.clone(), args.tuning.clone());
    spawn("reloader", Box::new(move || reload::run(b3, path, tuning, stamp)))?;
    pipe::accept_loop(b, listener)
}
