//! The operator's private file: the seed every worker token is derived from.
//! Kept apart from the facts so the facts can be committed.
//!
//! Tokens are `HMAC-SHA256(seed, "mk8s-worker/v1 token" 0 cluster 0 identity 0 node 0)`,
//! hex-encoded: deterministic (same inputs, same token, so regenerating user-data does
//! not change credentials), independent per identity (kubelet and kube-proxy never
//! share a token) and per cluster, and not reversible to the seed. A node whose
//! `epoch` is above 1 adds the part `epoch N` 0 after its name, in every per-node
//! derivation (tokens, join tokens, keys, serials): a replacement machine gets new
//! secrets, and epoch 1 keeps the ones derived before epochs existed.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::pki::{CaCert, Identity, KeySeed, NodeId, Signer};
use crate::report::Report;
use crate::util;

pub const API_VERSION: &str = "mk8s-worker/v1";
pub const KIND: &str = "Secrets";
const SEED_BYTES: usize = 32;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSecrets {
    api_version: String,
    kind: String,
    /// base64 of at least 32 random bytes.
    token_seed: String,
    /// `auth: x509`: the cluster CA's private key, a path (relative to this file)...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_key_file: Option<String>,
    /// ...or the PEM inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_key: Option<String>,
}

pub struct Secrets {
    seed: Vec<u8>,
    ca_key_pem: Option<String>,
    /// Where `ca-key-file` pointed, when the key came from a file.
    pub ca_key_path: Option<std::path::PathBuf>,
    ca_key: Option<crate::pki::CaKey>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(<redacted>)")
    }
}

impl KeySeed for Secrets {
    /// 32 bytes for a purpose ("key", "serial"), one identity, one node and epoch.
    fn derive(&self, purpose: &str, cluster: &str, identity: Identity, node: NodeId<'_>, counter: u8) -> [u8; 32] {
        self.node_mac(&[&format!("mk8s-worker/v1 {purpose}"), cluster, identity.label()], node, &[counter])
    }
}

impl Secrets {
    /// Parse a secrets file; `ca-key-file` is resolved against `base_dir`.
    pub fn load(text: &str, base_dir: &std::path::Path) -> Result<Secrets, Report> {
        let mut s = Self::parse(text)?;
        if let Some(file) = s.ca_key_pem.as_ref().and_then(|k| k.strip_prefix("file:")) {
            let path = base_dir.join(file);
            match std::fs::read_to_string(&path) {
                Ok(pem) => {
                    s.ca_key_pem = Some(pem);
                    s.ca_key_path = Some(path);
                }
                Err(e) => {
                    let mut r = Report::default();
                    r.error("$.ca-key-file", format!("cannot read {}: {e}", path.display()), "the path is relative to the secrets file; on MicroK8s the key is certs/ca.key on a control-plane node");
                    return Err(r);
                }
            }
        }
        Ok(s)
    }

    /// Parse a secrets file. Problems never quote the file's content.
    pub fn parse(text: &str) -> Result<Secrets, Report> {
        let mut r = Report::default();
        let raw: RawSecrets = match read_raw(text) {
            Ok(raw) => raw,
            Err((what, pos)) => {
                r.error(
                    "$",
                    format!("cannot read the secrets file: {what}"),
                    "create one with `mk8s-gen secrets init --out FILE`",
                );
                r.problems[0].line = pos.map(|p| p.line);
                r.problems[0].column = pos.map(|p| p.col);
                return Err(r);
            }
        };
        if raw.api_version != API_VERSION || raw.kind != KIND {
            r.error(
                "$.api-version",
                format!("expected api-version {API_VERSION} and kind {KIND}"),
                "create one with `mk8s-gen secrets init --out FILE`",
            );
        }
        let seed = base64::engine::general_purpose::STANDARD.decode(raw.token_seed.trim()).unwrap_or_default();
        if seed.len() < SEED_BYTES {
            r.error(
                "$.token-seed",
                format!("token-seed must be base64 of at least {SEED_BYTES} bytes"),
                "create one with `mk8s-gen secrets init --out FILE`",
            );
        }
        if raw.ca_key_file.is_some() && raw.ca_key.is_some() {
            r.error("$.ca-key", "give one of `ca-key-file` and `ca-key`", "keep the CA key in one place");
        }
        if r.has_errors() {
            return Err(r);
        }
        let ca_key_pem = raw.ca_key.or(raw.ca_key_file.map(|f| format!("file:{f}")));
        Ok(Secrets { seed, ca_key_pem, ca_key_path: None, ca_key: None })
    }

