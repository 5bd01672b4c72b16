//! The two files the balancer reads, as the generator writes them for every
//! balancer kind: `traefik.yaml` (the listener and where the provider file is) and
//! the provider file (servers, health check, dial timeout). Both are JSON objects
//! after whole-line `#` comments; JSON is YAML, so traefik and MicroK8s's
//! apiserver-proxy read the same files. No YAML parser: it would weigh more than
//! the whole balancer.
//!
//! Read keys (everything else, the routers included, is ignored):
//! `entryPoints.apiserver.address`, `providers.file.filename`;
//! `tcp.services.kube-apiserver.loadBalancer.{servers[].address, healthCheck.interval,
//! healthCheck.timeout, serversTransport}` and that transport's
//! `tcp.serversTransports.NAME.dialTimeout`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

/// `traefik.yaml`: where to listen and where the servers are listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub listen: SocketAddr,
    pub provider: PathBuf,
}

/// The provider file: the servers and the timings it sets (None: not set there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    pub servers: Vec<SocketAddr>,
    pub check_interval: Option<Duration>,
    pub check_timeout: Option<Duration>,
    pub dial_timeout: Option<Duration>,
}

/// The command line's tuning: a `Some` wins over the provider file's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuning {
    pub check_interval: Option<Duration>,
    pub check_timeout: Option<Duration>,
    pub dial_timeout: Option<Duration>,
    pub first_byte: Duration,
    pub last_wait: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    pub stall: Duration,
    pub suspect_gap: Duration,
    pub reload_every: Duration,
    pub max_conns: usize,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            check_interval: None,
            check_timeout: None,
            dial_timeout: None,
            first_byte: Duration::from_secs(1),
            last_wait: Duration::from_secs(30),
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(120),
            stall: Duration::from_secs(5),
            suspect_gap: Duration::from_secs(5),
            reload_every: Duration::from_secs(2),
            max_conns: 1024,
        }
    }
}

/// The timings in force: the command line's, else the provider file's, else these
/// defaults (a 300 s sweep, 1 s check and dial timeouts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub check_interval: Duration,
    pub check_timeout: Duration,
    pub dial_timeout: Duration,
    pub first_byte: Duration,
    pub last_wait: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    pub stall: Duration,
    pub suspect_gap: Duration,
    pub max_conns: usize,
}

impl Tuning {
    pub fn settings(&self, p: &Provider) -> Settings {
        let pick = |flag: Option<Duration>, file: Option<Duration>, default: u64| {
            flag.or(file).unwrap_or(Duration::from_secs(default))
        };
        Settings {
            check_interval: pick(self.check_interval, p.check_interval, 300),
            check_timeout: pick(self.check_timeout, p.check_timeout, 1),
            dial_timeout: pick(self.dial_timeout, p.dial_timeout, 1),
            first_byte: self.first_byte,
            last_wait: self.last_wait,
            backoff_base: self.backoff_base,
            backoff_cap: self.backoff_cap,
            stall: self.stall,
            suspect_gap: self.suspect_gap,
            max_conns: self.max_conns,
        }
    }
}

/// The longest duration accepted: far beyond any sensible timing, and short
/// enough that adding it to the clock cannot overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 86_400);

/// A duration as traefik writes one: an integer with `ms`, `s`, `m` or `h`
/// (`300s`, `500ms`, `5m`); a bare integer is seconds, as traefik reads it. At
/// most [`MAX_DURATION`].
pub fn duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..digits].parse().ok()?;
    let ms = match &s[digits..] {
        "ms" => 1,
        "s" | "" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    Some(Duration::from_millis(n.checked_mul(ms)?)).filter(|d| *d <= MAX_DURATION)
}

/// The file's text with whole-line `#` comments blanked (line numbers kept, so
/// serde_json's line:column points into the file).
pub fn strip_comments(text: &str) -> String {
    text.lines().map(|l| if l.trim_start().starts_with('#') { "" } else { l }).collect::<Vec<_>>().join("\n")
}

fn parse(text: &str, what: &Path) -> Result<Value, String> {
    serde_json::from_str(&strip_comments(text)).map_err(|e| {
        format!(
            "{}:{}:{}: not JSON ({e}); the file must be one JSON object after `#` comment lines",
            what.display(),
            e.line(),
            e.column()
        )
    })
}

fn read(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text, path)
}

fn string<'a>(v: &'a Value, pointer: &str, file: &Path) -> Result<&'a str, String> {
    v.pointer(pointer).and_then(Value::as_str).ok_or_else(|| missing(pointer, file, "a string"))
}

fn missing(pointer: &str, file: &Path, what: &str) -> String {
    format!("{}: {} must be {what}", file.display(), pointer.trim_start_matches('/').replace('/', "."))
}

/// A duration field, longer than 0: a string as [`duration`] reads it, or a
/// number of seconds.
fn duration_at(v: &Value, pointer: &str, file: &Path) -> Result<Option<Duration>, String> {
    let d = match v.pointer(pointer) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_u64().and_then(|s| duration(&s.to_string())),
        Some(Value::String(s)) => duration(s),
        Some(_) => None,
    };
    d.filter(|d| !d.is_zero()).map(Some).ok_or_else(|| missing(pointer, file, "a duration such as 300s, 500ms or 5m"))
}

