//! Command line: parse with clap, read the facts (and secrets) exactly as
//! `mk8s-gen` does, through its library, then talk to the cluster.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use mk8s_gen::cli::{load_facts, load_secrets, CommonArgs, Failure, Io};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::approve::{Approver, Settings};
use crate::audit::AuditLog;

pub const EXIT_OK: u8 = 0;
pub const EXIT_INVALID: u8 = 1;
pub const EXIT_USAGE_IO: u8 = 2;
pub const EXIT_ATTENTION: u8 = 3;
pub const EXIT_STOPPED: u8 = 4;

const AFTER_HELP: &str = "\
Exit codes:
  0  success (status: nothing needs attention)
  1  invalid input (the facts or the secrets; every problem is listed)
  2  usage, I/O or API error (the kubeconfig, the cluster, the audit log)
  3  status only: something needs attention (a worker not joined, not Ready, at
     another version, with another plan, drift or a certificate ending within 30
     days; a Node the facts do not know; a retired worker's Node still there)
  3  upgrade: every batch ran, but some worker failed (within --max-failures)
  4  retire: stopped before deleting the Node (pods that need --force or
     --delete-emptydir-data, a disruption budget that held an eviction back past
     --timeout, evicted pods still running); upgrade: refused before anything
     changed (the skew policy), or more failures than --max-failures; run it
     again once resolved

Examples:
  mk8s-ctl status --cluster cluster.yaml --secrets secrets.yaml
  mk8s-ctl status --cluster cluster.yaml --json
  mk8s-ctl approve --cluster cluster.yaml --watch --audit /var/log/mk8s-approve.jsonl
  mk8s-ctl retire --cluster cluster.yaml --node worker-7 --dry-run
  mk8s-ctl upgrade --cluster cluster.yaml --to 1.31/stable --batch 5 --max-failures 1";

/// The operator's online tool for a fleet of worker-only MicroK8s nodes.
#[derive(Debug, Parser)]
#[command(name = "mk8s-ctl", version, about, after_help = AFTER_HELP, help_expected = true)]
pub struct Cli {
    /// The kubeconfig to use (else $KUBECONFIG, else ~/.kube/config, else the
    /// in-cluster service account).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every worker of the facts beside its Node (joined, Ready, version, plan,
    /// certificate ends, drift), and the Nodes the facts do not know. Reads Nodes
    /// only (one paged LIST).
    #[command(after_help = AFTER_HELP, override_usage = "mk8s-ctl status --cluster FILE [--secrets FILE] [--json] [OPTIONS]")]
    Status(StatusArgs),
    /// Approve pending kubelet serving-certificate requests of workers in the facts
    /// whose names are theirs; deny every other from a node; leave the rest.
    #[command(after_help = AFTER_HELP, override_usage = "mk8s-ctl approve --cluster FILE [--once | --watch] [--dry-run] --audit FILE [OPTIONS]")]
    Approve(ApproveArgs),
    /// Take a worker the facts mark `retired: true` out of the cluster: cordon,
    /// drain through the Eviction API (disruption budgets honoured), delete the
    /// Node, refuse its identity's writes (1.30+), and print what revokes its
    /// credentials on the control plane. Needs nothing of the machine.
    #[command(after_help = AFTER_HELP, override_usage = "mk8s-ctl retire --cluster FILE --node NAME [--dry-run] [--timeout 10m] [--force] [--delete-emptydir-data] [OPTIONS]")]
    Retire(RetireArgs),
    /// Upgrade the facts' workers to another MicroK8s channel, in batches: check
    /// every control plane's version and every worker's channel against the skew
    /// policy, then per worker cordon, drain, ask its maintain to refresh, wait
    /// until it reports the target Ready, uncordon. Resumable.
    #[command(after_help = AFTER_HELP, override_usage = "mk8s-ctl upgrade --cluster FILE --to CHANNEL [--batch 1] [--max-failures 0] [--timeout 30m] [--force] [--delete-emptydir-data] [OPTIONS]")]
    Upgrade(UpgradeArgs),
}

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The channel to go to, one minor above the workers' (e.g. 1.31/stable).
    #[arg(long, value_name = "CHANNEL")]
    pub to: String,
    /// Workers upgraded at a time.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub batch: usize,
    /// Failed workers tolerated before the run stops (exit 4); each stays cordoned.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_failures: usize,
    /// How long one worker may take, drain and refresh (its maintain timer runs
    /// every 15 minutes, within 5 more): e.g. 30m, 1h.
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
    /// Also evict pods no controller manages (kubectl drain's --force).
    #[arg(long)]
    pub force: bool,
    /// Also evict pods with emptyDir volumes: their data is deleted.
    #[arg(long)]
    pub delete_emptydir_data: bool,
}