    /// `auth: x509`: parse the CA key once and check it belongs to the CA.
    pub fn attach_ca_key(&mut self, ca: &crate::pki::CaCert) -> Result<(), String> {
        let pem =
            self.ca_key_pem.as_deref().filter(|p| !p.starts_with("file:")).ok_or(
                "auth: x509 needs the cluster CA key in the secrets file (`ca-key-file: PATH` or `ca-key: PEM`)",
            )?;
        self.ca_key = Some(crate::pki::CaKey::from_pem(pem, ca)?);
        Ok(())
    }

    pub fn ca_key(&self) -> Option<&crate::pki::CaKey> {
        self.ca_key.as_ref()
    }

    /// What signs cluster `cluster`'s certificates (`auth: x509`): its CA, the CA key
    /// from this file, and this file's seed for the node keys and serials.
    pub fn signer<'a>(&'a self, ca: &'a CaCert, cluster: &'a str) -> Result<Signer<'a>, String> {
        let key = self.ca_key().ok_or("auth: x509 needs the cluster CA key in the secrets file (`ca-key-file`)")?;
        Ok(Signer { ca, key, seed: self, cluster })
    }

    /// A new secrets file's text, with a fresh random seed.
    pub fn generate(ca_key_file: Option<&str>) -> std::io::Result<String> {
        let mut seed = [0u8; SEED_BYTES];
        getrandom::fill(&mut seed).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Self::text_for_seed(&seed, ca_key_file))
    }

    fn text_for_seed(seed: &[u8], ca_key_file: Option<&str>) -> String {
        let raw = RawSecrets {
            api_version: API_VERSION.into(),
            kind: KIND.into(),
            token_seed: base64::engine::general_purpose::STANDARD.encode(seed),
            ca_key_file: ca_key_file.map(str::to_string),
            ca_key: None,
        };
        format!("# mk8s-worker secrets: keep this file private (mode 0600), out of version control.\n{}", to_yaml(&raw))
    }

    /// The token for one identity on one node (and epoch) of one cluster.
    pub fn token(&self, cluster: &str, identity: Identity, node: NodeId<'_>) -> String {
        hex::encode(self.node_mac(&["mk8s-worker/v1 token", cluster, identity.label()], node, &[]))
    }

    /// `auth: microk8s-join`: the token a worker joins with, registered on the
    /// control planes' cluster-agents; 64 hex (MicroK8s wants at least 32,
    /// `scripts/wrappers/add_token.py`). `HMAC-SHA256(seed, "mk8s-worker/v1 join-token"
    /// | cluster | node [| epoch N])`, then for a `generation` above 0 its 4 bytes
    /// big-endian: never random, so output stays reproducible, and each generation's
    /// (and epoch's) token is new (register-join-tokens.sh never registers a token
    /// that was used).
    pub fn join_token(&self, cluster: &str, node: NodeId<'_>, generation: u32) -> String {
        let suffix = if generation == 0 { Vec::new() } else { generation.to_be_bytes().to_vec() };
        hex::encode(self.node_mac(&["mk8s-worker/v1 join-token", cluster], node, &suffix))
    }

    /// [`Self::mac`] over `head`, the node's name and, above epoch 1, `epoch N`.
    /// Names hold no NUL, so no two (name, epoch) pairs share an input.
    fn node_mac(&self, head: &[&str], node: NodeId<'_>, suffix: &[u8]) -> [u8; 32] {
        let epoch = node.epoch_part();
        let mut parts = head.to_vec();
        parts.push(node.name);
        parts.extend(epoch.as_deref());
        self.mac(&parts, suffix)
    }

    /// HMAC-SHA256 of the seed over NUL-terminated parts, then `suffix`.
    fn mac(&self, parts: &[&str], suffix: &[u8]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.seed).expect("HMAC takes any key length");
        for part in parts {
            mac.update(part.as_bytes());
            mac.update(&[0]);
        }
        mac.update(suffix);
        mac.finalize().into_bytes().into()
    }
}

