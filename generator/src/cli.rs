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
#[command(name = "mk8s-gen", version, about, after_help = AFTER_HELP, args_conflicts_with_subcommands = true, help_expected = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub generate: GenerateArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the cluster facts (and a node name) without writing anything.
    Check(CheckArgs),
    /// Manage the private secrets file.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Write what the control-plane nodes need: known_tokens.csv lines, the script
    /// that merges them, and certificate names for an external load balancer.
    ControlPlane(ControlPlaneArgs),
    /// Print the kubeadm-style pin (sha256 of the SubjectPublicKeyInfo) of a CA.
    CaHash(CaHashArgs),
    /// Write every worker's user-data, the control-plane bundle and a manifest.
    Fleet(FleetArgs),
    /// Write the files every node shares (units, load-balancer configuration, the
    /// bootstrap binary, optionally traefik) into DIR, laid out as on the node, to
    /// bake into an image; then generate user-data with --baked.
    Packer(PackerArgs),
    /// Terraform `external` data source: a JSON object of strings on stdin (cluster,
    /// secrets, node, and optionally format, target, gzip, baked, merge, strict,
    /// bootstrap_url, bootstrap_sha256, bootstrap_bin), a JSON object of strings on
    /// stdout (user_data, user_data_base64, sha256, size); errors on stderr, exit 1
    /// or 2. Warnings are errors unless strict is "false".
    Terraform,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `mk8s-gen man > mk8s-gen.1`.
    Man,
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
    #[arg(long, value_name = "FILE")]
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
    #[arg(long, value_name = "FILE")]
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
    /// `--format launch-config`: the CHECK of the join URL, the sha256 (hex, at least
    /// 12 characters) of the DER `server.crt` of the first IPv4 control plane
    /// (`microk8s add-node --format token-check` prints it after the `/`).
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
    #[arg(long, value_name = "FILE")]
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
    /// Also check that this worker exists.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
}

#[derive(Debug, Args)]
pub struct ControlPlaneArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The secrets file (token seed).
    #[arg(long, value_name = "FILE")]
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
        Some(Command::Man) => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd).render(io.stdout).map_err(Failure::from)
        }
    };
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(Failure::Invalid) => ExitCode::from(EXIT_INVALID),
        Err(Failure::Usage(msg)) => {
            message(io, format, serde_json::json!({ "error": msg }), &format!("error: {msg}"));
            ExitCode::from(EXIT_USAGE_IO)
        }
    }
}

fn read(path: &Path, what: &str) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|e| Failure::Usage(format!("cannot read {what} {}: {e}", path.display())))
}

/// One line on stderr outside a report: `json` with --message-format json (every
/// line is then a JSON object), else `human`.
fn message(io: &mut Io, format: MessageFormat, json: serde_json::Value, human: &str) {
    let _ = match format {
        MessageFormat::Json => writeln!(io.stderr, "{json}"),
        MessageFormat::Human => writeln!(io.stderr, "{human}"),
    };
}

/// A command's result line: `{"status": ...}` with --message-format json.
fn status(io: &mut Io, common: &CommonArgs, line: &str) {
    message(io, common.message_format, serde_json::json!({ "status": line }), line);
}

/// The command's --message-format (human for commands without one).
fn message_format(cli: &Cli) -> MessageFormat {
    let common = match &cli.command {
        None => Some(&cli.generate.common),
        Some(Command::Check(a)) => Some(&a.common),
        Some(Command::ControlPlane(a)) => Some(&a.common),
        Some(Command::Fleet(a)) => Some(&a.common),
        Some(Command::Packer(a)) => Some(&a.common),
        _ => None,
    };
    common.map_or(MessageFormat::Human, |c| c.message_format)
}

/// A warning or note outside a report: `{"note": ...}` with --message-format
/// json; nothing with --quiet.
fn note(io: &mut Io, common: &CommonArgs, line: &str) {
    if !common.quiet {
        message(io, common.message_format, serde_json::json!({ "note": line }), line);
    }
}

