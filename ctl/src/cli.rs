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

const AFTER_HELP: &str = "\
Exit codes:
  0  success (status: nothing needs attention)
  1  invalid input (the facts or the secrets; every problem is listed)
  2  usage, I/O or API error (the kubeconfig, the cluster, the audit log)
  3  status only: something needs attention (a worker not joined, not Ready, at
     another version, with another plan, drift or a certificate ending within 30
     days; or a Node the facts do not know)

Examples:
  mk8s-ctl status --cluster cluster.yaml --secrets secrets.yaml
  mk8s-ctl status --cluster cluster.yaml --json
  mk8s-ctl approve --cluster cluster.yaml --watch --audit /var/log/mk8s-approve.jsonl";

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