/// Why `text` must never be echoed, if it looks like secrets: a secrets file (a
/// top-level `token-seed` key) or anything holding a PEM private key.
pub fn looks_secret(text: &str) -> Option<&'static str> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if has_key(text, "token-seed") {
        Some("it looks like a secrets file (it has a `token-seed`)")
    } else if text.contains("-----BEGIN") && text.contains("PRIVATE KEY-----") {
        Some("it holds a private key")
    } else {
        None
    }
}

/// Whether `key` appears as a mapping key anywhere in YAML or JSON text, in any
/// form: top-level or indented, block or flow, quoted or not (`key:`, `"key" :`,
/// `{ 'key': ... }`). Deliberately loose: a false match only refuses a file.
fn has_key(text: &str, key: &str) -> bool {
    text.match_indices(key).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let starts = before.is_none_or(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '{' | ','));
        let after = text[i + key.len()..].trim_start_matches(['"', '\'']).trim_start_matches([' ', '\t']);
        starts && after.starts_with(':')
    })
}

/// `mk8s-gen secrets set-ca-key`: the secrets file's text with `ca-key-file` set
/// (replacing an earlier one). The file must be a valid secrets file without an
/// inline `ca-key`; problems never quote its content.
pub fn with_ca_key_file(text: &str, ca_key_file: &str) -> Result<String, String> {
    Secrets::parse(text)
        .map_err(|r| r.problems.first().map_or_else(|| "it is not a secrets file".into(), |p| p.message.clone()))?;
    let mut raw = read_raw(text).map_err(|_| "it is not a secrets file".to_string())?;
    if raw.ca_key.is_some() {
        return Err("it already holds the CA key inline (`ca-key`); remove that first".into());
    }
    raw.ca_key_file = Some(ca_key_file.to_string());
    Ok(format!("# mk8s-worker secrets: keep this file private (mode 0600), out of version control.\n{}", to_yaml(&raw)))
}

/// The raw secrets, or what is wrong and where, in words that never quote the
/// file's content (serde's messages can quote values).
fn read_raw(text: &str) -> Result<RawSecrets, (&'static str, Option<crate::input::Pos>)> {
    let root = match crate::input::parse(text) {
        Ok(root) => root.unwrap_or_else(crate::input::null),
        Err(e) => return Err(("it is not valid YAML", Some(e.pos))),
    };
    serde_path_to_error::deserialize(&root).map_err(|e| {
        let what = if e.inner().to_string().starts_with("unknown field") {
            "it has an unknown key"
        } else {
            "it is not a secrets file"
        };
        let at = crate::spans::SpanMap::new(Some(root.clone()));
        let path = format!("$.{}", e.path());
        (what, if what == "it has an unknown key" { at.key(&path) } else { at.value(&path) })
    })
}

/// A secrets file's YAML (field order kept, values quoted where YAML 1.1 would
/// misread them).
fn to_yaml(raw: &RawSecrets) -> String {
    crate::yaml::to_string(&serde_json::to_value(raw).unwrap_or_default())
}

