//! Upgrades on request: the operator's `mk8s-ctl upgrade` cordons and drains a
//! worker, then writes [`a::DESIRED_CHANNEL`] on its Node; the node's next
//! `maintain` run reads it from the answer to its own report and, when it is
//! not the channel MicroK8s tracks, refreshes MicroK8s to it through snapd, once
//! the Kubernetes version skew policy allows it
//! (<https://kubernetes.io/releases/version-skew-policy/#kubelet>):
//!
//! - one minor at a time, never down (MicroK8s's own upgrade guide);
//! - the kubelet never newer than any kube-apiserver, and at most three minors
//!   older than every one.
//!
//! Every control plane's `/version` is asked directly at its endpoint (the plan's
//! `apiserver.endpoints`), not through the balancer, which would answer for one
//! apiserver only: during a rolling control-plane upgrade the others can be older
//! (kubernetes/kubernetes#127316). A control plane that does not answer refuses
//! the upgrade for this run: the skew cannot be known.
//!
//! A refresh through snapd runs MicroK8s's hooks (the configure hook sanitises
//! `args/`, 1.25+ restarts apiserver-proxy): the run that refreshed repairs
//! whatever that undid before it reports.

use std::io::Write;

use crate::annotations as a;
use crate::api::Api;
use crate::node::Node;
use crate::plan::JoinPlan;
use crate::retry::Failure;

/// What a run did about the desired channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upgrade {
    /// Nothing asked, or already there.
    Nothing,
    Done {
        from: String,
        to: String,
    },
    /// Not allowed (or not checkable) now; nothing changed.
    Refused(String),
    /// snapd did not refresh.
    Failed(String),
}

impl Upgrade {
    /// The [`a::UPGRADE`] value.
    pub fn describe(&self) -> Option<String> {
        match self {
            Upgrade::Nothing => None,
            Upgrade::Done { from, to } => Some(format!("done: {from} -> {to}")),
            Upgrade::Refused(why) => Some(format!("refused: {why}")),
            Upgrade::Failed(why) => Some(format!("failed: {why}")),
        }
    }
}

/// `(major, minor)` of a channel (`1.30/stable`, `1.30`) or a version (`v1.34.4`,
/// `1.34.4+k3s1`).
pub fn minor_of(text: &str) -> Option<(u32, u32)> {
    let t = text.strip_prefix('v').unwrap_or(text);
    let track = t.split('/').next()?;
    let mut parts = track.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor: String = parts.next()?.chars().take_while(char::is_ascii_digit).collect();
    Some((major, minor.parse().ok()?))
}

/// A channel we refresh to: `1.N/RISK` with a risk snapd knows. The value comes
/// from the cluster (an annotation anyone who may patch Nodes can write): nothing
/// else reaches `snap`.
pub fn valid_channel(channel: &str) -> bool {
    let Some((track, risk)) = channel.split_once('/') else { return false };
    let track_ok = track
        .strip_prefix("1.")
        .is_some_and(|m| !m.is_empty() && m.len() <= 3 && m.bytes().all(|b| b.is_ascii_digit()));
    track_ok && matches!(risk, "stable" | "candidate" | "beta" | "edge")
}

/// The skew policy for a kubelet at `installed` going to `target` under control
/// planes at `apiservers` (`(endpoint, gitVersion)`): Ok, or why not.
pub fn skew(installed: &str, target: &str, apiservers: &[(String, String)]) -> Result<(), String> {
    let (Some(from), Some(to)) = (minor_of(installed), minor_of(target)) else {
        return Err(format!("cannot compare {installed} with {target}"));
    };
    if to.0 != from.0 || to.1 < from.1 {
        return Err(format!("{target} is older than {installed}: MicroK8s is never refreshed down"));
    }
    if to.1 > from.1 + 1 {
        return Err(format!("{installed} -> {target} skips a minor: one minor at a time"));
    }
    for (endpoint, version) in apiservers {
        let Some(api) = minor_of(version) else {
            return Err(format!("kube-apiserver at {endpoint} reports {version:?}, not a version"));
        };
        if api.0 != to.0 || to.1 > api.1 {
            return Err(format!(
                "the kubelet of {target} would be newer than kube-apiserver {version} at {endpoint} \
                 (upgrade the control plane first)"
            ));
        }
        if api.1 > to.1 + 3 {
            return Err(format!("the kubelet of {target} would be more than three minors older than kube-apiserver {version} at {endpoint}"));
        }
    }
    Ok(())
}

/// The channel MicroK8s tracks here, from `snap list microk8s`.
pub fn installed_channel(node: &Node) -> Option<String> {
    let r = node.snap(&["list", "microk8s"]).ok().filter(|r| r.ok)?;
    crate::phases::snap::tracking_of(&r.output)
}

