//! RBAC for the tests that check what docs/mk8s-ctl.md says each command needs.

use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use kube::api::{Api, ObjectMeta, Patch, PatchParams};

use super::Cluster;

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str], names: Option<&[&str]>) -> PolicyRule {
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    PolicyRule {
        api_groups: Some(v(groups)),
        resources: Some(v(resources)),
        verbs: v(verbs),
        resource_names: names.map(v),
        ..Default::default()
    }
}

/// The approver's ClusterRole as docs/mk8s-ctl.md gives it; without the
/// signer rule when `signer` is false.
pub fn approver_rules(signer: bool) -> Vec<PolicyRule> {
    let g = &["certificates.k8s.io"];
    let mut rules = vec![
        rule(g, &["certificatesigningrequests"], &["get", "list", "watch"], None),
        rule(g, &["certificatesigningrequests/approval"], &["update"], None),
    ];
    if signer {
        rules.push(rule(
            g,
            &["signers"],
            &["approve"],
            Some(&["kubernetes.io/kubelet-serving", "kubernetes.io/kube-apiserver-client"]),
        ));
    }
    rules
}

/// The status command's ClusterRole as docs/mk8s-ctl.md gives it.
pub fn status_rules() -> Vec<PolicyRule> {
    vec![rule(&[""], &["nodes"], &["list"], None)]
}

/// ClusterRole `name` with `rules`, bound to the user `name` (server-side apply).
pub async fn bind(c: &Cluster, name: &str, rules: &[PolicyRule]) {
    let client = Cluster::client(&c.admin).await;
    let meta = ObjectMeta { name: Some(name.into()), ..Default::default() };
    let role = ClusterRole { metadata: meta.clone(), rules: Some(rules.to_vec()), ..Default::default() };
    let binding = ClusterRoleBinding {
        metadata: meta,
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: name.into(),
        },
        subjects: Some(vec![Subject {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "User".into(),
            name: name.into(),
            namespace: None,
        }]),
    };
    let pp = PatchParams::apply("mk8s-ctl-test").force();
    Api::<ClusterRole>::all(client.clone()).patch(name, &pp, &Patch::Apply(&role)).await.unwrap();
    Api::<ClusterRoleBinding>::all(client.clone()).patch(name, &pp, &Patch::Apply(&binding)).await.unwrap();
    // The RBAC authorizer reads roles through an informer: wait until the
    // apiserver answers with the last rule in force.
    let last = rules.last().unwrap();
    let attrs = ResourceAttributes {
        group: last.api_groups.as_ref().and_then(|g| g.first().cloned()),
        resource: last.resources.as_ref().and_then(|r| r.first().cloned()),
        verb: last.verbs.first().cloned(),
        name: last.resource_names.as_ref().and_then(|n| n.first().cloned()),
        ..Default::default()
    };
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(name.into()),
            resource_attributes: Some(attrs),
            ..Default::default()
        },
        ..Default::default()
    };
    let api = Api::<SubjectAccessReview>::all(client);
    let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let r = api.create(&Default::default(), &review).await.unwrap();
        if r.status.is_some_and(|s| s.allowed) {
            return;
        }
        assert!(std::time::Instant::now() < end, "the binding of {name} never took effect");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