/// `mk8s-gen secrets init --out FILE`: 0600 from the first byte, never overwrites.
pub fn init(out: &std::path::Path, ca_key_file: Option<&str>) -> std::io::Result<()> {
    let text = Secrets::generate(ca_key_file)?;
    util::create_new_private(out, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(seed: u8) -> Secrets {
        Secrets::parse(&Secrets::text_for_seed(&[seed; 32], None)).unwrap()
    }

    fn w(name: &str) -> NodeId<'_> {
        NodeId::first(name)
    }

    #[test]
    fn epoch_1_derives_what_was_derived_before_epochs_and_each_later_epoch_anew() {
        let s = secrets(5);
        let mut mac = Hmac::<Sha256>::new_from_slice(&[5u8; 32]).unwrap();
        mac.update(b"mk8s-worker/v1 token\0prod\0kubelet\0worker-1\0");
        assert_eq!(s.token("prod", Identity::Kubelet, w("worker-1")), hex::encode(mac.finalize().into_bytes()));
        let mut mac = Hmac::<Sha256>::new_from_slice(&[5u8; 32]).unwrap();
        mac.update(b"mk8s-worker/v1 key\0prod\0kubelet\0worker-1\0\x03");
        let old: [u8; 32] = mac.finalize().into_bytes().into();
        assert_eq!(s.derive("key", "prod", Identity::Kubelet, w("worker-1"), 3), old);
        let at = |epoch| NodeId { name: "worker-1", epoch };
        let tokens: std::collections::BTreeSet<String> =
            [1, 2, 3, u32::MAX].map(|e| s.token("prod", Identity::Kubelet, at(e))).into_iter().collect();
        assert_eq!(tokens.len(), 4);
        let joins: std::collections::BTreeSet<String> =
            [(1, 0), (2, 0), (1, 2), (2, 2)].map(|(e, g)| s.join_token("prod", at(e), g)).into_iter().collect();
        assert_eq!(joins.len(), 4);
        assert_ne!(s.derive("key", "prod", Identity::Kubelet, at(2), 3), old);
        assert_ne!(
            s.derive("serial", "prod", Identity::Kubelet, at(2), 0),
            s.derive("serial", "prod", Identity::Kubelet, at(1), 0)
        );
    }

    #[test]
    fn tokens_are_deterministic_and_distinct() {
        let s = secrets(7);
        let t = s.token("prod", Identity::Kubelet, w("worker-1"));
        assert_eq!(t, secrets(7).token("prod", Identity::Kubelet, w("worker-1")));
        assert_eq!(t.len(), 64);
        assert!(t.bytes().all(|b| b.is_ascii_hexdigit()));
        let others = [
            s.token("prod", Identity::KubeProxy, w("worker-1")),
            s.token("prod", Identity::Kubelet, w("worker-2")),
            s.token("stage", Identity::Kubelet, w("worker-1")),
            secrets(8).token("prod", Identity::Kubelet, w("worker-1")),
            s.token("prod", Identity::Kubelet, NodeId { name: "worker-1", epoch: 2 }),
        ];
        for o in others {
            assert_ne!(o, t);
        }
    }

    #[test]
    fn each_generation_has_a_join_token_of_its_own() {
        let s = secrets(3);
        // Generation 0 is the derivation without a suffix (tokens made before
        // generations existed stay the same).
        let mut mac = Hmac::<Sha256>::new_from_slice(&[3u8; 32]).unwrap();
        mac.update(b"mk8s-worker/v1 join-token\0prod\0worker-1\0");
        assert_eq!(s.join_token("prod", w("worker-1"), 0), hex::encode(mac.finalize().into_bytes()));
        let all: std::collections::BTreeSet<String> =
            [0, 1, 2, 256, u32::MAX].iter().map(|g| s.join_token("prod", w("worker-1"), *g)).collect();
        assert_eq!(all.len(), 5);
        assert_ne!(s.join_token("prod", w("worker-1"), 1), s.join_token("prod", w("worker-2"), 1));
    }

    #[test]
    fn the_separator_prevents_ambiguous_concatenation() {
        let s = secrets(1);
        assert_ne!(s.token("a", Identity::Kubelet, w("bc")), s.token("ab", Identity::Kubelet, w("c")));
    }

    #[test]
    fn bad_secrets_files_never_echo_their_content() {
        let leaked = "token-seed: c2VjcmV0LXNlY3JldC1zZWNyZXQ=\napi-version: mk8s-worker/v1\nkind: Secrets\n";
        let r = Secrets::parse(leaked).unwrap_err();
        let text = format!("{r:?}");
        assert!(!text.contains("c2VjcmV0"), "{text}");
        let r = Secrets::parse("token-seed: [c2VjcmV0]\nextra: 1\n").unwrap_err();
        assert!(!format!("{r:?}").contains("c2VjcmV0"));
    }

    #[test]
    fn secrets_problems_are_located_without_their_values() {
        let head = "api-version: mk8s-worker/v1\nkind: Secrets\ntoken-seed: c2VjcmV0LXNlY3JldC1zZWNyZXQ=\n";
        for (tail, what, at) in [
            ("token-sed: c2VjcmV0\n", "it has an unknown key", (4, 1)),
            ("token-seed: c2VjcmV0\n", "it is not valid YAML", (4, 1)),
            ("ca-key: [c2VjcmV0]\n", "it is not a secrets file", (4, 9)),
        ] {
            let r = Secrets::parse(&format!("{head}{tail}")).unwrap_err();
            let p = &r.problems[0];
            assert_eq!(
                (p.message.as_str(), p.line, p.column),
                (format!("cannot read the secrets file: {what}").as_str(), Some(at.0), Some(at.1)),
                "{tail}"
            );
            assert!(!format!("{r:?}").contains("c2Vj"), "{tail}");
        }
    }
}
