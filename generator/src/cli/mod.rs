//! Command line: parse with clap, do the work through the library, map outcomes to
//! exit codes (0 ok, 1 invalid input, 2 usage or I/O error).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::model::{self, Facts};
use crate::render::{self, Delivery};
use crate::report::Report;
use crate::secrets::Secrets;
use crate::util::write_output;
use crate::values;

mod ca_hash;
mod check;
mod control_plane;
mod fleet;
mod generate;
mod io;
mod load;
mod man;
mod packer;
mod secrets;
mod terraform;

use ca_hash::ca_hash;
use check::check;
use control_plane::control_plane;
use fleet::fleet;
use generate::generate;
use io::*;
use load::*;
pub use load::{load_facts, load_secrets};
use man::man;
use packer::packer;
use secrets::{secrets_init, secrets_set_ca_key};
pub use terraform::terraform;

pub const EXIT_OK: u8 = 0;
pub const EXIT_INVALID: u8 = 1;
pub const EXIT_USAGE_IO: u8 = 2;

/// Said when only warnings, made errors by --strict, stopped the run.
const STRICT_FAILED: &str = "--strict: the warning(s) above are errors";

const AFTER_HELP: &str = "\
Exit codes:
  0  success
  1  invalid input (every problem is listed, with its YAML path and line:column)
  2  usage or I/O error

Examples:
  mk8s-gen secrets init --out secrets.yaml
  mk8s-gen --cluster cluster.yaml --secrets secrets.yaml --node worker-1 -o user-data
  mk8s-gen control-plane --cluster cluster.yaml --secrets secrets.yaml --out cp/";