#[derive(Debug, Args)]
pub struct RetireArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The worker to retire; the facts must mark it `retired: true`.
    #[arg(long, value_name = "NAME")]
    pub node: String,
    /// Print what would be done; every write is a server-side dry run (so missing
    /// permissions and disruption budgets show) and nothing is waited for.
    #[arg(long)]
    pub dry_run: bool,
    /// How long a disruption budget may hold an eviction back, and evicted pods be
    /// waited for, before it stops (exit 4) with the Node cordoned, not deleted:
    /// e.g. 90s, 10m, 1h.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
    /// Also evict pods no controller manages (kubectl drain's --force): nothing
    /// recreates them.
    #[arg(long)]
    pub force: bool,
    /// Also evict pods with emptyDir volumes: their data is deleted.
    #[arg(long)]
    pub delete_emptydir_data: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The secrets file: with it, each worker's plan is rendered and its hash
    /// compared with the one the node reports; without it, plans are not compared.
    #[arg(long, value_name = "FILE", env = "MK8S_SECRETS")]
    pub secrets: Option<PathBuf>,
    /// Print one JSON document instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Judge heartbeats and certificate ends as of this time (RFC 3339, e.g.
    /// 2027-01-01T00:00:00Z) instead of now.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub as_of: Option<OffsetDateTime>,
}

#[derive(Debug, Args)]
pub struct ApproveArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Decide the pending requests, then exit (the default).
    #[arg(long, conflicts_with = "watch")]
    pub once: bool,
    /// Decide the pending requests, then each new one as it comes, until stopped.
    #[arg(long)]
    pub watch: bool,
    /// Decide and print, change nothing: approvals are sent as server-side dry
    /// runs (so missing permissions show) and no audit record is written.
    #[arg(long)]
    pub dry_run: bool,
    /// Append every decision as one JSON line to this file (created 0600).
    #[arg(long, value_name = "FILE", required_unless_present = "dry_run")]
    pub audit: Option<PathBuf>,
}

/// `90s`, `10m`, `1h` (a whole number and one unit).
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let unit = s.trim_start_matches(|c: char| c.is_ascii_digit());
    let n: u64 =
        s[..s.len() - unit.len()].parse().map_err(|_| format!("{s:?} is not a duration such as 90s, 10m or 1h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(format!("{s:?} is not a duration such as 90s, 10m or 1h")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|e| format!("not an RFC 3339 time ({e}); e.g. 2027-01-01T00:00:00Z"))
}

/// Run a parsed command line.
pub fn run(cli: Cli, io: &mut Io) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return fail(io, &anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    let result = match &cli.command {
        Command::Status(a) => runtime.block_on(status(&cli, a, io)),
        Command::Approve(a) => runtime.block_on(approve(&cli, a, io)),
        Command::Retire(a) => runtime.block_on(retire(&cli, a, io)),
        Command::Upgrade(a) => runtime.block_on(upgrade(&cli, a, io)),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Outcome::Invalid) => ExitCode::from(EXIT_INVALID),
        Err(Outcome::Error(e)) => fail(io, &e),
    }
}

/// Why a command stopped early.
enum Outcome {
    /// Already reported (the facts or secrets report); exit 1.
    Invalid,
    /// Exit 2.
    Error(anyhow::Error),
}

impl From<Failure> for Outcome {
    fn from(f: Failure) -> Outcome {
        match f {
            Failure::Invalid | Failure::StrictWarnings => Outcome::Invalid,
            Failure::Usage(msg) => Outcome::Error(anyhow::anyhow!(msg)),
        }
    }
}

impl From<anyhow::Error> for Outcome {
    fn from(e: anyhow::Error) -> Outcome {
        Outcome::Error(e)
    }
}

impl From<std::io::Error> for Outcome {
    fn from(e: std::io::Error) -> Outcome {
        Outcome::Error(e.into())
    }
}

fn fail(io: &mut Io, e: &anyhow::Error) -> ExitCode {
    let _ = writeln!(io.stderr, "error: {e:#}");
    ExitCode::from(EXIT_USAGE_IO)
}

