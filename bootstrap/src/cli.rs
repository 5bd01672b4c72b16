//! Command line. Parsed by hand: the binary is embedded in user-data, and a full
//! argument parser costs more bytes than these six flags are worth.

use crate::node::Node;
use crate::plan::PLAN_PATH;

pub const HELP: &str = "\
mk8s-bootstrap: join this machine to a MicroK8s cluster as a worker-only node,
following the JoinPlan written by mk8s-gen.

Usage: mk8s-bootstrap [--plan FILE] [--root DIR] [--systemctl PROG] [--snap PROG]
                      [--curl PROG] [--tar PROG] [--microk8s PROG]

Options:
  --plan FILE       the JoinPlan (default /etc/mk8s-worker/plan.json, under --root)
  --root DIR        resolve every node path under DIR (default /)
  --systemctl PROG  program used as systemctl (default systemctl)
  --snap PROG       program used as snap (default snap)
  --curl PROG       program used to download the load balancer (default curl)
  --tar PROG        program used to unpack it (default tar)
  --microk8s PROG   program used as microk8s, for `auth: microk8s-join`
                    (default /snap/bin/microk8s: systemd's PATH has no /snap/bin)
  -h, --help        this text
  -V, --version     the version

Exit codes:
  0   joined (or already joined: a second run changes nothing)
  75  retryable failure (systemd restarts the unit)
  78  bad plan or rejected credentials (no restart: fix the input)
  64  usage error

Status: /var/lib/mk8s-worker/status.json; completion stamp /var/lib/mk8s-worker/joined.
";

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Run { node: NodeArgs, plan: String },
    Help,
    Version,
}

#[derive(Debug, PartialEq, Eq)]
pub struct NodeArgs {
    pub root: String,
    pub systemctl: String,
    pub snap: String,
    pub curl: String,
    pub tar: String,
    pub microk8s: String,
}

impl NodeArgs {
    pub fn node(&self) -> Node {
        Node {
            root: self.root.clone().into(),
            systemctl: self.systemctl.clone(),
            snap: self.snap.clone(),
            curl: self.curl.clone(),
            tar: self.tar.clone(),
            microk8s: self.microk8s.clone(),
        }
    }
}

pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut node = NodeArgs {
        root: "/".into(),
        systemctl: "systemctl".into(),
        snap: "snap".into(),
        curl: "curl".into(),
        tar: "tar".into(),
        microk8s: "/snap/bin/microk8s".into(),
    };
    let mut plan = PLAN_PATH.to_string();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let slot = match flag.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "-V" | "--version" => return Ok(Parsed::Version),
            "--plan" => &mut plan,
            "--root" => &mut node.root,
            "--systemctl" => &mut node.systemctl,
            "--snap" => &mut node.snap,
            "--curl" => &mut node.curl,
            "--tar" => &mut node.tar,
            "--microk8s" => &mut node.microk8s,
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        };
        let value = match inline {
            Some(v) => v,
            None => it.next().ok_or_else(|| format!("{flag} needs a value"))?,
        };
        if value.is_empty() {
            return Err(format!("{flag} needs a non-empty value"));
        }
        *slot = value;
    }
    Ok(Parsed::Run { node, plan })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Parsed, String> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn defaults_and_overrides() {
        let Parsed::Run { node, plan } = p(&[]).unwrap() else { panic!() };
        assert_eq!((node.root.as_str(), node.systemctl.as_str(), plan.as_str()), ("/", "systemctl", PLAN_PATH));
        let Parsed::Run { node, plan } = p(&["--root", "/tmp/r", "--snap=/x/snap", "--plan", "/p.json"]).unwrap()
        else {
            panic!()
        };
        assert_eq!((node.root.as_str(), node.snap.as_str(), plan.as_str()), ("/tmp/r", "/x/snap", "/p.json"));
        let Parsed::Run { node, .. } = p(&["--microk8s", "/m/microk8s"]).unwrap() else { panic!() };
        assert_eq!(node.microk8s, "/m/microk8s");
        let Parsed::Run { node, .. } = p(&[]).unwrap() else { panic!() };
        assert_eq!(node.microk8s, "/snap/bin/microk8s");
    }

    #[test]
    fn usage_errors() {
        assert!(p(&["--root"]).unwrap_err().contains("needs a value"));
        assert!(p(&["--bogus"]).unwrap_err().contains("unknown argument"));
        assert!(p(&["--root="]).unwrap_err().contains("non-empty"));
        assert_eq!(p(&["-h"]).unwrap(), Parsed::Help);
        assert!(HELP.contains("75") && HELP.contains("78"));
    }
}