/// Zero-touch provisioning of worker-only MicroK8s nodes.
#[derive(Debug, Parser)]
#[command(
    name = "mk8s-gen",
    version,
    about,
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true,
    help_expected = true,
    override_usage = "mk8s-gen --cluster FILE --secrets FILE --node NAME [OPTIONS]\n       mk8s-gen <COMMAND> [OPTIONS]"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub generate: GenerateArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the cluster facts (and a node name) without writing anything.
    #[command(override_usage = "mk8s-gen check --cluster FILE [--node NAME] [--list] [OPTIONS]")]
    Check(CheckArgs),
    /// Manage the private secrets file.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Write what the control-plane nodes need, per auth mode: the token lines and
    /// the script that merges them (token), the join tokens and the script that
    /// registers them (microk8s-join), a check script (x509, microk8s-join); and
    /// always the workers' /etc/hosts lines with their script, and certificate names
    /// for an external load balancer.
    #[command(override_usage = "mk8s-gen control-plane --cluster FILE --secrets FILE --out DIR [OPTIONS]")]
    ControlPlane(ControlPlaneArgs),
    /// Print the kubeadm-style pin (sha256 of the SubjectPublicKeyInfo) of a CA.
    CaHash(CaHashArgs),
    /// Write every worker's user-data, the control-plane bundle and a manifest.
    #[command(override_usage = "mk8s-gen fleet --cluster FILE --secrets FILE --out DIR [OPTIONS]")]
    Fleet(FleetArgs),
    /// Write the files every node shares (units, load-balancer configuration, the
    /// bootstrap binary, optionally traefik) into DIR, laid out as on the node, to
    /// bake into an image; then generate user-data with --baked.
    #[command(override_usage = "mk8s-gen packer --cluster FILE --bootstrap-bin PATH --out DIR [OPTIONS]")]
    Packer(PackerArgs),
    /// Terraform `external` data source: a JSON object of strings on stdin (cluster,
    /// secrets, node, and optionally format, target, gzip, baked, merge, strict,
    /// bootstrap_url, bootstrap_sha256, bootstrap_bin), a JSON object of strings on
    /// stdout (user_data, user_data_base64, sha256, size, notes); errors on stderr, exit 1
    /// or 2. Warnings are errors unless strict is "false".
    Terraform,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `mk8s-gen man > mk8s-gen.1`; with --out DIR,
    /// write it and one page per command (mk8s-gen-fleet.1, ...) into DIR.
    Man {
        /// Write every page into this directory instead.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Create a new secrets file (0600) with a random token seed; never overwrites.
    Init {
        /// Where to write it.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// For `auth: x509`: the cluster CA key (certs/ca.key on a MicroK8s
        /// control-plane node), as a path relative to the secrets file.
        #[arg(long, value_name = "PATH")]
        ca_key_file: Option<String>,
    },
    /// Add (or replace) `ca-key-file` in an existing secrets file, atomically and
    /// 0600, keeping its token seed: for a cluster that moves to `auth: x509`.
    SetCaKey {
        /// The secrets file to change.
        #[arg(long, value_name = "FILE")]
        secrets: PathBuf,
        /// The cluster CA key (certs/ca.key on a MicroK8s control-plane node), as a
        /// path relative to the secrets file.
        #[arg(long, value_name = "PATH")]
        ca_key_file: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `#cloud-config` (Ubuntu and other cloud-init images).
    CloudConfig,
    /// Ignition spec 3.3.0 JSON.
    Ignition,
    /// `auth: microk8s-join`, MicroK8s 1.27+: the `.microk8s.yaml` launch
    /// configuration that joins the node with MicroK8s alone (no mk8s-bootstrap):
    /// needs `--join-check`.
    LaunchConfig,
}

impl Format {
    /// The user-data format of this value, from the table of formats; `None` for
    /// the launch configuration, which is not user-data.
    pub fn output(self) -> Option<&'static dyn crate::output::OutputFormat> {
        self.to_possible_value().and_then(|v| crate::output::by_name(v.get_name()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum MessageFormat {
    /// rustc-style, with the source line.
    #[default]
    Human,
    /// One JSON object with every problem, for pipelines.
    Json,
}

#[derive(Debug, Args)]
pub struct CommonArgs {
    /// The cluster facts file (YAML); `-` reads it from stdin.
    #[arg(long, value_name = "FILE", env = "MK8S_CLUSTER")]
    pub cluster: Option<PathBuf>,
    /// How problems are printed on stderr.
    #[arg(long, value_enum, default_value_t = MessageFormat::Human)]
    pub message_format: MessageFormat,
    /// Treat warnings as errors.
    #[arg(long)]
    pub strict: bool,
    /// Print no warnings or notes on stderr (errors are always printed).
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The worker to render user-data for.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// The secrets file (token seed) made by `mk8s-gen secrets init`.
    #[arg(long, value_name = "FILE", env = "MK8S_SECRETS")]
    pub secrets: Option<PathBuf>,
    #[command(flatten)]
    pub delivery: DeliveryArgs,
    /// The user-data format.
    #[arg(long, value_enum, default_value_t = Format::CloudConfig)]
    pub format: Format,
    /// The image was baked with `mk8s-gen packer` from the same facts: the
    /// user-data carries only this node's plan and credentials.
    #[arg(long, conflicts_with_all = ["bootstrap_bin", "bootstrap_url"])]
    pub baked: bool,
    /// `--format launch-config`: the CHECK of the join URL, the whole sha256 (64 hex
    /// characters) of the DER `server.crt` of the first IPv4 control plane.
    #[arg(long, value_name = "HEX")]
    pub join_check: Option<String>,
    /// Combine your own cloud-config (users, keys, packages, ...) with ours into a
    /// MIME multipart user-data; files we write may not also be written there.
    #[arg(long, value_name = "FILE")]
    pub merge: Option<PathBuf>,
    /// Check the user-data against this platform's size limit (exit 1 if over).
    #[arg(long, value_enum, value_name = "PLATFORM")]
    pub target: Option<crate::output::budget::Target>,
    /// Emit gzip-compressed user-data (cloud-init detects and decompresses it).
    #[arg(long)]
    pub gzip: bool,
    /// Write the user-data here (atomically, 0600) instead of stdout (`-`). An
    /// existing FILE must be a regular file: a symlink, device or pipe is refused.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// How the bootstrap binary reaches the node.
#[derive(Debug, Args)]
pub struct DeliveryArgs {
    /// Embed this mk8s-bootstrap binary in the user-data (gzip + base64).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["bootstrap_url", "bootstrap_preinstalled"])]
    pub bootstrap_bin: Option<PathBuf>,
    /// Fetch mk8s-bootstrap from this https URL at boot (needs --bootstrap-sha256).
    #[arg(long, value_name = "URL", requires = "bootstrap_sha256", conflicts_with = "bootstrap_preinstalled")]
    pub bootstrap_url: Option<String>,
    /// The sha256 the fetched mk8s-bootstrap must have.
    #[arg(long, value_name = "HEX", requires = "bootstrap_url")]
    pub bootstrap_sha256: Option<String>,
    /// mk8s-bootstrap is already in the image (the default when no other is given).
    #[arg(long)]
    pub bootstrap_preinstalled: bool,
}

#[derive(Debug, Args)]
pub struct FleetArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The secrets file (token seed; CA key for x509).
    #[arg(long, value_name = "FILE", env = "MK8S_SECRETS")]
    pub secrets: PathBuf,
    #[command(flatten)]
    pub delivery: DeliveryArgs,
    /// The output directory (nodes/, control-plane/, manifest.json).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Only workers whose name matches this glob (`*`, `?`).
    #[arg(long, value_name = "GLOB")]
    pub select: Option<String>,
    /// Only workers with this label (repeatable; all must match).
    #[arg(long, value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Skip the filesystem sync before files are renamed into place.
    #[arg(long)]
    pub no_sync: bool,
    /// Render every node and compare with DIR; write nothing, and say what a run
    /// would write, keep and remove.
    #[arg(long)]
    pub dry_run: bool,
    /// The user-data format (`.user-data` or `.ign` files).
    #[arg(long, value_enum, default_value_t = Format::CloudConfig)]
    pub format: Format,
    /// The image was baked with `mk8s-gen packer`: user-data carries only each
    /// node's plan and credentials.
    #[arg(long, conflicts_with_all = ["bootstrap_bin", "bootstrap_url"])]
    pub baked: bool,
    /// Check every node against this platform's size limit; nothing is written if
    /// one is over.
    #[arg(long, value_enum, value_name = "PLATFORM")]
    pub target: Option<crate::output::budget::Target>,
    /// Worker threads, 1 to 256 (default: one per core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=crate::fleet::MAX_THREADS as i64))]
    pub threads: Option<u16>,
}

#[derive(Debug, Args)]
pub struct PackerArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The mk8s-bootstrap binary to bake.
    #[arg(long, value_name = "PATH")]
    pub bootstrap_bin: PathBuf,
    /// A traefik binary to bake at the path the facts give (kind traefik).
    #[arg(long, value_name = "PATH")]
    pub traefik_bin: Option<PathBuf>,
    /// The directory to write into (DIR/etc/..., DIR/usr/local/bin/...).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Print the workers, one `NAME ADDRESS` line each (`-` for no address), on stdout.
    #[arg(long)]
    pub list: bool,
    /// Also check that this worker exists.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
}

#[derive(Debug, Args)]
pub struct ControlPlaneArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The secrets file (token seed).
    #[arg(long, value_name = "FILE", env = "MK8S_SECRETS")]
    pub secrets: PathBuf,
    /// The directory to write the bundle into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct CaHashArgs {
    /// A PEM CA certificate (`-`: read it from stdin).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// What went wrong, and so which exit code.
pub enum Failure {
    /// Already printed (the report); exit 1.
    Invalid,
    /// Only warnings, refused by `--strict` (already printed); exit 1.
    StrictWarnings,
    /// Usage or I/O; exit 2.
    Usage(String),
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Usage(e.to_string())
    }
}

pub struct Io<'a> {
    pub stdout: &'a mut dyn Write,
    pub stderr: &'a mut dyn Write,
}

/// Run a parsed command line.
pub fn run(cli: Cli, io: &mut Io) -> ExitCode {
    let format = message_format(&cli);
    let result = match cli.command {
        None => generate(&cli.generate, io),
        Some(Command::Check(a)) => check(&a, io),
        Some(Command::Secrets(SecretsCommand::Init { out, ca_key_file })) => {
            secrets_init(&out, ca_key_file.as_deref(), io)
        }
        Some(Command::Secrets(SecretsCommand::SetCaKey { secrets, ca_key_file })) => {
            secrets_set_ca_key(&secrets, &ca_key_file, io)
        }
        Some(Command::ControlPlane(a)) => control_plane(&a, io),
        Some(Command::CaHash(a)) => ca_hash(&a, io),
        Some(Command::Fleet(a)) => fleet(&a, io),
        Some(Command::Packer(a)) => packer(&a, io),
        Some(Command::Terraform) => terraform(&mut std::io::stdin().lock(), io),
        Some(Command::Completions { shell }) => {
            // Into a buffer first: clap_complete panics when its writer fails (a
            // closed pipe, a full disk); the write below is an error instead.
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "mk8s-gen", &mut script);
            io.stdout.write_all(&script).and_then(|()| io.stdout.flush()).map_err(Failure::from)
        }
        Some(Command::Man { out }) => man(out.as_deref(), io),
    };
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(Failure::Invalid | Failure::StrictWarnings) => ExitCode::from(EXIT_INVALID),
        Err(Failure::Usage(msg)) => {
            message(io, format, serde_json::json!({ "error": msg }), &format!("error: {msg}"));
            ExitCode::from(EXIT_USAGE_IO)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
