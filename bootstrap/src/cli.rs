//! Command line. Parsed by hand: the binary is embedded in user-data, and a full
//! argument parser costs more bytes than these flags are worth. Three modes: the
//! join (no subcommand), `balance`, the node-local apiserver balancer, and
//! `leave`, which undoes the join on a worker being retired.

use std::time::Duration;

use crate::balance::config::{duration, Tuning};
use crate::balance::Args as BalanceArgs;
use crate::leave::Args as LeaveArgs;
use crate::node::Node;
use crate::plan::PLAN_PATH;

pub const HELP: &str = "\
mk8s-bootstrap: join this machine to a MicroK8s cluster as a worker-only node,
following the JoinPlan written by mk8s-gen.

Usage: mk8s-bootstrap [--plan FILE] [--root DIR] [--systemctl PROG] [--snap PROG]
                      [--curl PROG] [--tar PROG] [--microk8s PROG]
       mk8s-bootstrap balance --config FILE --ca FILE [tuning]
                      the node-local apiserver balancer instead (its own
                      options: mk8s-bootstrap balance --help)
       mk8s-bootstrap maintain [--repair] [options]
                      check (and repair) a joined worker against its plan
                      (mk8s-bootstrap maintain --help)
       mk8s-bootstrap leave [--purge] [--root DIR] [--systemctl PROG] [--snap PROG]
                      undo the join on a worker being retired (its own
                      options: mk8s-bootstrap leave --help)

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

pub const BALANCE_HELP: &str = "\
mk8s-bootstrap balance: the node-local apiserver balancer. TLS passthrough from
the entry point to the control plane, with failover on the first connection,
passive failure detection and rare active checks. Reads the traefik-style files
mk8s-gen writes (JSON after `#` comment lines); never reads the JoinPlan.

Usage: mk8s-bootstrap balance --config FILE --ca FILE [tuning]

Options:
  --config FILE               traefik.yaml: entryPoints.apiserver.address and
                              providers.file.filename (the provider file, whose
                              servers, healthCheck and dialTimeout are used and
                              reloaded when it changes)
  --ca FILE                   the cluster CA (PEM); a check needs a certificate
                              chaining to it
  -h, --help                  this text