/// Print a report (problems and warnings) in the chosen format.
fn emit(report: &Report, file: &str, source: &str, common: &CommonArgs, io: &mut Io) {
    // --quiet drops warnings, unless --strict makes them errors.
    let errors_only;
    let report = if common.quiet && !common.strict {
        errors_only = Report {
            problems: report
                .problems
                .iter()
                .filter(|p| p.severity == crate::report::Severity::Error)
                .cloned()
                .collect(),
        };
        &errors_only
    } else {
        report
    };
    if report.problems.is_empty() {
        return;
    }
    let text = match common.message_format {
        MessageFormat::Human => report.render(file, source),
        MessageFormat::Json => {
            let v = serde_json::json!({"file": file, "errors": report.errors(), "problems": report.problems});
            format!("{v}\n")
        }
    };
    let _ = io.stderr.write_all(text.as_bytes());
}

/// Load and check facts; problems are printed; `Invalid` when there are errors (or
/// warnings under --strict).
pub fn load_facts(common: &CommonArgs, io: &mut Io, extra: impl FnOnce(&Facts, &mut Report)) -> Result<Facts, Failure> {
    let path = common.cluster.as_ref().ok_or_else(|| Failure::Usage("--cluster FILE is required".into()))?;
    let stdin = path == Path::new("-");
    let source = if stdin {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut text)
            .map_err(|e| Failure::Usage(format!("cannot read the cluster facts from stdin: {e}")))?;
        text
    } else {
        read(path, "cluster facts")?
    };
    // A UTF-8 byte order mark (some Windows editors write one) is not content.
    let source = match source.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => source,
    };
    let file = if stdin { "<stdin>".to_string() } else { path.display().to_string() };
    if let Some(why) = crate::secrets::looks_secret(&source) {
        // Never echo a line of it: problems would quote the seed or the key.
        let mut report = Report::default();
        report.error(
            "$",
            format!("this is not a cluster facts file: {why}, so none of its lines are shown"),
            "give the cluster facts with --cluster and the secrets file with --secrets; keep private keys in the secrets file only",
        );
        emit(&report, &file, "", common, io);
        return Err(Failure::Invalid);
    }
    // Relative paths in the facts (ca.cert-file) are relative to the facts file, or
    // to the working directory for stdin.
    let base = if stdin { Path::new(".") } else { path.parent().unwrap_or(Path::new(".")) };
    let crate::Loaded { facts, mut report, spans } = crate::load(&source, base);
    if let Some(f) = &facts {
        extra(f, &mut report);
    }
    report.locate(&spans);
    emit(&report, &file, &source, common, io);
    match facts {
        Some(f) if !report.has_errors() && (!common.strict || report.problems.is_empty()) => Ok(f),
        Some(_) if !report.has_errors() => {
            let json = serde_json::json!({ "file": file, "error": STRICT_FAILED });
            message(io, common.message_format, json, &format!("error: {STRICT_FAILED}"));
            Err(Failure::Invalid)
        }
        _ => Err(Failure::Invalid),
    }
}

fn node_exists(node: Option<&str>) -> impl FnOnce(&Facts, &mut Report) + '_ {
    move |facts, report| {
        if let Some(n) = node {
            if facts.worker(n).is_none() {
                let names: Vec<&str> = facts.workers.iter().map(|w| w.name.as_str()).collect();
                report.error("$.workers", format!("no worker named {n:?}"), &closest_names(n, &names));
            }
        }
    }
}

/// The help for an unknown worker name: at most five of the closest names (by
/// edit distance), never the whole list (a fleet has thousands).
fn closest_names(wanted: &str, names: &[&str]) -> String {
    if names.is_empty() {
        return "the facts list no workers".into();
    }
    let mut scored: Vec<(usize, &str)> = names.iter().map(|n| (strsim::levenshtein(wanted, n), *n)).collect();
    scored.sort();
    let shown: Vec<&str> = scored.iter().take(5).map(|(_, n)| *n).collect();
    format!("the closest of the {} worker name(s): {}", names.len(), shown.join(", "))
}