/// An `IP:PORT` (`[v6]:PORT` for IPv6); traefik's `:PORT` means every address.
fn address(s: &str) -> Option<SocketAddr> {
    match s.strip_prefix(':') {
        Some(port) => Some(SocketAddr::from(([0, 0, 0, 0], port.parse().ok()?))),
        None => s.parse().ok(),
    }
}

/// Read `traefik.yaml`.
pub fn read_entry(path: &Path) -> Result<Entry, String> {
    entry(&read(path)?, path)
}

pub fn entry(v: &Value, file: &Path) -> Result<Entry, String> {
    let at = "/entryPoints/apiserver/address";
    let listen = address(string(v, at, file)?).ok_or_else(|| missing(at, file, "an IP:PORT address"))?;
    let provider = PathBuf::from(string(v, "/providers/file/filename", file)?);
    Ok(Entry { listen, provider })
}

/// Read the provider file. An empty server list is an error: never balance onto
/// nothing.
pub fn read_provider(path: &Path) -> Result<Provider, String> {
    provider(&read(path)?, path)
}

pub fn provider(v: &Value, file: &Path) -> Result<Provider, String> {
    let lb = "/tcp/services/kube-apiserver/loadBalancer";
    let list = v.pointer(&format!("{lb}/servers")).and_then(Value::as_array);
    let list = list.ok_or_else(|| missing(&format!("{lb}/servers"), file, "a list"))?;
    let mut servers = Vec::new();
    for i in 0..list.len() {
        let at = format!("{lb}/servers/{i}/address");
        let addr = address(string(v, &at, file)?).ok_or_else(|| missing(&at, file, "an IP:PORT address"))?;
        if !servers.contains(&addr) {
            servers.push(addr);
        }
    }
    if servers.is_empty() {
        return Err(format!("{}: {} lists no server", file.display(), &lb[1..].replace('/', ".")));
    }
    let dial_timeout = match v.pointer(&format!("{lb}/serversTransport")) {
        None | Some(Value::Null) => None,
        Some(name) => {
            let name = name.as_str().ok_or_else(|| missing(&format!("{lb}/serversTransport"), file, "a name"))?;
            let t = format!("/tcp/serversTransports/{name}");
            if v.pointer(&t).is_none() {
                return Err(format!(
                    "{}: serversTransport {name:?} is not under tcp.serversTransports",
                    file.display()
                ));
            }
            duration_at(v, &format!("{t}/dialTimeout"), file)?
        }
    };
    Ok(Provider {
        servers,
        check_interval: duration_at(v, &format!("{lb}/healthCheck/interval"), file)?,
        check_timeout: duration_at(v, &format!("{lb}/healthCheck/timeout"), file)?,
        dial_timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRAEFIK: &str = "# Generated by mk8s-gen.\n  # indented comment\n{\"global\":{\"checkNewVersion\":false},\"log\":{\"level\":\"INFO\"},\n\"entryPoints\":{\"apiserver\":{\"address\":\"127.0.0.1:16443\"}},\n\"providers\":{\"file\":{\"filename\":\"/etc/mk8s-worker/balancer/provider.yaml\",\"watch\":true}}}\n";

    const PROVIDER: &str = r##"# Generated by mk8s-gen: the control plane.
# kind: builtin
{"tcp":{"routers":{"apiserver":{"entryPoints":["apiserver"],"rule":"HostSNI(`*`)","service":"kube-apiserver","tls":{"passthrough":true}}},
 "services":{"kube-apiserver":{"loadBalancer":{"serversTransport":"kube-apiserver",
   "healthCheck":{"interval":"300s","timeout":"1s"},
   "servers":[{"address":"10.0.0.2:16443"},{"address":"[fd00::2]:16443"},{"address":"10.0.0.2:16443"}]}}},
 "serversTransports":{"kube-apiserver":{"dialTimeout":"750ms","dialKeepAlive":"15s"}}}}
"##;

    fn p(text: &str) -> Result<Provider, String> {
        provider(&parse(text, Path::new("provider.yaml"))?, Path::new("provider.yaml"))
    }

    #[test]
    fn reads_the_generated_files_with_their_comments() {
        let e = entry(&parse(TRAEFIK, Path::new("t")).unwrap(), Path::new("t")).unwrap();
        assert_eq!(e.listen, "127.0.0.1:16443".parse().unwrap());
        assert_eq!(e.provider, PathBuf::from("/etc/mk8s-worker/balancer/provider.yaml"));
        let pr = p(PROVIDER).unwrap();
        let want: Vec<SocketAddr> = vec!["10.0.0.2:16443".parse().unwrap(), "[fd00::2]:16443".parse().unwrap()];
        assert_eq!(pr.servers, want, "in order, the duplicate once");
        assert_eq!(pr.check_interval, Some(Duration::from_secs(300)));
        assert_eq!(pr.check_timeout, Some(Duration::from_secs(1)));
        assert_eq!(pr.dial_timeout, Some(Duration::from_millis(750)));
    }

    #[test]
    fn durations() {
        assert_eq!(duration("300s"), Some(Duration::from_secs(300)));
        assert_eq!(duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(duration("30"), Some(Duration::from_secs(30)), "traefik: bare seconds");
        assert_eq!(duration("0s"), Some(Duration::ZERO));
        assert_eq!(duration("2400h"), Some(MAX_DURATION));
        assert_eq!(duration("2401h"), None, "the clock plus it must not overflow");
        for bad in ["", "s", "1.5s", "-1s", "1d", "1 s", "99999999999999999999s", "18446744073709551615h"] {
            assert_eq!(duration(bad), None, "{bad}");
        }
        let v = parse(r#"{"a":{"b":30,"c":"x","d":true}}"#, Path::new("f")).unwrap();
        assert_eq!(duration_at(&v, "/a/b", Path::new("f")), Ok(Some(Duration::from_secs(30))));
        assert_eq!(duration_at(&v, "/a/z", Path::new("f")), Ok(None));
        assert_eq!(
            duration_at(&v, "/a/c", Path::new("f")).unwrap_err(),
            "f: a.c must be a duration such as 300s, 500ms or 5m"
        );
        assert!(duration_at(&v, "/a/d", Path::new("f")).is_err());
        let huge = parse(r#"{"a":18446744073709551615}"#, Path::new("f")).unwrap();
        assert!(duration_at(&huge, "/a", Path::new("f")).is_err());
        let zero = parse(r#"{"a":"0s"}"#, Path::new("f")).unwrap();
        assert!(duration_at(&zero, "/a", Path::new("f")).is_err(), "a zero timeout would fail every dial");
    }

    #[test]
    fn defaults_and_flags_over_the_file() {
        let pr = Provider {
            servers: vec![],
            check_interval: Some(Duration::from_secs(60)),
            check_timeout: None,
            dial_timeout: None,
        };
        let s = Tuning::default().settings(&pr);
        assert_eq!(
            (s.check_interval, s.check_timeout, s.dial_timeout),
            (Duration::from_secs(60), Duration::from_secs(1), Duration::from_secs(1))
        );
        let t = Tuning { check_interval: Some(Duration::from_secs(2)), ..Tuning::default() };
        assert_eq!(t.settings(&pr).check_interval, Duration::from_secs(2));
        let none = Provider { check_interval: None, ..pr };
        assert_eq!(Tuning::default().settings(&none).check_interval, Duration::from_secs(300));
    }

    #[test]
    fn refuses_garbage_an_empty_list_and_bad_addresses() {
        let e = p("# comment\n{\"tcp\": [1, 2,\n oops}").unwrap_err();
        assert!(e.starts_with("provider.yaml:3:"), "{e}");
        assert!(p("tcp:\n  services: {}\n").unwrap_err().contains("not JSON"), "real YAML is refused, not misread");
        assert!(p("").unwrap_err().contains("not JSON"));
        let empty = r#"{"tcp":{"services":{"kube-apiserver":{"loadBalancer":{"servers":[]}}}}}"#;
        assert_eq!(p(empty).unwrap_err(), "provider.yaml: tcp.services.kube-apiserver.loadBalancer lists no server");
        let no_list = r#"{"tcp":{"services":{"kube-apiserver":{"loadBalancer":{}}}}}"#;
        assert!(p(no_list).unwrap_err().contains("loadBalancer.servers must be a list"));
        let name = r#"{"tcp":{"services":{"kube-apiserver":{"loadBalancer":{"servers":[{"address":"cp1:16443"}]}}}}}"#;
        assert!(p(name).unwrap_err().contains("servers.0.address must be an IP:PORT address"));
        let transport = r#"{"tcp":{"services":{"kube-apiserver":{"loadBalancer":{"serversTransport":"t","servers":[{"address":"10.0.0.2:1"}]}}}}}"#;
        assert!(p(transport).unwrap_err().contains("serversTransport \"t\" is not under"));
        let minimal =
            r#"{"tcp":{"services":{"kube-apiserver":{"loadBalancer":{"servers":[{"address":"10.0.0.2:1"}]}}}}}"#;
        assert_eq!(p(minimal).unwrap().check_interval, None);
        let bad_entry =
            parse(r#"{"entryPoints":{"apiserver":{"address":"localhost:16443"}}}"#, Path::new("t")).unwrap();
        assert!(entry(&bad_entry, Path::new("t")).unwrap_err().contains("entryPoints.apiserver.address"));
        let colon = parse(
            r#"{"entryPoints":{"apiserver":{"address":":16443"}},"providers":{"file":{"filename":"p"}}}"#,
            Path::new("t"),
        );
        assert_eq!(entry(&colon.unwrap(), Path::new("t")).unwrap().listen, "0.0.0.0:16443".parse().unwrap());
    }
}
