//! What a worker reports about itself on its own Node, for `mk8s-bootstrap
//! maintain` (which writes them with the node's kubelet credential) and for the
//! operator's fleet status (which reads them). One home for the keys so the two
//! sides cannot drift apart.
//!
//! Values are strings, as Node annotations are:
//! - [`PLAN_SHA256`]: lowercase hex SHA-256 of the JoinPlan file's bytes as
//!   `mk8s-gen` wrote them (`/etc/mk8s-worker/plan.json`), so the operator can
//!   compare it with a plan rendered from today's facts;
//! - [`AGENT_VERSION`]: `mk8s-bootstrap`'s version;
//! - [`CLIENT_NOT_AFTER`], [`SERVING_NOT_AFTER`], [`PROXY_NOT_AFTER`]: the
//!   `notAfter` of the kubelet's client, the kubelet's serving and kube-proxy's
//!   client certificate in use, RFC 3339 UTC (`2027-01-31T00:00:00Z`); absent when
//!   that credential is not a certificate (a token);
//! - [`DRIFT`]: the names of the checks that failed, comma-separated in check
//!   order, empty when the node is still the worker the plan made;
//! - [`CHECKED_AT`]: when that verdict was reached, RFC 3339 UTC;
//! - [`EPOCH`]: the epoch (`workers[].epoch`, decimal) of the machine that holds
//!   the Node, written by `mk8s-bootstrap` when it finds a Node of an earlier
//!   machine of its name; absent means epoch 1;
//! - [`OBSERVED_CHANNEL`]: the channel the node's MicroK8s snap tracks
//!   (`1.30/stable`), as `snap list` says at the check;
//! - [`UPGRADE`]: what the last run did about [`DESIRED_CHANNEL`]: `done: FROM ->
//!   TO`, `refused: WHY` (the skew policy, a malformed channel) or `failed: WHY`;
//!   absent when nothing was asked.
//!
//! One key is the operator's, read by the node: [`DESIRED_CHANNEL`], the channel
//! `mk8s-ctl upgrade` asks the node to refresh MicroK8s to.

/// The prefix every key of ours carries.
pub const PREFIX: &str = "mk8s-worker.io/";
pub const PLAN_SHA256: &str = "mk8s-worker.io/plan-sha256";
pub const AGENT_VERSION: &str = "mk8s-worker.io/agent-version";
pub const CLIENT_NOT_AFTER: &str = "mk8s-worker.io/client-not-after";
pub const SERVING_NOT_AFTER: &str = "mk8s-worker.io/serving-not-after";
pub const PROXY_NOT_AFTER: &str = "mk8s-worker.io/proxy-not-after";
pub const DRIFT: &str = "mk8s-worker.io/drift";
pub const CHECKED_AT: &str = "mk8s-worker.io/checked-at";
pub const EPOCH: &str = "mk8s-worker.io/epoch";
pub const OBSERVED_CHANNEL: &str = "mk8s-worker.io/observed-channel";
pub const UPGRADE: &str = "mk8s-worker.io/upgrade";
/// Written by the operator's `mk8s-ctl upgrade`, read by the node.
pub const DESIRED_CHANNEL: &str = "mk8s-worker.io/desired-channel";

/// Every key, in the order a report lists them.
pub const ALL: &[&str] = &[
    PLAN_SHA256,
    AGENT_VERSION,
    CLIENT_NOT_AFTER,
    SERVING_NOT_AFTER,
    PROXY_NOT_AFTER,
    DRIFT,
    CHECKED_AT,
    EPOCH,
    OBSERVED_CHANNEL,
    UPGRADE,
    DESIRED_CHANNEL,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_ours_and_a_valid_annotation_key() {
        for k in ALL {
            let name = k.strip_prefix(PREFIX).unwrap_or_else(|| panic!("{k} lacks {PREFIX}"));
            // A qualified name: at most 63 characters of [a-z0-9-], alphanumeric ends.
            assert!(!name.is_empty() && name.len() <= 63, "{k}");
            assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'), "{k}");
            assert!(!name.starts_with('-') && !name.ends_with('-'), "{k}");
        }
        let mut sorted = ALL.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), ALL.len(), "a key listed twice");
    }
}
