//! `mk8s-gen terraform`: Terraform's `external` data source protocol.

use super::*;

/// The keys `mk8s-gen terraform` accepts in its query.
pub(super) const TERRAFORM_KEYS: &[&str] = &[
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
pub(super) fn query_error(e: &clap::Error) -> String {
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
    let args = query_args(&input)?;
    let cli = Cli::try_parse_from(&args).map_err(|e| Failure::Usage(query_error(&e)))?;
    let mut out = Vec::new();
    let notes;
    {
        // Problems go to stderr as they would on the command line (Terraform shows
        // them in `terraform plan`), but without the source excerpt's colours.
        let mut said = Vec::new();
        let result = generate(&cli.generate, &mut Io { stdout: &mut out, stderr: &mut said });
        io.stderr.write_all(&said)?;
        if matches!(result, Err(Failure::StrictWarnings)) {
            writeln!(
                io.stderr,
                "note: mk8s-gen terraform treats warnings as errors (Terraform does not show them on success); \
                 add strict = \"false\" to the query to accept them"
            )?;
        }
        result?;
        // Terraform shows nothing a program says on stderr when it succeeds: the
        // notes (what the image must already have, ...) go into the result too.
        notes = String::from_utf8_lossy(&said)
            .lines()
            .filter(|l| l.starts_with("note: ") || l.starts_with("warning"))
            .collect::<Vec<_>>()
            .join("\n");
    }
    use base64::Engine as _;
    let text_ok = std::str::from_utf8(&out).is_ok();
    let result = serde_json::json!({
        "user_data": if text_ok { String::from_utf8_lossy(&out).to_string() } else { String::new() },
        "user_data_base64": base64::engine::general_purpose::STANDARD.encode(&out),
        "sha256": mk8s_bootstrap::plan::sha256_hex(&out),
        "size": out.len().to_string(),
        "notes": notes,
    });
    writeln!(io.stdout, "{result}")?;
    Ok(())
}

/// The command line a query stands for: each key as its flag, `--strict` unless
/// the query says `strict = "false"`.
fn query_args(input: &str) -> Result<Vec<String>, Failure> {
    let query: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(input).map_err(|e| Failure::Usage(format!("the query is not a JSON object: {e}")))?;
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
    Ok(args)
}
