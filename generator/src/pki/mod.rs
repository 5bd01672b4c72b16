//! Certificates: the cluster CA as given ([`ca`]), its private key ([`key`]) and
//! the certificates issued with it ([`issue`]).

pub mod ca;
pub mod issue;
pub mod key;

pub use ca::CaCert;
pub use issue::{issue, issue_serving, Issued, KeySeed, Signer};
pub use key::CaKey;

/// Which identity a token authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    Kubelet,
    KubeProxy,
}

impl Identity {
    pub fn label(self) -> &'static str {
        match self {
            Identity::Kubelet => "kubelet",
            Identity::KubeProxy => "kube-proxy",
        }
    }
}

/// Validity of issued certificates, from the facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// The first instant, UTC: a day's midnight, or the time the facts give.
    pub not_before: time::OffsetDateTime,
    pub days: u32,
}
