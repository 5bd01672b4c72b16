//! Part of the `join` phase. The join restarted kubelite with the control plane's
//! kubelet arguments, so its kubelet may have registered the Node already, without
//! our labels and taints; a kubelet sets `--node-labels` and
//! `--register-with-taints` only when it creates its Node (kubernetes
//! pkg/kubelet/kubelet_node_status.go, `registerWithAPIServer`: an existing Node is
//! only reconciled). So the kubelet is stopped (MicroK8s's proxy kept running, the
//! Node is read through it), and what such a Node lacks is patched in with the
//! kubelet's own credential; a Node not registered yet is registered with them by
//! the kubelet started next.

use serde_json::{json, Map, Value};

use super::cx::{fatal, PhaseCx, StepError, StepResult};
use super::kubeconfig::joined_kubelet;
use crate::phases::retry::retry;
use crate::plan::JoinPlan;

/// `phase` names the phase in the log.
pub fn run(cx: &mut dyn PhaseCx, phase: &str, plan: &JoinPlan) -> StepResult {
    let node = cx.node().clone();
    for unit in &plan.microk8s.start_services {
        // A join killed while it restarted the proxy left it stopped.
        let kubelet = unit.contains("kubelite") || unit.contains("kubelet");
        let verbs: &[&str] = if kubelet { &["stop"] } else { &["enable", "start"] };
        for verb in verbs {
            let r = node.systemctl(&[verb, unit])?;
            if !r.ok {
                return Err(StepError::Retryable(format!("systemctl {verb} {unit}: {}", r.output)));
            }
        }
    }
    let (url, cred) = joined_kubelet(&node).map_err(StepError::Retryable)?;
    let api = cx.apiserver(plan, &url, &cred, "kubelet").map_err(fatal)?;
    reapply(cx, phase, plan, api.as_ref(), "kubelite restarted by the join")
}

/// Patch into the Node what it lacks of our labels and taints, with the kubelet's
/// credential; nothing when the Node is absent (the kubelet registers it with
/// them) or has them. `why` says in the log how it came to lack them.
pub(super) fn reapply(
    cx: &mut dyn PhaseCx,
    phase: &str,
    plan: &JoinPlan,
    api: &dyn crate::api::NodeApi,
    why: &str,
) -> StepResult {
    let existing = retry(cx, phase, plan, |_| api.node_object())?;
    let Some(obj) = existing else { return Ok(()) };
    patch_missing(cx, phase, plan, api, &obj, why)
}

/// As [`reapply`], on the Node `obj` already read.
pub(super) fn patch_missing(
    cx: &mut dyn PhaseCx,
    phase: &str,
    plan: &JoinPlan,
    api: &dyn crate::api::NodeApi,
    obj: &Value,
    why: &str,
) -> StepResult {
    let Some(missing) = Missing::of(obj, &plan.kubelet_args) else { return Ok(()) };
    let patch = missing.patch();
    retry(cx, phase, plan, |_| api.patch_node(&patch))?;
    cx.log(
        phase,
        &format!(
            "the Node had registered without our labels or taints ({why}): added {} label(s) and {} taint(s)",
            missing.labels.len(),
            missing.added_taints
        ),
    );
    Ok(())
}

/// What a registered Node lacks of the kubelet's registration arguments.
#[derive(Debug, PartialEq)]
struct Missing {
    labels: Map<String, Value>,
    /// The Node's taints with ours added (a merge patch replaces the list).
    taints: Vec<Value>,
    added_taints: usize,
}

impl Missing {
    /// None when the Node `obj` already has every label and taint of `args`.
    fn of(obj: &Value, args: &[String]) -> Option<Missing> {
        let (labels, taints) = registration_args(args);
        let mut add_labels = Map::new();
        for (k, v) in &labels {
            if obj.pointer("/metadata/labels").and_then(|l| l.get(k)) != Some(&v.as_str().into()) {
                add_labels.insert(k.clone(), v.as_str().into());
            }
        }
        let mut all_taints = obj.pointer("/spec/taints").and_then(|t| t.as_array()).cloned().unwrap_or_default();
        let before = all_taints.len();
        for (k, v, e) in &taints {
            if !all_taints.iter().any(|t| t["key"] == k.as_str() && t["effect"] == e.as_str()) {
                let mut t = json!({"key": k, "effect": e});
                if !v.is_empty() {
                    t["value"] = v.as_str().into();
                }
                all_taints.push(t);
            }
        }
        let added_taints = all_taints.len() - before;
        if add_labels.is_empty() && added_taints == 0 {
            return None;
        }
        Some(Missing { labels: add_labels, taints: all_taints, added_taints })
    }

    /// A JSON merge patch of the Node.
    fn patch(&self) -> Value {
        json!({"metadata": {"labels": self.labels}, "spec": {"taints": self.taints}})
    }
}

/// Labels as (key, value).
type Labels = Vec<(String, String)>;
/// Taints as (key, value, effect).
type Taints = Vec<(String, String, String)>;