Tuning (durations: 500ms, 2s, 5m; the first three override the provider file):
  --check-interval D          mean time between sweep checks (file, else 300s)
  --check-timeout D           a check's timeout (file, else 1s)
  --dial-timeout D            dial timeout (file's dialTimeout, else 1s)
  --first-byte-timeout D      wait for a backend's first byte while another
                              backend in rotation remains (1s)
  --last-timeout D            the same for the last one in rotation (30s)
  --backoff-base D            first back-off of a benched backend (500ms)
  --backoff-cap D             longest back-off (120s)
  --stall D                   bytes sent, nothing back for D: probe (5s; 0s: off)
  --suspect-gap D             at most one suspect probe per backend per D (5s)
  --reload-interval D         how often the provider file is looked at (2s)
  --max-connections N         clients served at once (1024)

Checks: TLS verified against --ca (chain and serverAuth, not the name), then an
anonymous GET /readyz; 200 or 401 is healthy (401: MicroK8s's AlwaysAllow default
refuses anonymous requests, which still proves an apiserver of this cluster).

Exit codes (it runs until stopped):
  75  cannot listen (systemd restarts the unit)
  78  unusable --config, provider file or --ca
  64  usage error
";

pub const MAINTAIN_HELP: &str = "\
mk8s-bootstrap maintain: check that this joined node is still the worker its
JoinPlan made, report the verdict, and with --repair put back what drifted.

Usage: mk8s-bootstrap maintain [--repair] [--plan FILE] [--root DIR]
                               [--systemctl PROG] [--snap PROG]

Options:
  --repair          restore what drifted and is ours (locks, control-plane
                    services off, the plan's lines in args/kubelet and
                    args/kube-proxy, the balancer's files, the kubeconfigs'
                    server, the post-refresh hook); kubelite (or kubelet and
                    kube-proxy) restarts only when something it reads changed,
                    the balancer only when one of its files did
  --plan FILE       the JoinPlan (default /etc/mk8s-worker/plan.json, under --root)
  --root DIR        resolve every node path under DIR (default /)
  --systemctl PROG  program used as systemctl (default systemctl)
  --snap PROG       program used as snap (default snap)
  -h, --help        this text (nothing is checked)

Checks, by the names the status file and the drift annotation use:
  locks, control-plane-off, args, balancer-files, kubeconfig-server, ca-pin,
  refresh-hook, certificate-expiry (less than a tenth of its lifetime, at most
  30 days, left). ca-pin and certificate-expiry are reported, never repaired.

kube-proxy's certificate (auth: x509; every run, --repair or not): with less
than 30% of its lifetime left, a new key is made here and a
kubernetes.io/kube-apiserver-client request for CN=system:kube-proxy filed with
the kubelet's credential; once approved (mk8s-ctl approve) and signed it goes
into credentials/proxy.config and kube-proxy restarts. Pending: nothing changes
(proxyRenewal in the status file), the next run asks again. Denied or failed:
the drift kube-proxy-renewal.

Upgrades (mk8s-ctl upgrade asks): when the answer to the report carries
mk8s-worker.io/desired-channel and MicroK8s tracks another channel, every
control plane's /version is read at its own endpoint; within the skew policy
(one minor up at a time, the kubelet never newer than any kube-apiserver nor
more than three minors older) MicroK8s is refreshed to it through snapd, what
the refresh undid is repaired (with or without --repair), and the node reports
again. Otherwise nothing is refreshed and the drift is upgrade.

Report: /var/lib/mk8s-worker/maintain.json, and the annotations
mk8s-worker.io/{plan-sha256,agent-version,client-not-after,serving-not-after,
proxy-not-after,drift,checked-at,observed-channel,upgrade} on this node's Node,
written with the kubelet's credential through the node-local balancer.

Exit codes:
  0   no drift (or every drift repaired), reported
  3   drift found and not repaired, or an upgrade refused or failed (see the
      status file)
  75  no drift, but the report did not reach the apiserver (retryable)
  78  no usable plan, or the apiserver refused the report (401/403)
  64  usage error
A node that has not joined with this plan is not checked (exit 0).
";

pub const LEAVE_HELP: &str = "\
mk8s-bootstrap leave: undo, on a worker being retired, what the join did. Run it
instead of `microk8s leave`, which takes these workers for control planes.

Usage: mk8s-bootstrap leave [--purge] [--root DIR] [--systemctl PROG] [--snap PROG]

It stops, disables and removes our units (the maintain timer and service,
mk8s-bootstrap.service and the balancer's), stops and disables MicroK8s's services (snap stop --disable),
puts the files of the snap's data directory the join changed back as the snap
had them (the undo journal in /var/lib/mk8s-worker/undo; without it, from the
plan), disables the snap (snap disable: no service, hook or refresh until
`snap enable microk8s`), and removes our files: /etc/mk8s-worker/ (the plan),
/etc/microk8s.yaml, /var/lib/mk8s-worker/, the Cluster API stamp, our
post-refresh hook, a balancer or agent we downloaded. The plan may be gone: the well-known paths still say what
to undo. It never runs MicroK8s's leave, dqlite or the cluster-agent, and never
talks to the apiserver: the Node object and this worker's credentials are
retired from the control plane by the operator (docs/day2.md).

Options:
  --purge           also remove MicroK8s and all its data (snap remove --purge
                    microk8s: no snapshot is kept)
  --root DIR        resolve every node path under DIR (default /)
  --systemctl PROG  program used as systemctl (default systemctl)
  --snap PROG       program used as snap (default snap)
  -h, --help        this text (nothing is changed)

Exit codes:
  0   left, or nothing of ours was here (a second run changes nothing)
  75  a step failed; the others were done: run it again
  64  usage error
";

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Run { node: NodeArgs, plan: String },
    Help,
    Version,
    Balance(BalanceArgs),
    BalanceHelp,
    Maintain { node: NodeArgs, plan: String, repair: bool },
    MaintainHelp,
    Leave { node: NodeArgs, args: LeaveArgs },
    LeaveHelp,
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

impl Default for NodeArgs {
    fn default() -> Self {
        NodeArgs {
            root: "/".into(),
            systemctl: "systemctl".into(),
            snap: "snap".into(),
            curl: "curl".into(),
            tar: "tar".into(),
            microk8s: "/snap/bin/microk8s".into(),
        }
    }
}

pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut node = NodeArgs::default();
    let mut plan = PLAN_PATH.to_string();
    let mut it = args.into_iter().peekable();
    if it.peek().is_some_and(|a| a == "balance") {
        it.next();
        return parse_balance(it);
    }
    if it.peek().is_some_and(|a| a == "maintain") {
        it.next();
        return parse_maintain(it, node, plan);
    }
    if it.peek().is_some_and(|a| a == "leave") {
        it.next();
        return parse_leave(it);
    }
    while let Some(a) = it.next() {
        let (flag, inline) = split_flag(&a);
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
        *slot = value_of(&flag, inline, &mut it)?;
    }
    Ok(Parsed::Run { node, plan })
}

/// `maintain [flags]`: the join's node options but the download tools, and `--repair`.
fn parse_maintain(
    mut it: impl Iterator<Item = String>,
    mut node: NodeArgs,
    mut plan: String,
) -> Result<Parsed, String> {
    let mut repair = false;
    while let Some(a) = it.next() {
        let (flag, inline) = split_flag(&a);
        let slot = match flag.as_str() {
            "-h" | "--help" => return Ok(Parsed::MaintainHelp),
            "--repair" if inline.is_none() => {
                repair = true;
                continue;
            }
            "--plan" => &mut plan,
            "--root" => &mut node.root,
            "--systemctl" => &mut node.systemctl,
            "--snap" => &mut node.snap,
            other => return Err(format!("unknown argument {other:?} to maintain (see maintain --help)")),
        };
        *slot = value_of(&flag, inline, &mut it)?;
    }
    Ok(Parsed::Maintain { node, plan, repair })
}

/// `leave [--purge] [--root DIR] [--systemctl PROG] [--snap PROG]`; `--help`
/// anywhere wins, so it never does the real thing.
fn parse_leave(it: impl Iterator<Item = String>) -> Result<Parsed, String> {
    let args: Vec<String> = it.collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        return Ok(Parsed::LeaveHelp);
    }
    let (mut node, mut purge) = (NodeArgs::default(), false);
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let (flag, inline) = split_flag(&a);
        let slot = match flag.as_str() {
            "--purge" if inline.is_none() => {
                purge = true;
                continue;
            }
            "--root" => &mut node.root,
            "--systemctl" => &mut node.systemctl,
            "--snap" => &mut node.snap,
            other => return Err(format!("unknown argument {other:?} to leave (see leave --help)")),
        };
        *slot = value_of(&flag, inline, &mut it)?;
    }
    Ok(Parsed::Leave { node, args: LeaveArgs { purge } })
}

