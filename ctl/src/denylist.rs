//! The retired-nodes denylist (Kubernetes 1.30+, `admissionregistration.k8s.io/v1`):
//! a ValidatingAdmissionPolicy that refuses every write by `system:node:N` when N
//! is a key of the ConfigMap `kube-system/mk8s-worker-retired-nodes`, and its
//! binding. Certificates cannot be revoked; this is what stops a retired
//! machine's kubelet credential from re-creating its Node, renewing its
//! certificate (a CSR is a write) or writing anything else.
//!
//! The policy and binding are the same for every cluster and applied
//! server-side (idempotent); retiring a node adds one key to the ConfigMap with
//! a JSON merge patch, so no earlier key is ever dropped. Removing a key (to let
//! a name join again) is the operator's `kubectl edit`.

use anyhow::Context as _;
use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MatchResources, NamedRuleWithOperations, ParamKind, ParamRef, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding, ValidatingAdmissionPolicyBindingSpec, ValidatingAdmissionPolicySpec, Validation,
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::Client;

/// The name of the policy, its binding and the ConfigMap of retired names.
pub const NAME: &str = "mk8s-worker-retired-nodes";
/// Where the ConfigMap lives.
pub const NAMESPACE: &str = "kube-system";
/// The server-side apply field manager.
pub const MANAGER: &str = "mk8s-ctl";
/// The first Kubernetes minor serving `admissionregistration.k8s.io/v1`
/// ValidatingAdmissionPolicy (GA in 1.30, on by default).
pub const FIRST_MINOR: u32 = 30;

/// Every write (create, update, delete) by a node identity whose name is a key
/// of the ConfigMap is refused; a missing ConfigMap refuses nothing.
pub fn policy() -> ValidatingAdmissionPolicy {
    let s = |v: &str| v.to_string();
    let all = |v: &[&str]| Some(v.iter().map(|x| s(x)).collect::<Vec<_>>());
    ValidatingAdmissionPolicy {
        metadata: ObjectMeta { name: Some(s(NAME)), ..Default::default() },
        spec: Some(ValidatingAdmissionPolicySpec {
            failure_policy: Some(s("Fail")),
            param_kind: Some(ParamKind { api_version: Some(s("v1")), kind: Some(s("ConfigMap")) }),
            match_constraints: Some(MatchResources {
                resource_rules: Some(vec![NamedRuleWithOperations {
                    api_groups: all(&["*"]),
                    api_versions: all(&["*"]),
                    resources: all(&["*/*"]),
                    operations: all(&["CREATE", "UPDATE", "DELETE"]),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            match_conditions: Some(vec![MatchCondition {
                name: s("node-identity"),
                expression: s("request.userInfo.username.startsWith('system:node:')"),
            }]),
            validations: Some(vec![Validation {
                expression: s("!has(params.data) || !(request.userInfo.username.substring(12) in params.data)"),
                message_expression: Some(s(
                    "request.userInfo.username + ' is a retired mk8s-worker node (ConfigMap kube-system/mk8s-worker-retired-nodes)'",
                )),
                reason: Some(s("Forbidden")),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// The policy bound to the ConfigMap, denying.
pub fn binding() -> ValidatingAdmissionPolicyBinding {
    ValidatingAdmissionPolicyBinding {
        metadata: ObjectMeta { name: Some(NAME.into()), ..Default::default() },
        spec: ValidatingAdmissionPolicyBindingSpec {
            policy_name: NAME.into(),
            param_ref: Some(ParamRef {
                name: Some(NAME.into()),
                namespace: Some(NAMESPACE.into()),
                parameter_not_found_action: Some("Allow".into()),
                ..Default::default()
            }),
            validation_actions: vec!["Deny".into()],
            ..Default::default()
        },
    }
}

/// Apply the policy and binding, then add `node` (with the time, RFC 3339) to
/// the ConfigMap, creating it when missing. `dry_run`: server-side dry runs.
pub async fn add(client: &Client, node: &str, when: &str, dry_run: bool) -> anyhow::Result<()> {
    let mut apply = PatchParams::apply(MANAGER).force();
    apply.dry_run = dry_run;
    Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .patch(NAME, &apply, &Patch::Apply(&policy()))
        .await
        .context("cannot apply the ValidatingAdmissionPolicy mk8s-worker-retired-nodes")?;
    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .patch(NAME, &apply, &Patch::Apply(&binding()))
        .await
        .context("cannot apply the ValidatingAdmissionPolicyBinding mk8s-worker-retired-nodes")?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let data = std::collections::BTreeMap::from([(node.to_string(), when.to_string())]);
    let merge = PatchParams { dry_run, ..Default::default() };
    let what = || format!("cannot add {node} to the ConfigMap {NAMESPACE}/{NAME}");
    match api.patch(NAME, &merge, &Patch::Merge(&serde_json::json!({ "data": &data }))).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(NAME.into()),
                    namespace: Some(NAMESPACE.into()),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            };
            api.create(&PostParams { dry_run, ..Default::default() }, &cm).await.with_context(what)?;
            Ok(())
        }
        Err(e) => Err(e).with_context(what),
    }
}