/// Load the secrets; with `auth: x509`, also the CA key, checked against the CA.
fn load_secrets(path: &Path, facts: &Facts, common: &CommonArgs, io: &mut Io) -> Result<Secrets, Failure> {
    let text = read(path, "secrets file")?;
    let base = path.parent().unwrap_or(Path::new("."));
    // Never show the secrets file's lines: problems are rendered without source.
    let file = path.display().to_string();
    let mut secrets = Secrets::load(&text, base).map_err(|report| {
        emit(&report, &file, "", common, io);
        Failure::Invalid
    })?;
    for p in std::iter::once(path).chain(secrets.ca_key_path.as_deref()) {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(p) {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                note(
                    io,
                    common,
                    &format!(
                        "warning: {} is readable by group or others (mode {mode:04o}) and holds credentials; run `chmod 600 {}`",
                        p.display(),
                        p.display()
                    ),
                );
            }
        }
    }
    if crate::auth::of(&facts.auth).needs_ca_key() {
        if let Err(e) = secrets.attach_ca_key(&facts.ca) {
            let mut report = Report::default();
            report.error(
                "$.ca-key-file",
                e,
                "use the key of the CA in the facts (certs/ca.key on a MicroK8s control-plane node)",
            );
            emit(&report, &file, "", common, io);
            return Err(Failure::Invalid);
        }
    }
    Ok(secrets)
}

/// Read a binary to ship to nodes, refusing anything that is not an ELF executable.
fn read_elf(p: &Path, what: &str) -> Result<Vec<u8>, Failure> {
    let bytes = std::fs::read(p).map_err(|e| Failure::Usage(format!("cannot read {what} {}: {e}", p.display())))?;
    if !bytes.starts_with(b"\x7fELF") {
        return Err(Failure::Usage(format!("{} is not an ELF executable", p.display())));
    }
    Ok(bytes)
}

fn delivery(a: &DeliveryArgs) -> Result<Delivery, Failure> {
    if let Some(p) = &a.bootstrap_bin {
        return Ok(Delivery::embedded(&read_elf(p, "bootstrap binary")?));
    }
    if let (Some(url), Some(sha)) = (&a.bootstrap_url, &a.bootstrap_sha256) {
        if values::has_userinfo(url) {
            return Err(Failure::Usage(format!(
                "--bootstrap-url {}: the URL has credentials in it; {}",
                mk8s_bootstrap::system::redact_url(url),
                values::USERINFO_HELP
            )));
        }
        if !values::is_safe_url(url) {
            return Err(Failure::Usage(format!("--bootstrap-url {url:?} is not an https URL of plain characters")));
        }
        if !values::is_sha256_hex(sha) {
            return Err(Failure::Usage("--bootstrap-sha256 must be 64 hex digits".into()));
        }
        return Ok(Delivery::Fetched { url: url.clone(), sha256: sha.to_ascii_lowercase() });
    }
    Ok(Delivery::Preinstalled)
}