/// `--flag=value` as (`--flag`, Some(value)); anything else as itself.
fn split_flag(a: &str) -> (String, Option<String>) {
    match a.split_once('=') {
        Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
        _ => (a.to_string(), None),
    }
}

/// A flag's value: inline, else the next argument; never empty.
fn value_of(flag: &str, inline: Option<String>, it: &mut impl Iterator<Item = String>) -> Result<String, String> {
    let value = match inline {
        Some(v) => v,
        None => it.next().ok_or_else(|| format!("{flag} needs a value"))?,
    };
    if value.is_empty() {
        return Err(format!("{flag} needs a non-empty value"));
    }
    Ok(value)
}

/// The balancer's duration flags and where each goes.
const BALANCE_DURATIONS: &[&str] = &[
    "--check-interval",
    "--check-timeout",
    "--dial-timeout",
    "--first-byte-timeout",
    "--last-timeout",
    "--backoff-base",
    "--backoff-cap",
    "--stall",
    "--suspect-gap",
    "--reload-interval",
];

fn set_duration(t: &mut Tuning, flag: &str, d: Duration) {
    match flag {
        "--check-interval" => t.check_interval = Some(d),
        "--check-timeout" => t.check_timeout = Some(d),
        "--dial-timeout" => t.dial_timeout = Some(d),
        "--first-byte-timeout" => t.first_byte = d,
        "--last-timeout" => t.last_wait = d,
        "--backoff-base" => t.backoff_base = d,
        "--backoff-cap" => t.backoff_cap = d,
        "--stall" => t.stall = d,
        "--suspect-gap" => t.suspect_gap = d,
        _ => t.reload_every = d,
    }
}

