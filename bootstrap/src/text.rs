//! Text helpers: URLs as they may be logged, and args files merged line by line.

/// A URL as it may be logged: its query string (a presigned URL's signature, a
/// token) replaced by `?<redacted>`, and any `user:password@` dropped.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, _)) => (b, "?<redacted>"),
        None => (url, ""),
    };
    let base = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            match authority.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://<redacted>@{host}{path}"),
                None => base.to_string(),
            }
        }
        None => base.to_string(),
    };
    format!("{base}{query}")
}

/// Make sure `args` (`--flag=value` or `--flag`) are set in an args file, replacing
/// any earlier value of the same flag and keeping every other line. Returns the new
/// content, or None when nothing changes.
pub fn merge_args(existing: &str, args: &[String]) -> Option<String> {
    let flag = |line: &str| line.split('=').next().unwrap_or(line).trim().to_string();
    let ours: Vec<String> = args.iter().map(|a| flag(a)).collect();
    let mut out: Vec<String> =
        existing.lines().filter(|l| !ours.contains(&flag(l)) || l.trim().is_empty()).map(str::to_string).collect();
    while out.last().is_some_and(|l| l.trim().is_empty()) {
        out.pop();
    }
    out.extend(args.iter().cloned());
    let mut text = out.join("\n");
    text.push('\n');
    (text != existing).then_some(text)
}

/// What keeps an args file from holding `args`: each of our lines missing, and
/// each other line that sets one of our flags (`--flag=other`). Order and the lines
/// of others do not matter. Empty when the file holds them all.
pub fn args_missing(existing: &str, args: &[String]) -> Vec<String> {
    let flag = |line: &str| line.split('=').next().unwrap_or(line).trim().to_string();
    let lines: Vec<&str> = existing.lines().map(str::trim).collect();
    let mut out = Vec::new();
    for a in args {
        if !lines.contains(&a.as_str()) {
            out.push(format!("{a} is missing"));
        }
        for l in lines.iter().filter(|l| flag(l) == flag(a) && *l != a) {
            out.push(format!("{l} sets {} otherwise", flag(a)));
        }
    }
    out
}

/// The value of `--flag` in an args file (`--flag=value`, quotes trimmed), last wins.
pub fn arg_value(existing: &str, flag: &str) -> Option<String> {
    existing
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix(flag)?.strip_prefix('='))
        .map(|v| v.trim().trim_matches('"').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted_for_logs() {
        assert_eq!(redact_url("https://a.example/x.tar.gz"), "https://a.example/x.tar.gz");
        assert_eq!(
            redact_url("https://b.s3.amazonaws.com/t?X-Amz-Signature=abc&X-Amz-Credential=k"),
            "https://b.s3.amazonaws.com/t?<redacted>"
        );
        assert_eq!(redact_url("https://u:p@a.example/x"), "https://<redacted>@a.example/x");
    }

    #[test]
    fn merge_args_replaces_ours_and_keeps_the_rest() {
        let existing = "--kubeconfig=${SNAP_DATA}/credentials/kubelet.config\n--node-labels=\"microk8s.io/cluster=true\"\n--cluster-dns=1.2.3.4\n";
        let args = vec!["--cluster-dns=10.152.183.10".to_string(), "--node-labels=a=b".to_string()];
        let merged = merge_args(existing, &args).unwrap();
        assert_eq!(
            merged,
            "--kubeconfig=${SNAP_DATA}/credentials/kubelet.config\n--cluster-dns=10.152.183.10\n--node-labels=a=b\n"
        );
        assert_eq!(merge_args(&merged, &args), None, "idempotent");
        assert!(args_missing(&merged, &args).is_empty());
        // Our lines before another's still hold: only a merge would reorder them.
        let reordered = "--cluster-dns=10.152.183.10\n--node-labels=a=b\n--added-by-a-refresh=1\n";
        assert!(args_missing(reordered, &args).is_empty());
        assert_eq!(
            args_missing(existing, &args),
            [
                "--cluster-dns=10.152.183.10 is missing",
                "--cluster-dns=1.2.3.4 sets --cluster-dns otherwise",
                "--node-labels=a=b is missing",
                "--node-labels=\"microk8s.io/cluster=true\" sets --node-labels otherwise"
            ]
        );
        assert_eq!(arg_value(existing, "--cluster-dns").as_deref(), Some("1.2.3.4"));
        assert_eq!(arg_value(existing, "--cluster").as_deref(), None);
    }
}