async fn status(cli: &Cli, a: &StatusArgs, io: &mut Io<'_>) -> Result<u8, Outcome> {
    let facts = load_facts(&a.common, io, |_, _| {})?;
    let plans = match &a.secrets {
        Some(path) => {
            let secrets = load_secrets(path, &facts, &a.common, io)?;
            Some(crate::plans::plan_hashes(&facts, &secrets)?)
        }
        None => None,
    };
    let client = crate::client::connect(cli.kubeconfig.as_deref()).await?;
    let nodes = crate::client::list_nodes(&client).await?;
    let as_of = a.as_of.unwrap_or_else(OffsetDateTime::now_utc);
    let report = crate::status::assess(&facts, plans.as_ref(), &nodes, as_of);
    if a.json {
        let text = serde_json::to_string_pretty(&report).map_err(anyhow::Error::from)?;
        writeln!(io.stdout, "{text}")?;
    } else {
        write!(io.stdout, "{}", crate::status::table(&report))?;
    }
    io.stdout.flush()?;
    Ok(if report.ok { EXIT_OK } else { EXIT_ATTENTION })
}

async fn approve(cli: &Cli, a: &ApproveArgs, io: &mut Io<'_>) -> Result<u8, Outcome> {
    let facts = load_facts(&a.common, io, |_, _| {})?;
    let audit = match (&a.audit, a.dry_run) {
        (Some(path), false) => Some(
            AuditLog::open(path).map_err(|e| anyhow::anyhow!("cannot open the audit log {}: {e}", path.display()))?,
        ),
        _ => None,
    };
    let client = crate::client::connect(cli.kubeconfig.as_deref()).await?;
    let mut approver = Approver::new(client, Settings { facts: &facts, dry_run: a.dry_run, audit });
    if a.watch {
        approver.watch(io.stdout).await?;
    } else {
        approver.once(io.stdout).await?;
    }
    let t = &approver.tally;
    let _ = writeln!(io.stderr, "{} approved, {} denied, {} left alone", t.approved, t.denied, t.ignored);
    Ok(EXIT_OK)
}

async fn retire(cli: &Cli, a: &RetireArgs, io: &mut Io<'_>) -> Result<u8, Outcome> {
    let facts = load_facts(&a.common, io, |facts, report| marked_retired(facts, &a.node, report))?;
    let client = crate::client::connect_without_retries(cli.kubeconfig.as_deref()).await?;
    let settings = crate::retire::Settings {
        node: a.node.clone(),
        dry_run: a.dry_run,
        force: a.force,
        delete_emptydir_data: a.delete_emptydir_data,
        timeout: a.timeout,
    };
    match crate::retire::retire(&client, &facts, &settings, io.stdout).await? {
        crate::retire::Ended::Retired => Ok(EXIT_OK),
        crate::retire::Ended::Stopped(why) => {
            let _ = writeln!(io.stderr, "stopped: {why}; run it again once that is resolved");
            Ok(EXIT_STOPPED)
        }
    }
}

async fn upgrade(cli: &Cli, a: &UpgradeArgs, io: &mut Io<'_>) -> Result<u8, Outcome> {
    let facts = load_facts(&a.common, io, |_, _| {})?;
    let client = crate::client::connect_without_retries(cli.kubeconfig.as_deref()).await?;
    let settings = crate::upgrade::Settings {
        to: a.to.clone(),
        batch: a.batch,
        max_failures: a.max_failures,
        timeout: a.timeout,
        force: a.force,
        delete_emptydir_data: a.delete_emptydir_data,
        poll: std::time::Duration::from_secs(2),
    };
    match crate::upgrade::upgrade(&client, cli.kubeconfig.as_deref(), &facts, &settings, io.stdout).await? {
        crate::upgrade::Ended::Done { upgraded, already, failed } => {
            let _ = writeln!(
                io.stderr,
                "{upgraded} upgraded, {already} already at {}, {} failed{}",
                a.to,
                failed.len(),
                if failed.is_empty() { String::new() } else { format!(": {}", failed.join("; ")) }
            );
            Ok(if failed.is_empty() { EXIT_OK } else { EXIT_ATTENTION })
        }
        crate::upgrade::Ended::Stopped(why) => {
            let _ = writeln!(io.stderr, "stopped: {why}");
            Ok(EXIT_STOPPED)
        }
    }
}

/// The facts decide what is retired: the node must be marked so first, which
/// keeps every later bundle and approval consistent with what retire did.
fn marked_retired(facts: &mk8s_gen::model::Facts, node: &str, report: &mut mk8s_gen::report::Report) {
    if facts.retired(node).is_some() {
        return;
    }
    let what = if facts.worker(node).is_some() {
        format!("worker {node:?} is not marked retired")
    } else if facts.control_plane.iter().any(|c| c.name == node) {
        format!("{node:?} is a control-plane node, not a worker")
    } else {
        format!("no worker named {node:?}")
    };
    report.error(
        "$.workers",
        what,
        "add `retired: true` to the worker's entry in the facts first (so no later bundle registers it and no renewal is approved), then run retire",
    );
}
