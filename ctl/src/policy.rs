//! Which certificate requests `mk8s-ctl approve` approves: a pure function of
//! the request and the facts, so every rule is tested without a cluster. It
//! decides two signers' requests, and only those filed by nodes.
//!
//! First, for either signer, the requester (checked in this order; the first
//! that fails is the reason given):
//! 1. the requester (`spec.username`, set by the apiserver from the credential
//!    that filed it) is `system:node:N` and in the group `system:nodes`;
//! 2. N is a worker in the facts, not retired;
//! 3. the request is one PEM `CERTIFICATE REQUEST` (its signature was checked by
//!    the apiserver on create: k8s.io/kubernetes v1.34.4
//!    `pkg/apis/certificates/validation/validation.go`, `CheckSignature`).
//!
//! A `kubernetes.io/kubelet-serving` request (the kubelet's serving certificate)
//! is then approved only when:
//! 4. its subject is exactly `CN=system:node:N, O=system:nodes`, the template the
//!    kubelet uses (v1.34.4 `pkg/kubelet/certificate/kubelet.go`,
//!    `newGetTemplateFn`);
//! 5. it asks for at least one name, every DNS name is N and every IP address is
//!    N's `address` in the facts, and nothing else (no e-mail, URI or other name);
//! 6. its usages are exactly a set a kubelet asks for: `digital signature, key
//!    encipherment, server auth` (every kubelet before 1.27, whatever its key,
//!    and 1.27+ with an RSA key), or, for a key that is not RSA, `digital
//!    signature, server auth` (1.27+: client-go v0.34.4
//!    `util/certificate/certificate_manager.go`, `DefaultKubeletServingGetUsages`;
//!    the kubelet makes ECDSA P-256 keys, `generateCSR`; the change is
//!    kubernetes/kubernetes#111660 for #109077). The controller-manager's signer
//!    takes either set (v1.34.4 `pkg/apis/certificates/helpers.go`,
//!    `ValidateKubeletServingCSR`).
//!
//! A `kubernetes.io/kube-apiserver-client` request from a node (kube-proxy's
//! client certificate, filed by `mk8s-bootstrap maintain` with the kubelet's
//! credential) is approved only when:
//! 4. its subject is exactly `CN=system:kube-proxy`, nothing else (the subject
//!    the generator issues kube-proxy: no organisation, so no group such as
//!    `system:masters` can ride along);
//! 5. it asks for no subject alternative name at all;
//! 6. its usages include `client auth` and are among `digital signature, key
//!    encipherment, client auth`, none repeated.
//!
//! Every other request for these signers from a `system:node:` requester is
//! denied; requests from anyone else, and for any other signer, are left alone.

use std::collections::BTreeSet;
use std::net::IpAddr;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use mk8s_gen::model::{Facts, Worker};
use serde::Serialize;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{OID_PKCS1_RSAENCRYPTION, OID_X509_COMMON_NAME, OID_X509_ORGANIZATION_NAME};
use x509_parser::prelude::FromDer;

/// The kubelet serving-certificate signer.
pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";
/// The apiserver client signer, for kube-proxy's certificate.
pub const KUBE_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
/// The signers whose requests this policy decides.
pub const SIGNERS: &[&str] = &[KUBELET_SERVING, KUBE_APISERVER_CLIENT];
/// The identity kube-proxy's certificate carries (its CN, no organisation).
pub const KUBE_PROXY_USER: &str = "system:kube-proxy";
/// The requester prefix of a node's identity (the Node authorizer's).
pub const NODE_USER_PREFIX: &str = "system:node:";
/// The group every node identity carries.
pub const NODES_GROUP: &str = "system:nodes";

