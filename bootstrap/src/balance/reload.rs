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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn balancer(servers: &[&str]) -> Balancer {
        let ca = mk8s_testkit::pki::Ca::new("reload-ca");
        let tls = crate::balance::probe::client_config(&ca.cert_pem).unwrap();
        let p = provider(servers);
        Balancer::new(tls, Tuning::default().settings(&p), &p.servers)
    }

    fn provider(servers: &[&str]) -> Provider {
        let servers = servers.iter().map(|s| s.parse().unwrap()).collect();
        Provider { servers, check_interval: None, check_timeout: None, dial_timeout: Some(Duration::from_millis(300)) }
    }

    #[test]
    fn kept_backends_keep_their_state_and_new_ones_join_in_rotation() {
        let b = balancer(&["10.0.0.1:1", "10.0.0.2:1"]);
        let old = b.backends();
        old[1].bench("dial: refused", Instant::now(), 0, Duration::from_secs(1), Duration::from_secs(2));
        apply(&b, &Tuning::default(), &provider(&["10.0.0.2:1", "10.0.0.3:1"]));
        let new = b.backends();
        assert_eq!(new.iter().map(|x| x.addr.to_string()).collect::<Vec<_>>(), ["10.0.0.2:1", "10.0.0.3:1"]);
        assert!(Arc::ptr_eq(&new[0], &old[1]) && !new[0].is_up(), "the same backend, still benched");
        assert!(new[1].is_up());
        assert_eq!(b.settings().dial_timeout, Duration::from_millis(300), "the file's timings in force");
    }

    #[test]
    fn a_changed_file_has_a_new_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("provider.yaml");
        assert_eq!(stamp(&path), None);
        std::fs::write(&path, "{}").unwrap();
        let first = stamp(&path);
        assert!(first.is_some());
        let tmp = dir.path().join("tmp");
        std::fs::write(&tmp, "{}").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert_ne!(stamp(&path), first, "same size, maybe same mtime, another inode");
    }
}