fn generate(a: &GenerateArgs, io: &mut Io) -> Result<(), Failure> {
    let node = a
        .node
        .as_deref()
        .ok_or_else(|| Failure::Usage("--node NAME is required (or use a subcommand; see --help)".into()))?;
    let secrets_path = a
        .secrets
        .as_ref()
        .ok_or_else(|| Failure::Usage("--secrets FILE is required: worker tokens are derived from it".into()))?;
    if a.format == Format::LaunchConfig {
        return launch_config(a, node, secrets_path, io);
    }
    if a.gzip && a.format == Format::Ignition {
        // Ignition parses the config as JSON and refuses gzip (checked with
        // Ignition 2.14); its files are compressed inside the config already.
        return Err(Failure::Usage(
            "--gzip is for cloud-init user-data: Ignition does not read a gzip-compressed config \
             (its files are already gzip-compressed inside); drop --gzip for --format ignition"
                .into(),
        ));
    }
    let delivery = delivery(&a.delivery)?;
    let facts = load_facts(&a.common, io, node_exists(Some(node)))?;
    if matches!(delivery, Delivery::Preinstalled) && !a.delivery.bootstrap_preinstalled && !a.baked {
        // The default: nothing in the user-data brings the bootstrap (nor traefik
        // without `traefik.url`); the bootstrap refuses early without them.
        // With auth: microk8s-join MicroK8s's own proxy is the balancer: no traefik.
        let joined = crate::auth::of(&facts.auth).joined(&facts).is_some();
        let traefik = match &facts.load_balancer {
            model::LoadBalancer::Traefik(t) if t.fetch.is_none() && !joined => {
                format!(" and traefik at {}", t.path)
            }
            _ => String::new(),
        };
        note(
            io,
            &a.common,
            &format!(
                "note: the image must already have {}{traefik}: bake {} with `mk8s-gen packer`, or give \
                 --bootstrap-bin or --bootstrap-url; --bootstrap-preinstalled says so and silences this note",
                mk8s_bootstrap::plan::BOOTSTRAP_PATH,
                if traefik.is_empty() { "it" } else { "them" }
            ),
        );
    }
    let secrets = load_secrets(secrets_path, &facts, &a.common, io)?;
    let worker = facts.worker(node).expect("checked by node_exists");
    let shared = render::ClusterArtifacts::new(&facts, &delivery).map_err(|e| Failure::Usage(format!("{e:#}")))?;
    let shared = if a.baked { shared.baked() } else { shared };
    let out =
        render::render_node_with(&facts, &secrets, worker, &shared).map_err(|e| Failure::Usage(format!("{e:#}")))?;
    let extra = match &a.merge {
        Some(p) => {
            if a.format == Format::Ignition {
                return Err(Failure::Usage(
                    "--merge combines cloud-configs; it does not apply to --format ignition".into(),
                ));
            }
            let text = read(p, "cloud-config to merge")?;
            if let Err(problems) = crate::output::multipart::check_extra(&text, &out) {
                for problem in problems {
                    writeln!(io.stderr, "error: {}: {problem}", p.display())?;
                }
                return Err(Failure::Invalid);
            }
            Some(text)
        }
        None => None,
    };
    let text = match a.format {
        Format::CloudConfig => match &extra {
            Some(extra) => crate::output::multipart::multipart(extra, &crate::output::cloud_config::cloud_config(&out)),
            None => crate::output::cloud_config::cloud_config(&out),
        },
        Format::LaunchConfig => unreachable!("handled above"),
        Format::Ignition => match crate::output::ignition::config(&out) {
            Ok(t) => t,
            Err(e) => {
                writeln!(io.stderr, "error: {e:#}")?;
                return Err(Failure::Invalid);
            }
        },
    };
    let bytes = if a.gzip { render::gzip(text.as_bytes()) } else { text.into_bytes() };
    if let Some(target) = a.target {
        // Only cloud-init reads gzip-compressed user-data: no --gzip hint for Ignition.
        let gzipped = (!a.gzip && a.format == Format::CloudConfig).then(|| render::gzip(&bytes).len());
        let embedded = matches!(delivery, Delivery::Embedded { .. });
        if let Err(e) = crate::output::budget::check(target, node, bytes.len(), a.gzip, gzipped, embedded) {
            writeln!(io.stderr, "error: {e}")?;
            return Err(Failure::Invalid);
        }
    }
    emit_output(a.output.as_deref(), &bytes, io)
}

/// What a node's output goes to: `-o FILE` (atomically, 0600, never replacing
/// anything but a regular file), or stdout for no `-o` or `-o -`.
fn emit_output(output: Option<&Path>, data: &[u8], io: &mut Io) -> Result<(), Failure> {
    match output.filter(|p| *p != Path::new("-")) {
        Some(p) => {
            write_output(p, data, 0o600)?;
        }
        None => io.stdout.write_all(data)?,
    }
    Ok(())
}

/// `--format launch-config`: MicroK8s's own zero-touch path (1.27+), see
/// [`crate::output::launch_config::launch_config`].
fn launch_config(a: &GenerateArgs, node: &str, secrets_path: &Path, io: &mut Io) -> Result<(), Failure> {
    if a.gzip || a.merge.is_some() || a.target.is_some() || a.baked {
        return Err(Failure::Usage(
            "--format launch-config writes a MicroK8s launch configuration, not user-data: \
             --gzip, --merge, --target and --baked do not apply"
                .into(),
        ));
    }
    let facts = load_facts(&a.common, io, node_exists(Some(node)))?;
    let check = a.join_check.as_deref().ok_or_else(|| {
        Failure::Usage(
            "--format launch-config needs --join-check HEX: the sha256 of the control plane's DER server.crt \
             (openssl x509 -in /var/snap/microk8s/current/certs/server.crt -outform der | sha256sum); \
             without it MicroK8s's join skips verifying the control plane and sends the token to whoever answers"
                .into(),
        )
    })?;
    let secrets = load_secrets(secrets_path, &facts, &a.common, io)?;
    let worker = facts.worker(node).expect("checked by node_exists");
    let text = crate::output::launch_config::launch_config(&facts, &secrets, worker, check)
        .map_err(|e| Failure::Usage(format!("{e:#}")))?;
    emit_output(a.output.as_deref(), text.as_bytes(), io)
}