/// A 1.27+ kubelet's serving usages for a key that is not RSA (its own ECDSA one).
pub const SERVING_USAGES: &[&str] = &["digital signature", "server auth"];
/// The serving usages of every kubelet before 1.27, and of 1.27+ with an RSA key.
pub const SERVING_USAGES_ENCIPHERMENT: &[&str] = &["digital signature", "key encipherment", "server auth"];
/// The usages a kube-proxy request may ask for; `client auth` is required.
pub const PROXY_USAGES: &[&str] = &["digital signature", "key encipherment", "client auth"];

/// What to do with one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Approve,
    Deny,
    /// Not ours to decide (another signer, or not a node's request).
    Ignore,
}

/// Why, in a word (the condition's `reason`) and in a sentence (its `message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub verdict: Verdict,
    /// CamelCase, as Kubernetes condition reasons are.
    pub reason: &'static str,
    pub message: String,
    /// The worker the request is for, when the requester names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl Decision {
    fn ignore(reason: &'static str, message: String) -> Decision {
        Decision { verdict: Verdict::Ignore, reason, message, node: None }
    }

    fn deny(node: &str, reason: &'static str, message: String) -> Decision {
        Decision { verdict: Verdict::Deny, reason, message, node: Some(node.to_string()) }
    }
}

/// True when no one has approved, denied or failed the request yet.
pub fn is_pending(csr: &CertificateSigningRequest) -> bool {
    let conditions = csr.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    let decided = conditions.iter().any(|c| matches!(c.type_.as_str(), "Approved" | "Denied" | "Failed"));
    let issued = csr.status.as_ref().is_some_and(|s| s.certificate.is_some());
    !decided && !issued
}

/// Decide one request against the facts.
pub fn decide(csr: &CertificateSigningRequest, facts: &Facts) -> Decision {
    let spec = &csr.spec;
    if !SIGNERS.contains(&spec.signer_name.as_str()) {
        let msg = format!("signer {} is not one of {SIGNERS:?}", spec.signer_name);
        return Decision::ignore("OtherSigner", msg);
    }
    let worker = match requester(csr, facts) {
        Ok(worker) => worker,
        Err(decision) => return decision,
    };
    let node = worker.name.as_str();
    let usages = spec.usages.as_deref().unwrap_or_default();
    let checked = if spec.signer_name == KUBELET_SERVING {
        check_request(&spec.request.0, worker)
            .and_then(|rsa| check_usages(usages, rsa).map_err(|m| ("WrongUsages", m)))
            .map(|()| {
                (
                    "WorkerServingCertificate",
                    format!("serving certificate for worker {node}: subject, names and usages as the facts say"),
                )
            })
    } else {
        check_proxy_request(&spec.request.0)
            .and_then(|()| check_proxy_usages(usages).map_err(|m| ("WrongUsages", m)))
            .map(|()| ("WorkerKubeProxyCertificate", format!("kube-proxy client certificate for worker {node}: subject CN={KUBE_PROXY_USER}, no names, client usages")))
    };
    match checked {
        Err((reason, message)) => Decision::deny(node, reason, message),
        Ok((reason, message)) => Decision { verdict: Verdict::Approve, reason, message, node: Some(node.to_string()) },
    }
}

/// The worker that filed the request, or the decision when it is not one: left
/// alone when the requester is not a node, denied when it is a node that is not
/// a worker in the facts (or is retired, or lacks the nodes group).
fn requester<'f>(csr: &CertificateSigningRequest, facts: &'f Facts) -> Result<&'f Worker, Decision> {
    let spec = &csr.spec;
    let username = spec.username.as_deref().unwrap_or_default();
    let Some(node) = username.strip_prefix(NODE_USER_PREFIX) else {
        return Err(Decision::ignore("NotANode", format!("requester {username:?} is not a node identity")));
    };
    let groups = spec.groups.as_deref().unwrap_or_default();
    if !groups.iter().any(|g| g == NODES_GROUP) {
        let msg = format!("requester {username} is not in the group {NODES_GROUP} (groups: {groups:?})");
        return Err(Decision::deny(node, "NotInNodesGroup", msg));
    }
    if let Some(r) = facts.retired(node) {
        let msg = format!("{node} is retired in the facts of cluster {} ({}.retired)", facts.name, r.path);
        return Err(Decision::deny(node, "RetiredNode", msg));
    }
    facts.worker(node).ok_or_else(|| {
        let msg = format!("{node} is not a worker in the facts of cluster {}", facts.name);
        Decision::deny(node, "UnknownNode", msg)
    })
}

