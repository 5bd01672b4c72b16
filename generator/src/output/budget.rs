//! User-data size limits of the platforms workers boot on, checked when generating
//! so an oversized document fails here, with the way out, instead of at boot.
//! Sources are the platforms' documentation, named per entry.

use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    Aws,
    Gcp,
    Azure,
    Openstack,
    Digitalocean,
    Hetzner,
    Vsphere,
    Nocloud,
    BareMetal,
}

pub struct Limit {
    /// Bytes of user-data as the platform counts them; None: no limit.
    pub bytes: Option<usize>,
    /// Whether the platform passes gzip-compressed user-data through intact.
    pub gzip_ok: bool,
    pub what: &'static str,
}

impl Target {
    pub fn limit(self) -> Limit {
        match self {
            // EC2 User Guide, "Instance user data": 16 KB, in raw form, before base64.
            Target::Aws => Limit { bytes: Some(16_384), gzip_ok: true, what: "EC2 user data (raw, before base64)" },
            // Compute Engine, "About VM metadata": 256 KB per metadata value.
            Target::Gcp => Limit { bytes: Some(262_144), gzip_ok: true, what: "a GCE metadata value (user-data)" },
            // Azure, "Custom data and cloud-init": custom data up to 64 KB.
            Target::Azure => Limit { bytes: Some(65_535), gzip_ok: true, what: "Azure custom data" },
            // OpenStack Nova: user_data is a mediumtext column limited to 65535 bytes.
            Target::Openstack => Limit { bytes: Some(65_535), gzip_ok: true, what: "Nova user_data" },
            // DigitalOcean, "Droplet user data": 64 KiB; the metadata service
            // does not pass gzip through.
            Target::Digitalocean => Limit { bytes: Some(65_536), gzip_ok: false, what: "Droplet user data" },
            // Hetzner Cloud API, create server: user_data up to 32 KiB.
            Target::Hetzner => Limit { bytes: Some(32_768), gzip_ok: true, what: "Hetzner Cloud user_data" },
            // VMware guestinfo (cloud-init VMware datasource): 64 KiB per key.
            Target::Vsphere => Limit { bytes: Some(65_536), gzip_ok: true, what: "a vSphere guestinfo key" },
            Target::Nocloud | Target::BareMetal => Limit { bytes: None, gzip_ok: true, what: "NoCloud / bare metal" },
        }
    }

    pub fn name(self) -> String {
        self.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default()
    }
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Check a document of `size` bytes (`gzipped`: its size compressed, when known
/// and not already applied) against the target. The error says the size, the limit
/// and the ways out.
pub fn check(
    target: Target,
    node: &str,
    size: usize,
    compressed: bool,
    gzipped: Option<usize>,
    embedded: bool,
) -> Result<(), String> {
    let limit = target.limit();
    if compressed && !limit.gzip_ok {
        return Err(format!("{} does not pass gzip-compressed user-data through intact; drop --gzip", target.name()));
    }
    let Some(max) = limit.bytes else { return Ok(()) };
    if size <= max {
        return Ok(());
    }
    let mut ways = Vec::new();
    if embedded {
        ways.push("fetch the bootstrap at boot (--bootstrap-url URL --bootstrap-sha256 HEX) or pre-install it in the image (--bootstrap-preinstalled), which leaves about 15 KB".to_string());
    }
    if let (false, true, Some(gz)) = (compressed, limit.gzip_ok, gzipped) {
        let fits = if gz <= max { "fits" } else { "does not fit either" };
        ways.push(format!("compress it (--gzip: {} bytes, {fits})", thousands(gz)));
    }
    if ways.is_empty() {
        ways.push("use a target with a larger limit, or bake more into the image".into());
    }
    Err(format!(
        "user-data for {node} is {} bytes, over the {}-byte limit of {} ({}); ways out: {}",
        thousands(size),
        thousands(max),
        target.name(),
        limit.what,
        ways.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_of_every_limit() {
        for t in Target::value_variants() {
            let Some(max) = t.limit().bytes else {
                assert!(check(*t, "n", usize::MAX / 2, false, None, false).is_ok());
                continue;
            };
            assert!(check(*t, "n", max, false, None, false).is_ok(), "{t:?} at its limit");
            let err = check(*t, "n", max + 1, false, Some(max / 2), true).unwrap_err();
            assert!(err.contains(&thousands(max + 1)) && err.contains(&thousands(max)), "{err}");
            assert!(err.contains("--bootstrap-url"), "{err}");
            assert_eq!(err.contains("--gzip"), t.limit().gzip_ok, "{err}");
        }
        assert!(check(Target::Digitalocean, "n", 10, true, None, false).unwrap_err().contains("drop --gzip"));
        assert_eq!(thousands(1_364_447), "1,364,447");
        assert_eq!(thousands(999), "999");
    }
}