fn check(a: &CheckArgs, io: &mut Io) -> Result<(), Failure> {
    let facts = load_facts(&a.common, io, node_exists(a.node.as_deref()))?;
    status(
        io,
        &a.common,
        &format!(
            "{}: ok: cluster {}, {} control-plane node(s), {} worker(s)",
            a.common.cluster.as_ref().unwrap().display(),
            facts.name,
            facts.control_plane.len(),
            facts.workers.len()
        ),
    );
    Ok(())
}

fn secrets_init(out: &Path, ca_key_file: Option<&str>, io: &mut Io) -> Result<(), Failure> {
    crate::secrets::init(out, ca_key_file)
        .map_err(|e| Failure::Usage(format!("cannot create {}: {e}", out.display())))?;
    writeln!(io.stderr, "wrote {} (0600): keep it private and out of version control", out.display())?;
    Ok(())
}

fn secrets_set_ca_key(path: &Path, ca_key_file: &str, io: &mut Io) -> Result<(), Failure> {
    let text = read(path, "secrets file")?;
    let key_path = path.parent().unwrap_or(Path::new(".")).join(ca_key_file);
    let key = read(&key_path, "CA key")?;
    if !(key.contains("-----BEGIN") && key.contains("PRIVATE KEY-----")) {
        return Err(Failure::Usage(format!("{} holds no PEM private key", key_path.display())));
    }
    let new = crate::secrets::with_ca_key_file(&text, ca_key_file)
        .map_err(|e| Failure::Usage(format!("cannot change {}: {e}", path.display())))?;
    write_output(path, new.as_bytes(), 0o600)?;
    writeln!(io.stderr, "{}: ca-key-file set to {ca_key_file} (0600); the token seed is unchanged", path.display())?;
    Ok(())
}

fn control_plane(a: &ControlPlaneArgs, io: &mut Io) -> Result<(), Failure> {
    let facts = load_facts(&a.common, io, |facts, report| {
        if crate::auth::of(&facts.auth).bundle_needs_workers() && facts.workers.is_empty() {
            report.error(
                "$.workers",
                "the facts list no workers: there are no token lines for the control plane",
                "add the workers first; an empty bundle would merge nothing",
            );
        }
    })?;
    let secrets = load_secrets(&a.secrets, &facts, &a.common, io)?;
    let workers: Vec<_> = facts.workers.iter().collect();
    let files = crate::controlplane::write_bundle(&facts, &secrets, &workers, &a.out)
        .map_err(|e| Failure::Usage(format!("{e:#}")))?;
    status(
        io,
        &a.common,
        &format!(
            "wrote {} in {}: run {} on every control-plane node",
            files.join(", "),
            a.out.display(),
            crate::auth::of(&facts.auth).operator_steps()
        ),
    );
    Ok(())
}