/// `balance [flags]`.
fn parse_balance(mut it: impl Iterator<Item = String>) -> Result<Parsed, String> {
    let (mut config, mut ca, mut tuning) = (None, None, Tuning::default());
    while let Some(a) = it.next() {
        let (flag, inline) = split_flag(&a);
        match flag.as_str() {
            "-h" | "--help" => return Ok(Parsed::BalanceHelp),
            "--config" => config = Some(value_of(&flag, inline, &mut it)?.into()),
            "--ca" => ca = Some(value_of(&flag, inline, &mut it)?.into()),
            "--max-connections" => {
                let v = value_of(&flag, inline, &mut it)?;
                tuning.max_conns = v.parse().ok().filter(|n| *n > 0).ok_or(format!("{flag}: {v:?} is not a count"))?;
            }
            f if BALANCE_DURATIONS.contains(&f) => {
                let v = value_of(&flag, inline, &mut it)?;
                let d = duration(&v).ok_or(format!("{flag}: {v:?} is not a duration such as 500ms, 2s or 5m"))?;
                if d.is_zero() && !matches!(f, "--stall" | "--suspect-gap") {
                    return Err(format!("{flag} must be longer than 0"));
                }
                set_duration(&mut tuning, f, d);
            }
            other => return Err(format!("unknown argument {other:?} to balance (see balance --help)")),
        }
    }
    if tuning.backoff_cap < tuning.backoff_base {
        return Err("--backoff-cap must be at least --backoff-base".into());
    }
    let config = config.ok_or("balance needs --config FILE (traefik.yaml)")?;
    let ca = ca.ok_or("balance needs --ca FILE (the cluster CA)")?;
    Ok(Parsed::Balance(BalanceArgs { config, ca, tuning }))
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

    #[test]
    fn balance_flags() {
        let Parsed::Balance(a) = p(&["balance", "--config", "/t.yaml", "--ca=/ca.crt"]).unwrap() else { panic!() };
        assert_eq!((a.config.to_str(), a.ca.to_str()), (Some("/t.yaml"), Some("/ca.crt")));
        assert_eq!(a.tuning, Tuning::default());
        let all = [
            "balance",
            "--config",
            "c",
            "--ca",
            "a",
            "--check-interval",
            "2s",
            "--check-timeout=300ms",
            "--dial-timeout",
            "250ms",
            "--first-byte-timeout",
            "400ms",
            "--last-timeout",
            "3s",
            "--backoff-base",
            "100ms",
            "--backoff-cap",
            "2s",
            "--stall",
            "0s",
            "--suspect-gap",
            "1s",
            "--reload-interval",
            "200ms",
            "--max-connections",
            "10",
        ];
        let Parsed::Balance(a) = p(&all).unwrap() else { panic!() };
        let ms = Duration::from_millis;
        let t = a.tuning;
        assert_eq!((t.check_interval, t.check_timeout, t.dial_timeout), (Some(ms(2000)), Some(ms(300)), Some(ms(250))));
        assert_eq!((t.first_byte, t.last_wait, t.backoff_base, t.backoff_cap), (ms(400), ms(3000), ms(100), ms(2000)));
        assert_eq!((t.stall, t.suspect_gap, t.reload_every, t.max_conns), (ms(0), ms(1000), ms(200), 10));
        assert_eq!(p(&["balance", "--help", "--bogus"]).unwrap(), Parsed::BalanceHelp);
        assert_eq!(p(&["balance", "-h"]).unwrap(), Parsed::BalanceHelp);
        assert!(p(&["--plan", "balance"]).is_ok(), "only the first argument names the mode");
    }

    #[test]
    fn maintain_flags() {
        let Parsed::Maintain { node, plan, repair } = p(&["maintain"]).unwrap() else { panic!() };
        assert_eq!((node.root.as_str(), plan.as_str(), repair), ("/", PLAN_PATH, false));
        let Parsed::Maintain { node, plan, repair } =
            p(&["maintain", "--repair", "--root=/r", "--systemctl", "/s", "--snap", "/n", "--plan", "/p"]).unwrap()
        else {
            panic!()
        };
        assert_eq!((node.root.as_str(), node.systemctl.as_str(), node.snap.as_str()), ("/r", "/s", "/n"));
        assert_eq!((plan.as_str(), repair), ("/p", true));
        assert_eq!(p(&["maintain", "--repair", "--help"]).unwrap(), Parsed::MaintainHelp);
        assert!(p(&["maintain", "--curl", "c"]).unwrap_err().contains("unknown argument \"--curl\" to maintain"));
        assert!(p(&["maintain", "--repair=yes"]).unwrap_err().contains("unknown argument"));
        assert!(p(&["maintain", "--root"]).unwrap_err().contains("needs a value"));
        assert!(p(&["--root", "/r", "maintain"]).is_err(), "only the first argument names the mode");
        for code in ["  0 ", "  3 ", "  75 ", "  78 "] {
            assert!(MAINTAIN_HELP.contains(code), "{code}");
        }
        for check in crate::maintain::checks::CHECKS {
            assert!(MAINTAIN_HELP.contains(check.name), "{} is documented", check.name);
        }
        assert!(MAINTAIN_HELP.contains(crate::maintain::RENEWAL_CHECK));
        assert!(HELP.contains("maintain --help"));
    }

    #[test]
    fn leave_flags() {
        let Parsed::Leave { node, args } = p(&["leave"]).unwrap() else { panic!() };
        assert_eq!((node.root.as_str(), node.snap.as_str(), args.purge), ("/", "snap", false));
        let Parsed::Leave { node, args } =
            p(&["leave", "--purge", "--root", "/r", "--systemctl=/s/systemctl", "--snap", "/s/snap"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (node.root.as_str(), node.systemctl.as_str(), node.snap.as_str()),
            ("/r", "/s/systemctl", "/s/snap")
        );
        assert!(args.purge);
        // --help wins wherever it is, even after flags that would act.
        assert_eq!(p(&["leave", "--purge", "--help"]).unwrap(), Parsed::LeaveHelp);
        assert_eq!(p(&["leave", "--bogus", "-h"]).unwrap(), Parsed::LeaveHelp);
        assert!(p(&["leave", "--plan", "p"]).unwrap_err().contains("unknown argument \"--plan\" to leave"));
        assert!(p(&["leave", "--purge=yes"]).unwrap_err().contains("unknown argument"));
        assert!(p(&["leave", "--root"]).unwrap_err().contains("needs a value"));
        assert!(p(&["--root", "/r", "leave"]).unwrap_err().contains("unknown argument \"leave\""));
        for needle in ["--purge", "75", "64", "microk8s leave", "snap disable", "docs/day2.md"] {
            assert!(LEAVE_HELP.contains(needle), "{needle}");
        }
        assert!(HELP.contains("mk8s-bootstrap leave"));
    }

    #[test]
    fn balance_usage_errors() {
        let err = |args: &[&str]| p(args).unwrap_err();
        assert!(err(&["balance", "--ca", "a"]).contains("needs --config"));
        assert!(err(&["balance", "--config", "c"]).contains("needs --ca"));
        assert!(err(&["balance", "--config", "c", "--ca", "a", "--plan", "p"]).contains("unknown argument \"--plan\""));
        assert!(err(&["balance", "--stall", "5"]).contains("needs --config"), "bare seconds are a duration");
        assert!(err(&["balance", "--dial-timeout", "fast"]).contains("not a duration"));
        assert!(err(&["balance", "--dial-timeout", "0s"]).contains("longer than 0"));
        assert!(err(&["balance", "--max-connections", "0"]).contains("not a count"));
        assert!(err(&["balance", "--backoff-cap", "100ms", "--config", "c", "--ca", "a"]).contains("at least"));
        assert!(err(&["balance", "--config"]).contains("needs a value"));
        assert!(
            BALANCE_HELP.contains("75") && BALANCE_HELP.contains("401") && BALANCE_HELP.contains("--max-connections")
        );
        for f in BALANCE_DURATIONS {
            assert!(BALANCE_HELP.contains(f), "{f} is documented");
        }
    }
}
