//! Reload: the provider file's metadata is polled (no inotify in std, no signal
//! handling needed). A changed file is read again; an unreadable or invalid file,
//! or an empty server list, is refused with one log line and the servers in use
//! are kept. Backends that stay keep their state and connections; removed ones
//! have their connections closed; added ones join in rotation.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::config::{read_provider, Provider, Tuning};
use super::state::{rand_u64, sweep_jitter, Backend};
use super::{log, write, Balancer};

/// What tells a changed file: modification time, length and inode (an atomic
/// rename changes the inode); None when it cannot be read.
pub type Stamp = Option<(SystemTime, u64, u64)>;

pub fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// Poll `path` every `tuning.reload_every`, forever.
pub fn run(b: Arc<Balancer>, path: PathBuf, tuning: Tuning, mut last: Stamp) {
    loop {
        std::thread::sleep(tuning.reload_every);
        let now = stamp(&path);
        if now == last {
            continue;
        }
        last = now;
        match read_provider(&path) {
            Ok(p) => apply(&b, &tuning, &p),
            Err(e) => log(format_args!("reload refused: {e}; keeping {} server(s)", b.backends().len())),
        }
    }
}

/// Put the provider's servers and timings in force.
pub fn apply(b: &Balancer, tuning: &Tuning, p: &Provider) {
    let settings = tuning.settings(p);
    let now = Instant::now();
    let removed: Vec<Arc<Backend>> = {
        let mut list = write(&b.list);
        let old = std::mem::take(&mut *list);
        for addr in &p.servers {
            let kept = old.iter().find(|o| o.addr == *addr).cloned();
            list.push(kept.unwrap_or_else(|| {
                Arc::new(Backend::new(*addr, now, sweep_jitter(settings.check_interval, rand_u64())))
            }));
        }
        old.into_iter().filter(|o| !p.servers.contains(&o.addr)).collect()
    };
    *write(&b.settings) = settings;
    let names = |l: &[std::net::SocketAddr]| l.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ");
    log(format_args!("reloaded: {} server(s): {}", p.servers.len(), names(&p.servers)));
    for r in removed {
        let n = r.close_all();
        log(format_args!("{} removed: closed {n} connection(s)", r.addr));
    }
}
