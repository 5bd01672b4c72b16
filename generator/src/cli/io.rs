//! Writing to the operator: messages, reports, outputs.

use super::*;

pub(super) fn read(path: &Path, what: &str) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|e| Failure::Usage(format!("cannot read {what} {}: {e}", path.display())))
}

/// One line on stderr outside a report: `json` with --message-format json (every
/// line is then a JSON object), else `human`.
pub(super) fn message(io: &mut Io, format: MessageFormat, json: serde_json::Value, human: &str) {
    let _ = match format {
        MessageFormat::Json => writeln!(io.stderr, "{json}"),
        MessageFormat::Human => writeln!(io.stderr, "{human}"),
    };
}

/// A command's result line: `{"status": ...}` with --message-format json.
pub(super) fn status(io: &mut Io, common: &CommonArgs, line: &str) {
    message(io, common.message_format, serde_json::json!({ "status": line }), line);
}

/// The command's --message-format (human for commands without one).
pub(super) fn message_format(cli: &Cli) -> MessageFormat {
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
pub(super) fn note(io: &mut Io, common: &CommonArgs, line: &str) {
    if !common.quiet {
        message(io, common.message_format, serde_json::json!({ "note": line }), line);
    }
}

/// Print a report (problems and warnings) in the chosen format.
pub(super) fn emit(report: &Report, file: &str, source: &str, common: &CommonArgs, io: &mut Io) {
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

/// What a node's output goes to: `-o FILE` (atomically, 0600, never replacing
/// anything but a regular file), or stdout for no `-o` or `-o -`.
pub(super) fn emit_output(output: Option<&Path>, data: &[u8], io: &mut Io) -> Result<(), Failure> {
    match output.filter(|p| *p != Path::new("-")) {
        Some(p) => {
            write_output(p, data, 0o600)?;
        }
        None => io.stdout.write_all(data)?,
    }
    Ok(())
}