/// Every control plane's `gitVersion`, asked at its own endpoint with `cred`'s
/// API (built by `api_for(url)`); the first that cannot be read stops it.
fn apiserver_versions(
    plan: &JoinPlan,
    api_for: &dyn Fn(&str) -> Result<Api, Failure>,
) -> Result<Vec<(String, String)>, String> {
    if plan.apiserver.endpoints.is_empty() {
        return Err("the plan lists no control-plane endpoint".into());
    }
    plan.apiserver
        .endpoints
        .iter()
        .map(|endpoint| {
            let version = api_for(&format!("https://{endpoint}"))
                .and_then(|api| api.version())
                .map_err(|e| format!("kube-apiserver at {endpoint} did not tell its version: {e}"))?;
            Ok((endpoint.clone(), version))
        })
        .collect()
}

/// Follow `desired` (the Node's [`a::DESIRED_CHANNEL`], if any) from `installed`
/// (the channel MicroK8s tracks, as this run's verdict read it).
pub fn follow(
    node: &Node,
    plan: &JoinPlan,
    desired: Option<&str>,
    installed: Option<&str>,
    api_for: &dyn Fn(&str) -> Result<Api, Failure>,
    out: &mut dyn Write,
) -> Upgrade {
    let Some(target) = desired.map(str::trim).filter(|d| !d.is_empty()) else { return Upgrade::Nothing };
    if !valid_channel(target) {
        return Upgrade::Refused(format!("{target:?} is not a channel such as 1.30/stable"));
    }
    let Some(installed) = installed.map(str::to_string) else {
        return Upgrade::Refused("cannot tell which channel MicroK8s tracks (snap list microk8s)".into());
    };
    if installed == target {
        return Upgrade::Nothing;
    }
    let versions = match apiserver_versions(plan, api_for) {
        Ok(v) => v,
        Err(why) => return Upgrade::Refused(why),
    };
    if let Err(why) = skew(&installed, target, &versions) {
        return Upgrade::Refused(why);
    }
    let listed: Vec<String> = versions.iter().map(|(e, v)| format!("{v} at {e}")).collect();
    let _ = writeln!(
        out,
        "mk8s-bootstrap[maintain]: upgrade {installed} -> {target} (kube-apiserver {})",
        listed.join(", ")
    );
    let channel = format!("--channel={target}");
    match node.snap(&["refresh", "microk8s", &channel]) {
        Ok(r) if r.ok => {}
        Ok(r) => return Upgrade::Failed(format!("snap refresh microk8s {channel}: {}", r.output.trim())),
        Err(e) => return Upgrade::Failed(format!("snap refresh microk8s {channel}: {e}")),
    }
    match installed_channel(node) {
        Some(now) if now == target => Upgrade::Done { from: installed, to: now },
        now => Upgrade::Failed(format!("after the refresh MicroK8s tracks {}", now.as_deref().unwrap_or("?"))),
    }
}

/// The desired channel in a Node object, if any.
pub fn desired_of(node_object: &serde_json::Value) -> Option<String> {
    node_object["metadata"]["annotations"][a::DESIRED_CHANNEL].as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cps(versions: &[&str]) -> Vec<(String, String)> {
        versions.iter().enumerate().map(|(i, v)| (format!("10.0.0.{i}:16443"), v.to_string())).collect()
    }

    #[test]
    fn versions_and_channels_parse() {
        assert_eq!(minor_of("1.30/stable"), Some((1, 30)));
        assert_eq!(minor_of("v1.34.4"), Some((1, 34)));
        assert_eq!(minor_of("v1.31.2+k3s1"), Some((1, 31)));
        assert_eq!(minor_of("1.30"), Some((1, 30)));
        assert_eq!(minor_of("latest/edge"), None);
        assert!(valid_channel("1.30/stable") && valid_channel("1.31/candidate"));
        for bad in
            ["1.30", "latest/stable", "1.30/stable; rm -rf /", "2.0/stable", "1./stable", "1.30/nightly", "--classic"]
        {
            assert!(!valid_channel(bad), "{bad}");
        }
    }

    #[test]
    fn the_skew_policy() {
        assert_eq!(skew("1.29/stable", "1.30/stable", &cps(&["v1.30.1", "v1.30.1", "v1.31.0"])), Ok(()));
        // Newer than one apiserver: refused, naming it.
        let e = skew("1.29/stable", "1.30/stable", &cps(&["v1.30.1", "v1.29.9", "v1.30.1"])).unwrap_err();
        assert!(e.contains("newer than kube-apiserver v1.29.9 at 10.0.0.1:16443"), "{e}");
        assert!(skew("1.28/stable", "1.30/stable", &cps(&["v1.30.0"])).unwrap_err().contains("one minor at a time"));
        assert!(skew("1.30/stable", "1.29/stable", &cps(&["v1.30.0"])).unwrap_err().contains("never refreshed down"));
        assert!(skew("1.25/stable", "1.26/stable", &cps(&["v1.30.0"])).unwrap_err().contains("three minors older"));
        assert_eq!(skew("1.26/stable", "1.27/stable", &cps(&["v1.30.0"])), Ok(()));
        assert!(skew("1.29/stable", "1.30/stable", &cps(&["garbage"])).is_err());
        // Risk changes within a track are allowed (same minor).
        assert_eq!(skew("1.30/stable", "1.30/candidate", &cps(&["v1.30.0"])), Ok(()));
    }
}
