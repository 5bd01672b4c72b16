//! Our systemd units: stopped, disabled, then their files removed (in that order,
//! so a run killed half-way leaves no enabled unit without its file).

use super::Leave;
use crate::node::CommandOutput;
use crate::plan::LoadBalancerSpec;

/// Where the user-data writes our units.
pub const UNIT_DIR: &str = "/etc/systemd/system";
/// The join's own unit.
pub const BOOTSTRAP_UNIT: &str = "mk8s-bootstrap.service";
/// Every balancer unit `mk8s-gen` writes (`kind: builtin`, `traefik`, `haproxy`),
/// looked for when the plan is gone.
pub const BALANCER_UNITS: &[&str] = &["mk8s-balance.service", "mk8s-traefik.service", "mk8s-haproxy.service"];

/// The day-2 agent's units (`mk8s-bootstrap maintain`): the timer first, so it
/// starts no run while the service is stopped.
pub const MAINTAIN_UNITS: &[&str] = &["mk8s-maintain.timer", "mk8s-maintain.service"];

/// Our units this node may have: the maintain timer and service, then the join's,
/// so neither can start anything again, then the plan's balancer unit (every one
/// we write, without a plan).
pub fn ours(lb: Option<&LoadBalancerSpec>) -> Vec<String> {
    let mut units: Vec<String> = MAINTAIN_UNITS.iter().map(|u| u.to_string()).collect();
    units.push(BOOTSTRAP_UNIT.to_string());
    match lb {
        Some(lb) => {
            // MicroK8s's apiserver-proxy is the snap's unit: the snap step stops it.
            if let Some((unit, _)) = lb.local().filter(|_| !matches!(lb, LoadBalancerSpec::Microk8sProxy { .. })) {
                units.push(unit.to_string());
            }
        }
        None => units.extend(BALANCER_UNITS.iter().map(|u| u.to_string())),
    }
    units
}

pub fn run(cx: &mut Leave) {
    let units = ours(cx.plan.as_ref().map(|p| &p.load_balancer));
    let mut removed = false;
    for unit in units {
        let file = cx.node.path(&format!("{UNIT_DIR}/{unit}"));
        if !file.exists() {
            continue;
        }
        let mut ok = true;
        for verb in ["stop", "disable"] {
            if let Err(e) = systemctl(cx, &[verb, &unit]) {
                cx.fail(e);
                ok = false;
            }
        }
        if !ok {
            // Never remove the file of a unit that may still be enabled.
            continue;
        }
        match std::fs::remove_file(&file) {
            Ok(()) => {
                removed = true;
                cx.did(format!("stopped, disabled and removed {unit}"));
            }
            Err(e) => cx.fail(format!("cannot remove {}: {e}", file.display())),
        }
    }
    if removed {
        if let Err(e) = systemctl(cx, &["daemon-reload"]) {
            cx.fail(e);
        }
    }
}

/// `systemctl ARGS`; a unit systemd does not know (exit 5, "not loaded") is
/// already as stopped and disabled as it gets.
fn systemctl(cx: &Leave, args: &[&str]) -> Result<(), String> {
    match cx.node.systemctl(args) {
        Ok(CommandOutput { ok: true, .. }) => Ok(()),
        Ok(r) if r.code == Some(5) || r.output.contains("not loaded") || r.output.contains("does not exist") => Ok(()),
        Ok(r) => Err(format!("systemctl {}: {}", args.join(" "), r.output)),
        Err(e) => Err(format!("systemctl {}: {e}", args.join(" "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_join_goes_first_and_the_snaps_own_proxy_is_not_ours() {
        let unit = "mk8s-balance.service".to_string();
        let builtin = LoadBalancerSpec::Builtin { unit: unit.clone(), listen: "127.0.0.1:16443".into() };
        let first = [MAINTAIN_UNITS[0], MAINTAIN_UNITS[1], BOOTSTRAP_UNIT];
        assert_eq!(ours(Some(&builtin))[..3], first);
        assert_eq!(ours(Some(&builtin))[3..], ["mk8s-balance.service"]);
        let proxy = LoadBalancerSpec::Microk8sProxy {
            unit: "snap.microk8s.daemon-apiserver-proxy.service".into(),
            listen: "127.0.0.1:16443".into(),
        };
        assert_eq!(ours(Some(&proxy)), first);
        assert_eq!(ours(Some(&LoadBalancerSpec::External)), first);
        let all = ours(None);
        assert_eq!(all[..3], first);
        assert_eq!(&all[3..], BALANCER_UNITS);
    }
}
