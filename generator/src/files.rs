//! What a node receives: files, with their modes, at paths of ours.

/// Where the user-data stages files on the node.
pub const STAGE_DIR: &str = "/etc/mk8s-worker";
pub const TRAEFIK_DIR: &str = "/etc/mk8s-worker/traefik";
pub const UNIT_DIR: &str = "/etc/systemd/system";
pub const BOOTSTRAP_UNIT: &str = "mk8s-bootstrap.service";
/// `mk8s-bootstrap maintain --repair`, oneshot, by its timer and the refresh hook.
pub const MAINTAIN_UNIT: &str = "mk8s-maintain.service";
pub const MAINTAIN_TIMER: &str = "mk8s-maintain.timer";
/// Our MicroK8s 1.25+ post-refresh hook: it only starts the maintain unit, without
/// waiting (the hook runs inside snapd's refresh, with a 120 s timeout whose expiry
/// skips the hooks after ours: canonical/microk8s 1.25+ scripts/run-lifecycle-hooks.py).
pub const REFRESH_HOOK: &str = "#!/bin/sh\nexec systemctl start --no-block mk8s-maintain.service\n";
pub const TRAEFIK_UNIT: &str = "mk8s-traefik.service";
pub const HAPROXY_UNIT: &str = "mk8s-haproxy.service";

pub const FETCH_SCRIPT: &str = "/usr/local/lib/mk8s-worker/fetch-bootstrap";
/// Read by the install hook of MicroK8s 1.27+ before its bundled default.
pub const LAUNCH_CONFIG: &str = "/etc/microk8s.yaml";

/// One file for the node, as cloud-init `write_files` (or Ignition) will write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFile {
    pub path: String,
    pub content: FileContent,
    pub mode: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileContent {
    Text(String),
    /// Shared by every node of a fleet: cloned by reference.
    GzipBase64(std::sync::Arc<String>),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `mk8s-bootstrap leave` finds what the user-data wrote by these names even
    /// when the plan is gone: they must be the ones written here.
    #[test]
    fn leave_knows_every_unit_and_directory_we_write() {
        use mk8s_bootstrap::leave::{files, units};
        assert_eq!(units::BOOTSTRAP_UNIT, BOOTSTRAP_UNIT);
        assert_eq!(units::UNIT_DIR, UNIT_DIR);
        for unit in [crate::balancer::builtin::BALANCE_UNIT, TRAEFIK_UNIT, HAPROXY_UNIT] {
            assert!(units::BALANCER_UNITS.contains(&unit), "{unit}");
        }
        assert_eq!(files::STAGE_DIR, STAGE_DIR);
        assert!(
            TRAEFIK_DIR.starts_with(files::STAGE_DIR) && crate::balancer::builtin::BALANCE_DIR.starts_with(STAGE_DIR)
        );
        assert_eq!(files::LAUNCH_CONFIG, LAUNCH_CONFIG);
        assert_eq!(Some(files::FETCH_DIR), FETCH_SCRIPT.rsplit_once('/').map(|(d, _)| d));
    }
}