/// The names a request asks for.
#[derive(Debug, Default)]
struct Names {
    dns: Vec<String>,
    ips: Vec<IpAddr>,
    /// Anything else (e-mail, URI, other name), as text for the message.
    other: Vec<String>,
}

/// The DER of the one PEM `CERTIFICATE REQUEST` in `pem`.
fn request_der(pem: &[u8]) -> Result<Vec<u8>, (&'static str, String)> {
    let bad = |m: String| ("BadRequest", m);
    let (rest, pem) = x509_parser::pem::parse_x509_pem(pem).map_err(|e| bad(format!("not PEM: {e}")))?;
    if pem.label != "CERTIFICATE REQUEST" || x509_parser::pem::parse_x509_pem(rest).is_ok() {
        return Err(bad(format!("not one PEM CERTIFICATE REQUEST (found {:?})", pem.label)));
    }
    Ok(pem.contents)
}

fn parse_request(der: &[u8]) -> Result<X509CertificationRequest<'_>, (&'static str, String)> {
    let (_, req) = X509CertificationRequest::from_der(der)
        .map_err(|e| ("BadRequest", format!("not a certificate request: {e}")))?;
    Ok(req)
}

/// Parse the PEM request and check its subject and names; `Ok(true)` for an RSA
/// key. `Err((reason, message))` otherwise.
fn check_request(pem: &[u8], worker: &Worker) -> Result<bool, (&'static str, String)> {
    let der = request_der(pem)?;
    let req = parse_request(&der)?;
    let info = &req.certification_request_info;
    check_subject(&info.subject, &worker.name)?;
    let names = requested_names(&req).map_err(|m| ("BadRequest", m))?;
    check_names(&names, worker)?;
    Ok(info.subject_pki.algorithm.algorithm == OID_PKCS1_RSAENCRYPTION)
}

/// kube-proxy's request: subject exactly `CN=system:kube-proxy`, no names.
fn check_proxy_request(pem: &[u8]) -> Result<(), (&'static str, String)> {
    let der = request_der(pem)?;
    let req = parse_request(&der)?;
    let subject = &req.certification_request_info.subject;
    let attrs: Vec<_> = subject.iter_attributes().collect();
    let only_cn = matches!(attrs.as_slice(), [a] if a.attr_type() == &OID_X509_COMMON_NAME
        && a.as_str().ok() == Some(KUBE_PROXY_USER));
    if !only_cn {
        return Err(("WrongSubject", format!("subject is {subject}, not exactly CN={KUBE_PROXY_USER}")));
    }
    let names = requested_names(&req).map_err(|m| ("BadRequest", m))?;
    let all: Vec<String> = (names.dns.iter().cloned())
        .chain(names.ips.iter().map(IpAddr::to_string))
        .chain(names.other.iter().cloned())
        .collect();
    if !all.is_empty() {
        return Err((
            "ForeignSAN",
            format!("a client certificate for kube-proxy names nothing; asked for: {}", all.join(", ")),
        ));
    }
    Ok(())
}

/// Usages among [`PROXY_USAGES`], none repeated, `client auth` among them.
fn check_proxy_usages(usages: &[String]) -> Result<(), String> {
    let got: BTreeSet<&str> = usages.iter().map(String::as_str).collect();
    let allowed: BTreeSet<&str> = PROXY_USAGES.iter().copied().collect();
    if got.len() == usages.len() && got.contains("client auth") && got.is_subset(&allowed) {
        return Ok(());
    }
    Err(format!("usages {usages:?}; kube-proxy's request asks for \"client auth\" and nothing beyond {PROXY_USAGES:?}"))
}