fn fleet(a: &FleetArgs, io: &mut Io) -> Result<(), Failure> {
    let delivery = delivery(&a.delivery)?;
    let mut labels = Vec::new();
    for l in &a.label {
        let (k, v) = l.split_once('=').ok_or_else(|| Failure::Usage(format!("--label {l:?}: write KEY=VALUE")))?;
        labels.push((k.to_string(), v.to_string()));
    }
    if a.format == Format::LaunchConfig {
        return Err(Failure::Usage(
            "--format launch-config is per node (it needs each control plane's --join-check): use mk8s-gen --node"
                .into(),
        ));
    }
    let facts = load_facts(&a.common, io, |_, _| {})?;
    let secrets = load_secrets(&a.secrets, &facts, &a.common, io)?;
    let threads = a.threads.map(usize::from).unwrap_or_else(|| {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(crate::fleet::MAX_THREADS)
    });
    let opts = crate::fleet::Options {
        out: a.out.clone(),
        ignition: a.format == Format::Ignition,
        baked: a.baked,
        target: a.target,
        selection: crate::fleet::Selection { name: a.select.clone(), labels },
        sync: !a.no_sync,
        // --quiet: no bar; --message-format json: no bar either (the stream is JSON).
        progress: !a.common.quiet && matches!(a.common.message_format, MessageFormat::Human),
        threads,
    };
    let s = crate::fleet::run(&facts, &secrets, &delivery, &opts).map_err(|e| Failure::Usage(format!("{e:#}")))?;
    if s.recovered {
        note(io, &a.common, &format!("note: finished the commit of an interrupted run in {} first", a.out.display()));
    }
    status(
        io,
        &a.common,
        &format!(
            "fleet: {} node(s) in {:.2}s: {} written, {} unchanged, {} removed -> {} \
         (control-plane bundle: all {} worker(s) of the facts)",
            s.nodes,
            s.elapsed.as_secs_f64(),
            s.written,
            s.unchanged,
            s.removed,
            a.out.display(),
            s.bundle_workers
        ),
    );
    Ok(())
}

fn packer(a: &PackerArgs, io: &mut Io) -> Result<(), Failure> {
    let facts = load_facts(&a.common, io, |_, _| {})?;
    let bootstrap = read_elf(&a.bootstrap_bin, "bootstrap binary")?;
    let shared =
        render::ClusterArtifacts::new(&facts, &Delivery::Preinstalled).map_err(|e| Failure::Usage(format!("{e:#}")))?;
    let mut files: Vec<(String, Vec<u8>, u32)> = shared
        .files()
        .iter()
        .map(|f| match &f.content {
            render::FileContent::Text(t) => (f.path.clone(), t.as_bytes().to_vec(), f.mode),
            render::FileContent::GzipBase64(_) => unreachable!("pre-installed delivery embeds nothing"),
        })
        .collect();
    files.push((mk8s_bootstrap::plan::BOOTSTRAP_PATH.to_string(), bootstrap, 0o755));
    if let Some(t) = &a.traefik_bin {
        let model::LoadBalancer::Traefik(lb) = &facts.load_balancer else {
            return Err(Failure::Usage("--traefik-bin needs `load-balancer: { kind: traefik }` in the facts".into()));
        };
        files.push((lb.path.clone(), read_elf(t, "traefik binary")?, 0o755));
    }
    for (path, data, mode) in &files {
        let dest = a.out.join(path.trim_start_matches('/'));
        // Missing directories: 0755 at most, whatever the umask (as on the node).
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o755)
            .create(dest.parent().expect("absolute paths have parents"))?;
        write_output(&dest, data, *mode)?;
    }
    status(
        io,
        &a.common,
        &format!(
            "wrote {} file(s) under {}: bake them into the image at /, then use --baked",
            files.len(),
            a.out.display()
        ),
    );
    Ok(())
}

/// The keys `mk8s-gen terraform` accepts in its query.
const TERRAFORM_KEYS: &[&str] = &[
    "cluster",
    "secrets",
    "node",
    "format",
    "target",
    "gzip",
    "baked",
    "merge",
    "strict",
    "bootstrap_url",
    "bootstrap_sha256",
    "bootstrap_bin",
];

/// A clap error about the arguments built from a query, in the query's terms:
/// every line of the message (no usage), flags named by their query keys.
fn query_error(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut msg = text
        .lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if let Some(rest) = msg.strip_prefix("error: ") {
        msg = rest.to_string();
    }
    for key in TERRAFORM_KEYS {
        let flag = format!("--{}", key.replace('_', "-"));
        while let Some(at) = msg.find(&flag) {
            let mut end = at + flag.len();
            if msg[end..].starts_with(" <") {
                end += msg[end..].find('>').map_or(0, |i| i + 1);
            }
            msg.replace_range(at..end, key);
        }
    }
    format!("in the query: {msg}")
}

