//! A [`PhaseCx`] for the phases' tests: a node under a temp root whose `systemctl`
//! records its arguments and fails for the commands a test lists, and an apiserver
//! whose answers the test scripts. The phase under test runs unchanged.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::cx::PhaseCx;
use crate::api::{NodeApi, NodeState, PortHolder};
use crate::node::Node;
use crate::plan::{
    ApiserverSpec, CaSpec, Credential, CredentialsSpec, Flavour, JoinPlan, LoadBalancerSpec, MicroK8sSpec, NodeSpec,
    TimingSpec, API_VERSION, KIND,
};
use crate::retry::{Failure, Jitter};

/// A plan for node `w1` of MicroK8s 1.30, with a token credential, retries every
/// 10 ms at most.
pub fn plan() -> JoinPlan {
    let pem = include_str!("../../../fixtures/seed/ca.crt").to_string();
    JoinPlan {
        api_version: API_VERSION.into(),
        kind: KIND.into(),
        cluster: "c".into(),
        node: NodeSpec { name: "w1".into(), epoch: 1 },
        microk8s: MicroK8sSpec {
            channel: "1.30/stable".into(),
            flavour: Flavour::KubeliteApiserverProxy,
            stop_services: vec![],
            start_services: vec!["snap.microk8s.daemon-kubelite".into(), "snap.microk8s.daemon-apiserver-proxy".into()],
            locks: vec![],
            local_snap: None,
            hold_refresh: false,
            refresh_hook: None,
        },
        ca: CaSpec { pin: crate::certs::pin_of_pem(&pem).unwrap_or_default(), pem },
        apiserver: ApiserverSpec { url: "https://127.0.0.1:16443".into(), endpoints: vec![] },
        credentials: CredentialsSpec {
            kubelet: Credential::Token { token: "t0ken".into() },
            kube_proxy: None,
            kubelet_serving: None,
        },
        install: vec![],
        kubelet_args: vec![],
        kube_proxy_args: vec![],
        load_balancer: LoadBalancerSpec::External,
        timing: TimingSpec { ready_deadline_secs: 60, retry_initial_ms: 10, retry_cap_ms: 10, auth_grace_secs: 0 },
        join: None,
        balancer_files: vec![],
    }
}

/// What the fake apiserver answers, and what it was asked.
#[derive(Default)]
pub struct Apiserver {
    /// Answers to `GET` of the Node's state, in turn; the last one repeats.
    pub states: VecDeque<Result<NodeState, Failure>>,
    /// The Node object (`None`: not registered).
    pub object: Option<Value>,
    /// The answer to a `PATCH` of the Node.
    pub patch_answer: Option<Failure>,
    pub patches: Vec<Value>,
    /// Every client a phase made: whose, and with which credential.
    pub clients: Vec<(&'static str, Credential)>,
    /// The server each client was made for.
    pub urls: Vec<String>,
}

struct Client(Rc<RefCell<Apiserver>>);

impl NodeApi for Client {
    fn holder(&self) -> PortHolder {
        PortHolder::Cluster(200)
    }

    fn readyz(&self) -> Result<(), Failure> {
        Ok(())
    }

    fn node(&self) -> Result<NodeState, Failure> {
        let mut api = self.0.borrow_mut();
        let answer = if api.states.len() > 1 { api.states.pop_front() } else { api.states.front().cloned() };
        answer.unwrap_or(Ok(NodeState::Absent))
    }

    fn node_object(&self) -> Result<Option<Value>, Failure> {
        Ok(self.0.borrow().object.clone())
    }

    fn patch_node(&self, patch: &Value) -> Result<(), Failure> {
        let mut api = self.0.borrow_mut();
        api.patches.push(patch.clone());
        api.patch_answer.clone().map_or(Ok(()), Err)
    }
}

pub struct FakeCx {
    _root: tempfile::TempDir,
    pub node: Node,
    pub lines: Vec<String>,
    pub attempts: u32,
    /// Every failed attempt's error, as the status file showed it.
    pub failures: Vec<String>,
    pub deadline: Instant,
    jitter: Jitter,
    pub api: Rc<RefCell<Apiserver>>,
}

impl FakeCx {
    /// A context whose run gives up after `deadline`.
    pub fn new(deadline: Duration) -> FakeCx {
        let root = tempfile::tempdir().unwrap();
        let systemctl = root.path().join("bin/systemctl");
        write_script(&systemctl, SYSTEMCTL);
        let node = Node {
            root: root.path().into(),
            systemctl: systemctl.display().to_string(),
            snap: "false".into(),
            curl: "false".into(),
            tar: "false".into(),
            microk8s: "false".into(),
        };
        FakeCx {
            _root: root,
            node,
            lines: vec![],
            attempts: 0,
            failures: vec![],
            deadline: Instant::now() + deadline,
            jitter: Jitter::new(1),
            api: Rc::default(),
        }
    }

    fn bin(&self, file: &str) -> PathBuf {
        Path::new(&self.node.systemctl).with_file_name(file)
    }

    /// `systemctl ARGS` (as one line, `stop some.service`) fails from now on.
    pub fn fail_systemctl(&self, args: &str) {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(self.bin("fail")).unwrap();
        writeln!(f, "{args}").unwrap();
    }

    /// The `systemctl` command lines run so far.
    pub fn systemctl_calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.bin("calls")).unwrap_or_default().lines().map(str::to_string).collect()
    }

    /// Write `$SNAP_DATA/REL`.
    pub fn snap_file(&self, rel: &str, text: &str) {
        let p = self.node.snap_data(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

/// Records its arguments; fails, as systemctl does, for a line listed in `fail`.
const SYSTEMCTL: &str = r#"#!/bin/sh
here=$(dirname "$0")
echo "$*" >> "$here/calls"
if [ -f "$here/fail" ] && grep -qxF -- "$*" "$here/fail"; then
    echo "Failed to $1 $2: Unit $2 is masked." >&2
    exit 1
fi
"#;

/// Written by a child process: a file this process held open for writing could be
/// inherited by another test thread's fork, and running it would then fail with
/// ETXTBSY.
fn write_script(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut sh = Command::new("sh")
        .args(["-c", "cat > \"$0\" && chmod 755 \"$0\"", &path.display().to_string()])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    sh.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    assert!(sh.wait().unwrap().success());
}

impl PhaseCx for FakeCx {
    fn node(&self) -> &Node {
        &self.node
    }

    fn log(&mut self, phase: &str, msg: &str) {
        self.lines.push(format!("mk8s-bootstrap[{phase}]: {msg}"));
    }

    fn attempts(&self) -> u32 {
        self.attempts
    }

    fn record_attempt(&mut self, attempts: u32, failure: Option<&str>) {
        self.attempts = attempts;
        self.failures.extend(failure.map(str::to_string));
    }

    fn deadline(&self) -> Instant {
        self.deadline
    }

    fn jitter(&mut self) -> &mut Jitter {
        &mut self.jitter
    }

    fn apiserver(
        &self,
        plan: &JoinPlan,
        url: &str,
        cred: &Credential,
        who: &'static str,
    ) -> Result<Box<dyn NodeApi>, Failure> {
        if plan.join.is_none() {
            assert_eq!(url, plan.apiserver.url, "the phases under test talk to the plan's apiserver");
        }
        self.api.borrow_mut().clients.push((who, cred.clone()));
        self.api.borrow_mut().urls.push(url.to_string());
        Ok(Box::new(Client(Rc::clone(&self.api))))
    }
}
