//! The same node output as an Ignition config (spec 3.3.0, the newest Debian's
//! `ignition-validate` 2.14 accepts): files with decimal modes, inline data URLs,
//! gzip where it makes the config smaller, and a `sha256-` verification hash of
//! every file (over the decompressed content, as the spec defines it); units as
//! `systemd.units`, the bootstrap's enabled. With `--baked` the unit file is in the
//! image already: the config enables it by name, without contents.

use std::io::Read;

use base64::Engine as _;
use serde::Serialize;

use crate::files::MAINTAIN_TIMER;
use crate::render::{FileContent, NodeOutput, BOOTSTRAP_UNIT, UNIT_DIR};

pub const SPEC_VERSION: &str = "3.3.0";

#[derive(Serialize)]
struct Config {
    ignition: Meta,
    storage: Storage,
    systemd: Systemd,
}

#[derive(Serialize)]
struct Meta {
    version: &'static str,
}

#[derive(Serialize)]
struct Storage {
    files: Vec<File>,
}

#[derive(Serialize)]
struct File {
    path: String,
    mode: u32,
    overwrite: bool,
    user: Owner,
    group: Owner,
    contents: Contents,
}

#[derive(Serialize)]
struct Owner {
    name: &'static str,
}

#[derive(Serialize)]
struct Contents {
    source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    compression: Option<&'static str>,
    verification: Verification,
}

#[derive(Serialize)]
struct Verification {
    hash: String,
}

#[derive(Serialize)]
struct Systemd {
    units: Vec<Unit>,
}

#[derive(Serialize)]
struct Unit {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    /// None: the unit is in the image (baked); Ignition only enables it.
    #[serde(skip_serializing_if = "Option::is_none")]
    contents: Option<String>,
}

fn data_url(bytes: &[u8]) -> String {
    format!("data:;base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Why a node output cannot be expressed as Ignition.
pub fn unsupported(out: &NodeOutput) -> Option<String> {
    (!out.packages.is_empty()).then(|| {
        format!(
            "this node needs distribution packages ({}), which Ignition cannot install; use `kind: traefik` for Ignition targets",
            out.packages.join(", ")
        )
    })
}

/// The Ignition config (pretty JSON, trailing newline).
pub fn config(out: &NodeOutput) -> anyhow::Result<String> {
    if let Some(why) = unsupported(out) {
        anyhow::bail!(why);
    }
    let mut files = Vec::new();
    let mut units = Vec::new();
    for f in &out.files {
        if let (Some(name), FileContent::Text(text)) = (f.path.strip_prefix(&format!("{UNIT_DIR}/")), &f.content) {
            let enabled = (name == BOOTSTRAP_UNIT || name == MAINTAIN_TIMER).then_some(true);
            units.push(Unit { name: name.to_string(), enabled, contents: Some(text.clone()) });
            continue;
        }
        let (plain, gz): (Vec<u8>, Option<Vec<u8>>) = match &f.content {
            FileContent::Text(t) => {
                let gz = crate::render::gzip(t.as_bytes());
                let smaller = gz.len() + 64 < t.len();
                (t.as_bytes().to_vec(), smaller.then_some(gz))
            }
            FileContent::GzipBase64(b) => {
                let gz = base64::engine::general_purpose::STANDARD.decode(b.as_bytes())?;
                let mut plain = Vec::new();
                flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut plain)?;
                (plain, Some(gz))
            }
        };
        let hash = format!("sha256-{}", mk8s_bootstrap::plan::sha256_hex(&plain));
        let (source, compression) = match &gz {
            Some(gz) => (data_url(gz), Some("gzip")),
            None => (data_url(&plain), None),
        };
        files.push(File {
            path: f.path.clone(),
            mode: f.mode,
            overwrite: true,
            user: Owner { name: "root" },
            group: Owner { name: "root" },
            contents: Contents { source, compression, verification: Verification { hash } },
        });
    }
    if !units.iter().any(|u| u.name == BOOTSTRAP_UNIT) {
        // Baked: `mk8s-gen packer` put the unit file in the image. Nothing else
        // would start it (Ignition has no `runcmd`), so enable it by name.
        units.push(Unit { name: BOOTSTRAP_UNIT.to_string(), enabled: Some(true), contents: None });
    }
    if !units.iter().any(|u| u.name == MAINTAIN_TIMER) {
        units.push(Unit { name: MAINTAIN_TIMER.to_string(), enabled: Some(true), contents: None });
    }
    let cfg =
        Config { ignition: Meta { version: SPEC_VERSION }, storage: Storage { files }, systemd: Systemd { units } };
    let mut text = serde_json::to_string_pretty(&cfg)?;
    text.push('\n');
    Ok(text)
}
