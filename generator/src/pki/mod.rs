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

/// Which machine a per-node secret belongs to: the node's name and its `epoch`
/// (`workers[].epoch`, 1 when absent). Every per-node derivation (tokens, join
/// tokens, keys, serials) takes both, so a replacement machine under the same
/// name gets a new identity once its epoch is raised; epoch 1 derives exactly
/// what was derived before epochs existed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeId<'a> {
    pub name: &'a str,
    pub epoch: u32,
}

impl<'a> NodeId<'a> {
    /// The first epoch: what every node had before epochs existed.
    pub fn first(name: &'a str) -> NodeId<'a> {
        NodeId { name, epoch: 1 }
    }

    /// The derivation's extra part for this epoch: none for epoch 1 (so its
    /// secrets stay byte-identical), `epoch N` after it.
    pub fn epoch_part(self) -> Option<String> {
        (self.epoch > 1).then(|| format!("epoch {}", self.epoch))
    }
}

/// Validity of issued certificates, from the facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// The first instant, UTC: a day's midnight, or the time the facts give.
    pub not_before: time::OffsetDateTime,
    pub days: u32,
}