/// The labels and taints a kubelet registers with, from `--node-labels=` and
/// `--register-with-taints=` (`key[=value]:effect`) lines.
fn registration_args(args: &[String]) -> (Labels, Taints) {
    let (mut labels, mut taints) = (Vec::new(), Vec::new());
    for a in args {
        if let Some(v) = a.strip_prefix("--node-labels=") {
            for kv in v.trim_matches('"').split(',').filter(|s| !s.is_empty()) {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                labels.push((k.to_string(), v.to_string()));
            }
        } else if let Some(v) = a.strip_prefix("--register-with-taints=") {
            for t in v.trim_matches('"').split(',').filter(|s| !s.is_empty()) {
                let (kv, effect) = t.rsplit_once(':').unwrap_or((t, ""));
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                taints.push((k.to_string(), v.to_string(), effect.to_string()));
            }
        }
    }
    (labels, taints)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::phases::fake::{self, FakeCx};
    use crate::phases::kubeconfig::KUBELET;
    use crate::plan::Credential;
    use crate::retry::Failure;

    const KUBELITE: &str = "snap.microk8s.daemon-kubelite";
    const PROXY: &str = "snap.microk8s.daemon-apiserver-proxy";

    /// A join plan's registration arguments, and the kubeconfig the join wrote.
    fn setup() -> (FakeCx, JoinPlan) {
        let cx = FakeCx::new(Duration::from_secs(5));
        cx.snap_file(
            KUBELET,
            "clusters:\n- cluster:\n    server: https://127.0.0.1:16443\nusers:\n- name: kubelet\n  user:\n    client-certificate-data: Q0VSVA==\n    client-key-data: S0VZ\n",
        );
        let mut plan = fake::plan();
        plan.kubelet_args = vec![
            "--node-labels=\"team=a,tier=web\"".into(),
            "--register-with-taints=dedicated=gpu:NoSchedule,spot:NoExecute".into(),
        ];
        (cx, plan)
    }

    #[test]
    fn a_node_registered_without_our_labels_and_taints_gets_only_what_it_lacks() {
        let (mut cx, plan) = setup();
        let gpu = json!({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"});
        cx.api.borrow_mut().object = Some(json!({
            "metadata": {"labels": {"team": "a", "tier": "db"}},
            "spec": {"taints": [gpu]},
        }));
        assert_eq!(run(&mut cx, "join", &plan), Ok(()));
        // The kubelet stopped before the Node is read; the proxy it is read through runs.
        assert_eq!(
            cx.systemctl_calls(),
            [format!("stop {KUBELITE}"), format!("enable {PROXY}"), format!("start {PROXY}")]
        );
        let api = cx.api.borrow();
        let cert = Credential::ClientCertificate { cert_pem: "CERT".into(), key_pem: "KEY".into() };
        assert_eq!(api.clients, [("kubelet", cert)], "the join's credential, not the plan's token");
        let spot = json!({"key": "spot", "effect": "NoExecute"});
        assert_eq!(
            api.patches,
            [json!({"metadata": {"labels": {"tier": "web"}}, "spec": {"taints": [gpu, spot]}})],
            "a wrong value is replaced, a taint is matched by key and effect, the list is kept whole"
        );
        assert!(cx.lines.last().unwrap().ends_with("added 1 label(s) and 1 taint(s)"), "{:?}", cx.lines);
    }

    #[test]
    fn a_node_not_registered_or_already_complete_is_left_alone() {
        let (mut cx, plan) = setup();
        assert_eq!(run(&mut cx, "join", &plan), Ok(()));
        let complete = json!({
            "metadata": {"labels": {"team": "a", "tier": "web", "other": "x"}},
            "spec": {"taints": [
                {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
                {"key": "spot", "effect": "NoExecute"},
            ]},
        });
        cx.api.borrow_mut().object = Some(complete);
        assert_eq!(run(&mut cx, "join", &plan), Ok(()));
        assert!(cx.api.borrow().patches.is_empty());
        assert!(cx.lines.is_empty(), "{:?}", cx.lines);
    }

    #[test]
    fn a_refused_patch_is_fatal_and_a_failed_stop_or_missing_kubeconfig_retryable() {
        let (mut cx, plan) = setup();
        cx.api.borrow_mut().object = Some(json!({"metadata": {}}));
        let refused = "the apiserver refused to let the kubelet credential patch node w1 (403)";
        cx.api.borrow_mut().patch_answer = Some(Failure::Fatal(refused.into()));
        assert_eq!(run(&mut cx, "join", &plan), Err(StepError::Fatal(refused.into())));
        // The phase counts its attempts: one read of the Node, one patch.
        assert_eq!((cx.attempts, cx.failures.as_slice()), (2, [refused.to_string()].as_slice()));
        assert!(cx.lines.last().unwrap().contains("attempt 1 failed, not retrying"));

        cx.fail_systemctl(&format!("stop {KUBELITE}"));
        let Err(StepError::Retryable(m)) = run(&mut cx, "join", &plan) else { panic!("a failed stop is retryable") };
        assert!(m.starts_with(&format!("systemctl stop {KUBELITE}: Failed to stop")), "{m}");

        let (mut cx, plan) = setup();
        std::fs::remove_file(cx.node.snap_data(KUBELET)).unwrap();
        let Err(StepError::Retryable(m)) = run(&mut cx, "join", &plan) else { panic!("not written yet") };
        assert!(m.starts_with("cannot read credentials/kubelet.config"), "{m}");
        assert!(cx.api.borrow().clients.is_empty());
    }
}