/// Exactly `CN=system:node:N` and `O=system:nodes`, one each, nothing else.
fn check_subject(subject: &x509_parser::x509::X509Name<'_>, node: &str) -> Result<(), (&'static str, String)> {
    let mut cn = Vec::new();
    let mut o = Vec::new();
    let mut other = 0;
    for attr in subject.iter_attributes() {
        let value = attr.as_str().unwrap_or("<not a string>").to_string();
        if attr.attr_type() == &OID_X509_COMMON_NAME {
            cn.push(value);
        } else if attr.attr_type() == &OID_X509_ORGANIZATION_NAME {
            o.push(value);
        } else {
            other += 1;
        }
    }
    let want_cn = format!("{NODE_USER_PREFIX}{node}");
    if cn != [want_cn.as_str()] || o != [NODES_GROUP] || other != 0 {
        let msg = format!("subject is {subject}, not CN={want_cn}, O={NODES_GROUP}");
        return Err(("WrongSubject", msg));
    }
    Ok(())
}

fn requested_names(req: &X509CertificationRequest<'_>) -> Result<Names, String> {
    let mut names = Names::default();
    for ext in req.requested_extensions().into_iter().flatten() {
        match ext {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(d) => names.dns.push(d.to_string()),
                        GeneralName::IPAddress(b) => match ip_from_bytes(b) {
                            Some(ip) => names.ips.push(ip),
                            None => names.other.push(format!("IP address of {} bytes", b.len())),
                        },
                        other => names.other.push(format!("{other:?}")),
                    }
                }
            }
            ParsedExtension::ParseError { error } => return Err(format!("an extension does not parse: {error}")),
            _ => {}
        }
    }
    Ok(names)
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Every name is the worker's name or its address, and there is at least one.
fn check_names(names: &Names, worker: &Worker) -> Result<(), (&'static str, String)> {
    if !names.other.is_empty() {
        return Err(("ForeignSAN", format!("names other than DNS and IP: {}", names.other.join(", "))));
    }
    if names.dns.is_empty() && names.ips.is_empty() {
        return Err(("NoSAN", "no subject alternative name (a serving certificate needs one)".into()));
    }
    let foreign: Vec<String> = (names.dns.iter().filter(|d| **d != worker.name).cloned())
        .chain(names.ips.iter().filter(|ip| Some(**ip) != worker.address).map(|ip| ip.to_string()))
        .collect();
    if !foreign.is_empty() {
        let allowed = match worker.address {
            Some(a) => format!("{} and {a}", worker.name),
            None => format!("{} only (the facts give no address)", worker.name),
        };
        return Err((
            "ForeignSAN",
            format!("names not of worker {}: {}; allowed: {allowed}", worker.name, foreign.join(", ")),
        ));
    }
    Ok(())
}

/// The usages, as a set and none repeated, are one a kubelet asks for with this key.
fn check_usages(usages: &[String], key_is_rsa: bool) -> Result<(), String> {
    let got: BTreeSet<&str> = usages.iter().map(String::as_str).collect();
    let is = |want: &[&str]| got.len() == usages.len() && got == want.iter().copied().collect();
    if is(SERVING_USAGES_ENCIPHERMENT) || (!key_is_rsa && is(SERVING_USAGES)) {
        return Ok(());
    }
    let allowed = if key_is_rsa {
        format!("{SERVING_USAGES_ENCIPHERMENT:?} for an RSA key")
    } else {
        format!("{SERVING_USAGES:?} or {SERVING_USAGES_ENCIPHERMENT:?}")
    };
    Err(format!("usages {usages:?}; a kubelet's serving request asks for exactly {allowed}"))
}
