//! Cluster facts as written by the operator: raw serde structs with unknown keys
//! rejected. Nothing here is trusted; `validate` turns these into the checked model.
//! The schema is documented in `docs/cluster-facts.md`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::input::{self, Kind, Node};
use crate::report::Report;
use crate::spans::SpanMap;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawFacts {
    #[serde(default)]
    pub cluster: Option<RawCluster>,
    #[serde(default)]
    pub workers: Vec<RawWorker>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawCluster {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub microk8s: Option<RawMicroK8s>,
    #[serde(default)]
    pub ca: Option<RawCa>,
    #[serde(default)]
    pub auth: Option<String>,
    #[serde(default)]
    pub control_plane: Vec<RawControlPlane>,
    #[serde(default)]
    pub apiserver_port: Option<i64>,
    #[serde(default)]
    pub load_balancer: Option<RawLoadBalancer>,
    #[serde(default)]
    pub dns: Option<RawDns>,
    /// The cluster's pod network (kube-proxy `--cluster-cidr`), default 10.1.0.0/16.
    #[serde(default)]
    pub pod_cidr: Option<String>,
    #[serde(default)]
    pub bootstrap: Option<RawBootstrap>,
    /// `auth: x509`: validity of the issued client certificates.
    #[serde(default)]
    pub client_certificates: Option<RawClientCertificates>,
    /// `auth: microk8s-join` settings.
    #[serde(default)]
    pub microk8s_join: Option<RawMicroK8sJoin>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawMicroK8sJoin {
    /// 1.23-1.26 control planes: how long a registered join token stays valid
    /// (`token|expiry` in cluster-tokens.txt); default 24.
    #[serde(default)]
    pub token_ttl_hours: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawClientCertificates {
    /// YYYY-MM-DD (midnight UTC). Fixed in the facts, never taken from the clock,
    /// so output is reproducible; move it forward to rotate certificates.
    #[serde(default)]
    pub not_before: Option<String>,
    #[serde(default)]
    pub validity_days: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawMicroK8s {
    #[serde(default)]
    pub channel: Option<String>,
    /// `hold` (default): snapd never refreshes MicroK8s by itself; `auto`: it does.
    #[serde(default)]
    pub refresh: Option<String>,
    /// Air-gapped: a `.snap` and `.assert` already on the node (baked or copied).
    #[serde(default)]
    pub local_snap: Option<RawLocalSnap>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawLocalSnap {
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub assert: Option<String>,
    /// The base snap MicroK8s runs on (core, core18, core20, core22), for images
    /// that do not have it: snapd cannot fetch it offline.
    #[serde(default)]
    pub base: Option<RawSnapFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawSnapFile {
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub assert: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawCa {
    /// Path to the CA certificate (PEM), relative to the facts file.
    #[serde(default)]
    pub cert_file: Option<String>,
    /// The CA certificate PEM inline.
    #[serde(default)]
    pub cert: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawControlPlane {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawLoadBalancer {
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    /// External mode: the load balancer's IP address or DNS name.
    #[serde(default)]
    pub address: Option<String>,
    /// External mode: its port (default: the apiserver port).
    #[serde(default)]
    pub port: Option<i64>,
    #[serde(default)]
    pub traefik: Option<RawTraefik>,
    #[serde(default)]
    pub health_check: Option<RawHealthCheck>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawTraefik {
    /// The traefik version the node runs (3.6 or later: TCP health checks).
    #[serde(default)]
    pub version: Option<String>,
    /// Where the binary is on the node (default /usr/local/bin/traefik).
    #[serde(default)]
    pub path: Option<String>,
    /// Fetch the binary from here when it is not on the node...
    #[serde(default)]
    pub url: Option<String>,
    /// ...and refuse it unless it has this sha256.
    #[serde(default)]
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawHealthCheck {
    #[serde(default)]
    pub interval: Option<String>,
    #[serde(default)]
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawDns {
    #[serde(default)]
    pub cluster_domain: Option<String>,
    #[serde(default)]
    pub cluster_dns: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawBootstrap {
    /// Seconds the bootstrap waits for the node to be Ready before it exits 75.
    #[serde(default)]
    pub ready_deadline_seconds: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawWorker {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub kubelet_args: Vec<String>,
    /// Raised to give the worker new join credentials (`auth: microk8s-join`).
    #[serde(default)]
    pub generation: Option<i64>,
    /// Raised to give a replacement machine under the same name new secrets.
    #[serde(default)]
    pub epoch: Option<i64>,
    /// `retired: true`: the worker was taken out of the cluster (`mk8s-ctl
    /// retire`); no bundle registers it and no user-data is made for it again.
    #[serde(default)]
    pub retired: Option<bool>,
}

/// Schema problems (unknown keys, wrong types) reported before parsing stops.
pub const MAX_SCHEMA_PROBLEMS: usize = 256;

/// Parse facts text. Required keys are checked by `validate`, so a missing key does
/// not hide other problems. Every unknown key is reported; a value of the wrong type
/// is reported and dropped so the rest is still parsed. Only YAML the reader refuses
/// (bad syntax, duplicate keys, hostile nesting or aliases) stops everything.
/// Returns the raw facts (when the YAML parsed), the problems so far, and the
/// parsed document that locates them.
pub fn parse(text: &str) -> (Option<RawFacts>, Report, SpanMap) {
    let mut report = Report::default();
    let root = match input::parse(text) {
        Ok(root) => root.unwrap_or_else(empty_mapping),
        Err(e) => {
            report.error("$", e.message, "fix the YAML at the position shown");
            report.problems[0].line = Some(e.pos.line);
            report.problems[0].column = Some(e.pos.col);
            return (None, report, SpanMap::default());
        }
    };
    let root = if root.is_null() { empty_mapping() } else { root };
    // The common case, a well-formed file, in one pass over the tree.
    let raw = match input::from_node::<RawFacts>(&root) {
        Ok(raw) => Some(raw),
        Err(_) => schema_problems(root.clone(), &mut report),
    };
    let spans = SpanMap::new(Some(root));
    report.locate(&spans);
    (raw, report, spans)
}

fn empty_mapping() -> Node {
    Node { kind: Kind::Map(Vec::new()), ..input::null() }
}

/// Each round either succeeds, or records one problem and removes its key from
/// `work` (a copy: the document itself keeps every key for locating them).
fn schema_problems(mut work: Node, report: &mut Report) -> Option<RawFacts> {
    for round in 1..=MAX_SCHEMA_PROBLEMS {
        let e = match serde_path_to_error::deserialize::<_, RawFacts>(&work) {
            Ok(r) => return Some(r),
            Err(e) => e,
        };
        let path = to_json_path(&e.path().to_string());
        let msg = e.inner().to_string();
        let (parent, key) = match path.rfind('.') {
            Some(i) if !path[i + 1..].contains('[') => (path[..i].to_string(), path[i + 1..].to_string()),
            _ => (path.clone(), String::new()),
        };
        if let Some(unknown) = unknown_field(&msg) {
            // serde_path_to_error's path already ends with the unknown key.
            report.error_at_key(
                path.clone(),
                format!("unknown key `{unknown}`"),
                &format!("remove it, or check its spelling: {}", expected_list(&msg)),
            );
        } else {
            report.error(path.clone(), describe_serde_error(&msg), "see docs/cluster-facts.md for the schema");
        }
        if key.is_empty() || !remove_key(&mut work, &parent, &key) {
            return None;
        }
        if round == MAX_SCHEMA_PROBLEMS {
            report.error(
                "$",
                format!(
                    "and more: the first {MAX_SCHEMA_PROBLEMS} schema problems are shown, the rest were not checked"
                ),
                "fix these and run again",
            );
        }
    }
    None
}

fn describe_serde_error(msg: &str) -> String {
    if let Some(rest) = msg.strip_prefix("missing field ") {
        return format!("required key {rest} is missing");
    }
    msg.to_string()
}

fn unknown_field(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

fn expected_list(msg: &str) -> String {
    match msg.find("expected ") {
        Some(i) => msg[i..].to_string(),
        None => "this mapping takes no other keys".into(),
    }
}

/// serde_path_to_error paths look like `cluster.control-plane[0]`; ours start at `$`.
fn to_json_path(p: &str) -> String {
    if p == "." || p.is_empty() {
        "$".to_string()
    } else {
        format!("$.{p}")
    }
}

/// Remove `key` from the mapping at `path` (a path produced by `to_json_path`).
fn remove_key(root: &mut Node, path: &str, key: &str) -> bool {
    let mut cur = root;
    let rest = path.strip_prefix('$').unwrap_or(path);
    for seg in split_path(rest) {
        let next = match (&mut cur.kind, seg) {
            (Kind::Map(entries), Seg::Key(k)) => entries.iter_mut().find(|e| e.key == k).map(|e| &mut e.value),
            (Kind::Seq(items), Seg::Index(i)) => items.get_mut(i),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return false,
        }
    }
    match &mut cur.kind {
        Kind::Map(entries) => {
            let before = entries.len();
            entries.retain(|e| e.key != key);
            entries.len() < before
        }
        _ => false,
    }
}

enum Seg {
    Key(String),
    Index(usize),
}

fn split_path(p: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in p.split('.').filter(|s| !s.is_empty()) {
        let (name, idxs) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(Seg::Key(name.to_string()));
        }
        for idx in idxs.split(['[', ']']).filter(|s| !s.is_empty()) {
            if let Ok(n) = idx.parse() {
                out.push(Seg::Index(n));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<RawFacts, Report> {
        match parse(text) {
            (Some(raw), r, _) if !r.has_errors() => Ok(raw),
            (_, r, _) => Err(r),
        }
    }

    const MIN: &str = "cluster:\n  name: c\n  microk8s: { channel: 1.30/stable }\n  ca: { cert-file: ca.crt }\n  control-plane:\n    - { name: cp1, address: 10.0.0.1 }\n";

    #[test]
    fn minimal_facts_parse() {
        let raw = parse_str(MIN).unwrap();
        assert_eq!(raw.cluster.unwrap().name.as_deref(), Some("c"));
        assert!(raw.workers.is_empty());
    }

    #[test]
    fn every_unknown_key_is_reported_with_its_position() {
        let text = format!("{MIN}  colour: blue\nworkers:\n  - name: w1\n    lables: {{ a: b }}\n");
        let r = parse_str(&text).unwrap_err();
        let got: Vec<_> = r.problems.iter().map(|p| (p.path.as_str(), p.line, p.column)).collect();
        assert_eq!(got, vec![("$.cluster.colour", Some(7), Some(3)), ("$.workers[0].lables", Some(10), Some(5))]);
        assert!(r.problems[0].help.as_deref().unwrap().contains("control-plane"));
    }

    #[test]
    fn a_wrong_type_is_reported_and_the_rest_still_parsed() {
        let text = format!("{MIN}  apiserver-port: high\n  colour: x\n");
        let r = parse_str(&text).unwrap_err();
        let paths: Vec<_> = r.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, vec!["$.cluster.apiserver-port", "$.cluster.colour"], "{r:?}");
    }

    #[test]
    fn yaml_syntax_errors_have_a_position() {
        let r = parse_str("cluster: [\n").unwrap_err();
        assert!(r.problems[0].line.is_some());
        assert!(r.problems[0].message.starts_with("not valid YAML"));
    }

    #[test]
    fn yaml11_specials_in_names_stay_strings() {
        let text = MIN.replace("name: c\n", "name: on\n").replace("cp1", "0644");
        let raw = parse_str(&text).unwrap();
        let c = raw.cluster.unwrap();
        assert_eq!(c.name.as_deref(), Some("on"));
        assert_eq!(c.control_plane[0].name.as_deref(), Some("0644"));
    }
}
