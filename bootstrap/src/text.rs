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
    }
}