/// Terraform's `external` data source protocol around the per-node command.
pub fn terraform(stdin: &mut dyn std::io::Read, io: &mut Io) -> Result<(), Failure> {
    let mut input = String::new();
    stdin.read_to_string(&mut input)?;
    let query: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&input).map_err(|e| Failure::Usage(format!("the query is not a JSON object: {e}")))?;
    let mut args = vec!["mk8s-gen".to_string()];
    // Terraform shows nothing a program says on stderr when it succeeds, so a
    // warning would never reach the operator: they are errors unless opted out.
    let mut strict = true;
    for (k, v) in &query {
        if !TERRAFORM_KEYS.contains(&k.as_str()) {
            return Err(Failure::Usage(format!("unknown query key {k:?}; known keys: {}", TERRAFORM_KEYS.join(", "))));
        }
        // A null (an unset optional value in Terraform) is as if the key were absent.
        if v.is_null() {
            continue;
        }
        let v = v.as_str().ok_or_else(|| Failure::Usage(format!("query value {k:?} must be a string, not {v}")))?;
        match k.as_str() {
            "gzip" | "baked" | "strict" => match v {
                "true" if k == "strict" => {}
                "true" => args.push(format!("--{k}")),
                "false" if k == "strict" => strict = false,
                "false" | "" => {}
                _ => return Err(Failure::Usage(format!("{k} must be \"true\" or \"false\", not {v:?}"))),
            },
            _ if v.is_empty() => {}
            _ => {
                args.push(format!("--{}", k.replace('_', "-")));
                args.push(v.to_string());
            }
        }
    }
    // Its stdin is the query, already read: a file named `-` would wait on it.
    for file in ["cluster", "secrets", "merge"] {
        if query.get(file).and_then(|v| v.as_str()) == Some("-") {
            return Err(Failure::Usage(format!(
                "the query's {file:?} is \"-\" (stdin), but mk8s-gen terraform reads the query on stdin: give a file path"
            )));
        }
    }
    for required in ["cluster", "secrets", "node"] {
        match query.get(required) {
            None => return Err(Failure::Usage(format!("the query needs {required:?}"))),
            Some(v) if v.is_null() || v.as_str() == Some("") => {
                return Err(Failure::Usage(format!("the query needs {required:?}; it is {v}")))
            }
            Some(_) => {}
        }
    }
    if strict {
        args.push("--strict".into());
    }
    let cli = Cli::try_parse_from(&args).map_err(|e| Failure::Usage(query_error(&e)))?;
    let mut out = Vec::new();
    {
        // Problems go to stderr as they would on the command line (Terraform shows
        // them in `terraform plan`), but without the source excerpt's colours.
        let mut said = Vec::new();
        let result = generate(&cli.generate, &mut Io { stdout: &mut out, stderr: &mut said });
        io.stderr.write_all(&said)?;
        if String::from_utf8_lossy(&said).contains(STRICT_FAILED) {
            writeln!(
                io.stderr,
                "note: mk8s-gen terraform treats warnings as errors (Terraform does not show them on success); \
                 add strict = \"false\" to the query to accept them"
            )?;
        }
        result?;
    }
    use base64::Engine as _;
    let text_ok = std::str::from_utf8(&out).is_ok();
    let result = serde_json::json!({
        "user_data": if text_ok { String::from_utf8_lossy(&out).to_string() } else { String::new() },
        "user_data_base64": base64::engine::general_purpose::STANDARD.encode(&out),
        "sha256": mk8s_bootstrap::plan::sha256_hex(&out),
        "size": out.len().to_string(),
    });
    writeln!(io.stdout, "{result}")?;
    Ok(())
}

fn ca_hash(a: &CaHashArgs, io: &mut Io) -> Result<(), Failure> {
    // `-`: the certificate on stdin (`microk8s config | ...`, `cat ca.crt | ...`).
    let text = if a.file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| Failure::Usage(format!("cannot read the CA certificate from stdin: {e}")))?;
        text
    } else {
        read(&a.file, "CA certificate")?
    };
    match crate::pki::CaCert::from_pem(&text) {
        Ok(ca) => {
            writeln!(io.stdout, "{}", ca.pin)?;
            Ok(())
        }
        Err(e) => {
            writeln!(io.stderr, "error: {}: {e}", a.file.display())?;
            Err(Failure::Invalid)
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
