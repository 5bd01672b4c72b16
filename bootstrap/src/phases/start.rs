//! The `start` phase: start the worker's services and wait until the Node is
//! Ready, with a heartbeat from the kubelet this run started.

use super::cx::{fatal, PhaseCx, StepError, StepResult};
use super::kubeconfig::joined_kubelet;
use crate::api::NodeState;
use crate::clock::{rfc3339, unix_now};
use crate::phases::retry::retry;
use crate::plan::JoinPlan;
use crate::retry::Failure;

pub const NAME: &str = "start";

pub fn run(cx: &mut dyn PhaseCx, plan: &JoinPlan) -> StepResult {
    let node = cx.node().clone();
    // Evidence from this run: a heartbeat no older than the kubelet we start here.
    // A Node left Ready by a replaced machine of the same name is not.
    let since = unix_now();
    // Joined: the server and credential the join wrote (x509: data embedded on
    // 1.28+, file paths before).
    let (url, cred) = match plan.join {
        Some(_) => joined_kubelet(&node).map_err(StepError::Retryable)?,
        None => (plan.apiserver.url.clone(), plan.credentials.kubelet.clone()),
    };
    let api = cx.apiserver(plan, &url, &cred, "kubelet").map_err(fatal)?;
    // A Node of this name that a later machine holds: this one was replaced.
    super::stale::before_start(cx, NAME, plan, api.as_ref())?;
    for unit in &plan.microk8s.start_services {
        for verb in ["enable", "restart"] {
            let r = node.systemctl(&[verb, unit])?;
            if !r.ok {
                return Err(StepError::Retryable(format!("systemctl {verb} {unit}: {}", r.output)));
            }
        }
    }
    cx.log(NAME, &format!("started {}", plan.microk8s.start_services.join(", ")));
    retry(cx, NAME, plan, |_| match api.node()? {
        NodeState::Ready(Some(beat)) if beat >= since => Ok(()),
        NodeState::Ready(Some(beat)) => Err(Failure::Retry(format!(
            "the Node is Ready, but its last heartbeat ({}) is older than the kubelet this run started ({}): \
             waiting for this kubelet's own (a machine of the same name that was replaced?)",
            rfc3339(beat),
            rfc3339(since)
        ))),
        NodeState::Ready(None) => {
            Err(Failure::Retry("the Node is Ready but shows no heartbeat time; waiting for this kubelet's".into()))
        }
        NodeState::Absent => Err(Failure::Retry("the node has not registered yet".into())),
        NodeState::NotReady(why) => Err(Failure::Retry(format!("the node is registered but not Ready: {why}"))),
    })?;
    cx.log(NAME, &format!("node {} is Ready, with a heartbeat from the kubelet this run started", plan.node.name));
    // A kubelet sets its labels and taints only when it creates the Node: a Node
    // left by a replaced machine of the same name keeps the old ones, in every
    // auth mode. The Node is Ready: an apiserver that refuses the patch
    // (NodeRestriction) leaves it as it was, with a warning, and the join stands.
    let why = "a Node of this name existed before this machine";
    let Some(obj) = retry(cx, NAME, plan, |_| api.node_object())? else { return Ok(()) };
    let patched = super::registration::patch_missing(cx, NAME, plan, api.as_ref(), &obj, why)
        .and_then(|()| super::stale::take_over(cx, NAME, plan, api.as_ref(), &obj));
    match patched {
        Err(StepError::Fatal(m)) => {
            cx.log(NAME, &format!("warning: {m}: the Node keeps the labels and taints it had"));
            Ok(())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::phases::fake::{self, FakeCx};
    use crate::phases::kubeconfig::KUBELET;
    use crate::plan::{Credential, JoinSpec};

    #[test]
    fn a_ready_node_counts_only_with_a_heartbeat_from_this_run() {
        let mut cx = FakeCx::new(Duration::from_secs(5));
        let plan = fake::plan();
        cx.api.borrow_mut().states = [
            Ok(NodeState::Ready(Some(1))),
            Ok(NodeState::NotReady("Ready=False (KubeletNotReady)".into())),
            Ok(NodeState::Ready(Some(unix_now() + 3600))),
        ]
        .into();
        assert_eq!(run(&mut cx, &plan), Ok(()));
        let units = &plan.microk8s.start_services;
        let want: Vec<String> = units.iter().flat_map(|u| [format!("enable {u}"), format!("restart {u}")]).collect();
        assert_eq!(cx.systemctl_calls(), want);
        assert_eq!(cx.api.borrow().clients, [("kubelet", plan.credentials.kubelet.clone())]);
        // One read of the object before the kubelet starts, three of the Node's
        // state, then one of the object (no Node object: nothing to patch).
        assert_eq!(cx.attempts, 5);
        assert!(cx.api.borrow().patches.is_empty());
        assert!(cx.failures[0].starts_with("the Node is Ready, but its last heartbeat (1970-01-01T00:00:01Z)"));
        assert_eq!(cx.failures[1], "the node is registered but not Ready: Ready=False (KubeletNotReady)");
        assert!(cx.lines.last().unwrap().starts_with("mk8s-bootstrap[start]: node w1 is Ready"));
    }

    /// A Node a replaced machine of the same name left keeps its old labels (the
    /// kubelet labels only a Node it creates): ours are patched in, theirs kept.
    #[test]
    fn an_old_node_of_the_same_name_gets_our_labels_and_taints() {
        let mut cx = FakeCx::new(Duration::from_secs(5));
        let mut plan = fake::plan();
        plan.kubelet_args =
            vec!["--node-labels=tier=gpu,zone=a".into(), "--register-with-taints=gpu=true:NoSchedule".into()];
        cx.api.borrow_mut().states = [Ok(NodeState::Ready(Some(unix_now() + 3600)))].into();
        cx.api.borrow_mut().object = Some(serde_json::json!({"metadata": {"labels": {"zone": "a", "old": "x"}}}));
        assert_eq!(run(&mut cx, &plan), Ok(()));
        let patches = cx.api.borrow().patches.clone();
        assert_eq!(
            patches,
            [serde_json::json!({"metadata": {"labels": {"tier": "gpu"}}, "spec": {"taints": [
                {"key": "gpu", "value": "true", "effect": "NoSchedule"}
            ]}})]
        );
        assert!(cx.lines.last().unwrap().contains("a Node of this name existed before this machine"));
        // A refused patch (NodeRestriction) is a warning: the node is Ready.
        cx.api.borrow_mut().patch_answer = Some(Failure::Fatal("refused (403)".into()));
        assert_eq!(run(&mut cx, &plan), Ok(()));
        assert!(cx.lines.last().unwrap().contains("warning: refused (403): the Node keeps"), "{:?}", cx.lines);
        cx.api.borrow_mut().patch_answer = None;
        let patches = cx.api.borrow().patches.len();
        // Run again on a Node that has them: no patch.
        cx.api.borrow_mut().object = Some(serde_json::json!({
            "metadata": {"labels": {"tier": "gpu", "zone": "a"}},
            "spec": {"taints": [{"key": "gpu", "value": "true", "effect": "NoSchedule"}]}
        }));
        assert_eq!(run(&mut cx, &plan), Ok(()));
        assert_eq!(cx.api.borrow().patches.len(), patches);
    }

    /// A replacement (epoch 2) finds the Node of the machine it replaces (no
    /// epoch annotation: epoch 1): it goes on, puts our labels back and records
    /// its epoch; the replaced machine, booting again, refuses before its
    /// kubelet starts.
    #[test]
    fn a_replacement_takes_over_an_earlier_machines_node_and_the_replaced_one_refuses() {
        let mut cx = FakeCx::new(Duration::from_secs(5));
        let mut plan = fake::plan();
        plan.node.epoch = 2;
        plan.kubelet_args = vec!["--node-labels=tier=gpu".into()];
        cx.api.borrow_mut().states = [Ok(NodeState::Ready(Some(unix_now() + 3600)))].into();
        cx.api.borrow_mut().object = Some(serde_json::json!({"metadata": {"labels": {"old": "x"},
            "annotations": {"mk8s-worker.io/plan-sha256": "0".repeat(64)}}}));
        assert_eq!(run(&mut cx, &plan), Ok(()));
        assert_eq!(
            cx.api.borrow().patches,
            [
                serde_json::json!({"metadata": {"labels": {"tier": "gpu"}}, "spec": {"taints": []}}),
                serde_json::json!({"metadata": {"annotations": {"mk8s-worker.io/epoch": "2"}}}),
            ]
        );
        assert!(cx.lines.iter().any(|l| l.contains("left by an earlier machine (epoch 1)")), "{:?}", cx.lines);
        // The Node now says epoch 2: a rerun patches nothing.
        cx.api.borrow_mut().object = Some(serde_json::json!({"metadata": {"labels": {"tier": "gpu"},
            "annotations": {"mk8s-worker.io/epoch": "2"}}}));
        assert_eq!(run(&mut cx, &plan), Ok(()));
        assert_eq!(cx.api.borrow().patches.len(), 2);
        // The replaced machine (epoch 1) boots again: refused, nothing started.
        let calls = cx.systemctl_calls().len();
        plan.node.epoch = 1;
        let Err(StepError::Fatal(m)) = run(&mut cx, &plan) else { panic!("a replaced machine must not start") };
        assert!(m.starts_with("node w1 is held by a later machine (epoch 2"), "{m}");
        assert_eq!(cx.systemctl_calls().len(), calls, "no unit started");
        assert_eq!(cx.api.borrow().patches.len(), 2);
        // An annotation that is not a number is replaced by this machine's epoch.
        plan.node.epoch = 3;
        cx.api.borrow_mut().object = Some(
            serde_json::json!({"metadata": {"labels": {"tier": "gpu"}, "annotations": {"mk8s-worker.io/epoch": "x"}}}),
        );
        assert_eq!(run(&mut cx, &plan), Ok(()));
        assert_eq!(
            cx.api.borrow().patches[2],
            serde_json::json!({"metadata": {"annotations": {"mk8s-worker.io/epoch": "3"}}})
        );
    }

    #[test]
    fn a_node_that_never_registers_gives_up_at_the_deadline_as_retryable() {
        let mut cx = FakeCx::new(Duration::ZERO);
        cx.api.borrow_mut().states = [Ok(NodeState::Absent)].into();
        let err = run(&mut cx, &fake::plan());
        assert_eq!(
            err,
            Err(StepError::Retryable("gave up after 1 attempt(s): the node has not registered yet".into()))
        );
    }

    #[test]
    fn a_joined_node_is_watched_with_the_joins_server_and_credential_and_a_failed_restart_stops_the_phase() {
        let mut cx = FakeCx::new(Duration::from_secs(5));
        let mut plan = fake::plan();
        plan.join = Some(JoinSpec { agents: vec!["10.0.0.1:25000".into()] });
        let Err(StepError::Retryable(m)) = run(&mut cx, &plan) else { panic!("no kubeconfig yet") };
        assert!(m.starts_with("cannot read credentials/kubelet.config"), "{m}");
        // MicroK8s's proxy on its template's port, not the plan's (G4).
        plan.apiserver.url = "https://127.0.0.1:6443".into();
        let kubeconfig =
            "    server: https://127.0.0.1:16443\nclient-certificate-data: Q0VSVA==\nclient-key-data: S0VZ\n";
        cx.snap_file(KUBELET, kubeconfig);
        cx.api.borrow_mut().states = [Ok(NodeState::Ready(Some(unix_now() + 3600)))].into();
        assert_eq!(run(&mut cx, &plan), Ok(()));
        let cert = Credential::ClientCertificate { cert_pem: "CERT".into(), key_pem: "KEY".into() };
        assert_eq!(cx.api.borrow().clients, [("kubelet", cert)]);
        assert_eq!(cx.api.borrow().urls, ["https://127.0.0.1:16443"]);

        let unit = &plan.microk8s.start_services[1];
        cx.fail_systemctl(&format!("restart {unit}"));
        let Err(StepError::Retryable(m)) = run(&mut cx, &plan) else { panic!("a failed restart is retryable") };
        assert!(m.starts_with(&format!("systemctl restart {unit}: Failed to restart")), "{m}");
    }
}
