//! The state directory, shared by the CLI commands and the daemons: the model's
//! state file, its logs, the node's args files and paths under its root.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::versions::{minor_of, Range, Row};
use super::{SNAP_COMMON, SNAP_DATA};

pub(super) fn unix_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}

pub(super) struct Ctx {
    pub(super) dir: PathBuf,
    pub(super) root: PathBuf,
    pub(super) bin: PathBuf,
    pub(super) state: Value,
    pub(super) range: Range,
    /// What this node's release does.
    pub(super) row: &'static Row,
    pub(super) minor: u32,
}

impl Ctx {
    pub(super) fn load(dir: &Path) -> Ctx {
        let text = fs::read_to_string(dir.join("model.json")).expect("model.json: not a model state directory");
        let state: Value = serde_json::from_str(&text).expect("model.json is JSON");
        let channel = state["channel"].as_str().unwrap_or("").to_string();
        let upgraded = state["upgraded"].as_bool().unwrap_or(false);
        Ctx {
            dir: dir.to_path_buf(),
            root: PathBuf::from(state["root"].as_str().unwrap_or("/")),
            bin: PathBuf::from(state["bin"].as_str().unwrap_or("")),
            range: Range::from_channel(&channel, upgraded),
            row: Row::of(&channel),
            minor: minor_of(&channel),
            state,
        }
    }

    /// The node's own systemd runs the snap's units ([`install_in_root`]).
    pub(super) fn systemd(&self) -> bool {
        self.state["systemd"].as_bool().unwrap_or(false)
    }

    pub(super) fn s(&self, key: &str) -> String {
        self.state[key].as_str().unwrap_or("").to_string()
    }

    pub(super) fn n(&self, key: &str) -> u64 {
        self.state[key].as_u64().unwrap_or(0)
    }

    pub(super) fn set_state(&mut self, key: &str, v: Value) {
        self.state[key] = v;
        // Atomically: a daemon starting at this moment reads model.json whole or
        // not at all (a truncated read killed it before it logged a line).
        let tmp = self.dir.join(format!("model.json.{}", std::process::id()));
        if fs::write(&tmp, serde_json::to_string_pretty(&self.state).unwrap()).is_ok() {
            let _ = fs::rename(&tmp, self.dir.join("model.json"));
        }
    }

    pub(super) fn snap_data(&self, rel: &str) -> PathBuf {
        self.root.join(SNAP_DATA).join(rel)
    }

    pub(super) fn lock(&self, name: &str) -> bool {
        self.snap_data(&format!("var/lock/{name}")).exists()
    }

    pub(super) fn installed(&self) -> bool {
        self.snap_data("args").exists()
    }

    pub(super) fn append(&self, file: &str, line: &str) {
        if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(self.dir.join(file)) {
            let _ = writeln!(f, "{line}");
        }
    }

    pub(super) fn event(&self, msg: &str) {
        self.append("events.log", &format!("{} {msg}", unix_ms()));
    }

    /// Expand `${SNAP_DATA}`, `$SNAP_DATA`, `${SNAP_COMMON}` to paths under the root.
    pub(super) fn expand(&self, s: &str) -> String {
        // The revisioned path, as snapd sets `SNAP_DATA`, not `current`.
        let sd = self.revision_dir(self.revision()).display().to_string();
        let sc = self.root.join(SNAP_COMMON).display().to_string();
        s.replace("${SNAP_DATA}", &sd).replace("$SNAP_DATA", &sd).replace("${SNAP_COMMON}", &sc)
    }

    /// A path a file names: MicroK8s's own absolute paths (`/var/snap/microk8s/...`,
    /// as the worker join writes them into kubeconfigs) are under the root.
    pub(super) fn node_path(&self, p: &str) -> PathBuf {
        match p.strip_prefix("/var/snap/microk8s/") {
            Some(rest) => self.root.join("var/snap/microk8s").join(rest),
            None => PathBuf::from(p),
        }
    }

    /// An args file as the wrappers read it: `--flag=value` lines, quotes
    /// stripped, variables expanded (kubelite `ReadArgsFromFile`, F6).
    pub(super) fn args(&self, file: &str) -> BTreeMap<String, String> {
        let text = fs::read_to_string(self.snap_data(&format!("args/{file}"))).unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with("--"))
            .map(|l| {
                let (k, v) = l.split_once(['=', ' ']).unwrap_or((l, ""));
                (k.to_string(), self.expand(v.trim().trim_matches('"').trim_matches('\'')))
            })
            .collect()
    }

    pub(super) fn write_args(&self, name: &str, text: &str) {
        let p = self.snap_data(&format!("args/{name}"));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, text).unwrap();
        let _ = fs::set_permissions(&p, fs::Permissions::from_mode(0o660));
    }

    pub(super) fn write_secret(&self, rel: &str, text: &str) {
        let p = self.snap_data(rel);
        fs::write(&p, text).unwrap();
        let _ = fs::set_permissions(&p, fs::Permissions::from_mode(0o600));
    }

    /// `set_arg(key, value, file)`: replace or append `key=value`; None removes it.
    pub(super) fn set_arg(&self, file: &str, key: &str, value: Option<&str>) {
        let p = self.snap_data(&format!("args/{file}"));
        let text = fs::read_to_string(&p).unwrap_or_default();
        let flag = |l: &str| l.split(['=', ' ']).next().unwrap_or("").to_string();
        let mut lines: Vec<String> = Vec::new();
        let mut done = false;
        for l in text.lines() {
            if flag(l) == key {
                if let (Some(v), false) = (value, done) {
                    lines.push(format!("{key}={v}"));
                    done = true;
                }
                continue;
            }
            lines.push(l.to_string());
        }
        if let (Some(v), false) = (value, done) {
            lines.push(format!("{key}={v}"));
        }
        self.write_args(file, &(lines.join("\n") + "\n"));
    }

    /// `UpdateServiceArguments` (CA 1.30:pkg/snap/services.go:L39-107): a line's key
    /// is what precedes the first `=` (else the first space,
    /// CA 1.30:pkg/util/files.go:L40-52); a line whose key is updated becomes
    /// `key=value` in place, a deleted one goes, new keys are appended (in the
    /// document's order here; Go's map order upstream). Whether anything changed.
    pub(super) fn update_service_arguments(&self, file: &str, updates: &[(String, Option<String>)]) -> bool {
        if updates.is_empty() {
            return false;
        }
        let text = fs::read_to_string(self.snap_data(&format!("args/{file}"))).unwrap_or_default();
        let parse = |l: &str| -> (String, String) {
            match l.split_once('=') {
                Some((k, v)) => (k.to_string(), v.split('=').next().unwrap_or("").to_string()),
                None => match l.split_once(' ') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (l.to_string(), String::new()),
                },
            }
        };
        let mut changed = false;
        let mut seen: Vec<String> = Vec::new();
        let mut lines = Vec::new();
        for l in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (key, old) = parse(l);
            seen.push(key.clone());
            match updates.iter().rev().find(|(k, _)| *k == key) {
                Some((_, Some(new))) => {
                    lines.push(format!("{key}={new}"));
                    changed |= old != *new;
                }
                Some((_, None)) => changed = true,
                None => lines.push(l.to_string()),
            }
        }
        for (k, v) in updates {
            if let (Some(v), false) = (v, seen.contains(k)) {
                seen.push(k.clone());
                lines.push(format!("{k}={v}"));
                changed = true;
            }
        }
        self.write_args(file, &(lines.join("\n") + "\n"));
        changed
    }

    /// One word of an ExecStart= line, mapped to this root.
    pub(super) fn map_arg(&self, word: &str) -> String {
        let (prefix, path) = match word.split_once('=') {
            Some((k, v)) if k.starts_with('-') => (format!("{k}="), v),
            _ => (String::new(), word),
        };
        if !path.starts_with('/') {
            return word.to_string();
        }
        let under = self.root.join(path.trim_start_matches('/'));
        match fs::read_to_string(&under) {
            // A configuration file: a copy with the node paths it names mapped.
            Ok(text) => {
                let mapped = self.map_paths_in(&text);
                format!("{prefix}{}", self.relocated(path.trim_start_matches('/'), &mapped).display())
            }
            Err(_) => format!("{prefix}{}", under.display()),
        }
    }

    /// The program of an ExecStart= line: under the root if it is a real
    /// executable there, else the host's (from PATH).
    pub(super) fn map_program(&self, path: &str) -> String {
        let under = self.root.join(path.trim_start_matches('/'));
        let usable = fs::metadata(&under).map(|m| m.len() > 0 && m.permissions().mode() & 0o111 != 0);
        if usable.unwrap_or(false) {
            return under.display().to_string();
        }
        let base = Path::new(path).file_name().and_then(|b| b.to_str()).unwrap_or("");
        crate::tools::require(base).display().to_string()
    }

    /// Where a program of the host reads the node's configuration file `rel`:
    /// `mapped`, its text with the node paths it names mapped under the root
    /// ([`Ctx::map_paths_in`]).
    pub(in crate::node_model) fn relocated(&self, rel: &str, mapped: &str) -> PathBuf {
        let dest = self.dir.join("relocated").join(rel);
        let _ = fs::create_dir_all(dest.parent().unwrap());
        let _ = fs::write(&dest, mapped);
        dest
    }

    /// The kubeconfig a program of the host reads for the node's `path`: a copy
    /// ([`Ctx::relocated`]) when the file names node paths
    /// (1.24-1.27 `create_x509_kubeconfig`: `/var/snap/microk8s/current/certs/kubelet.crt`),
    /// else `path` itself.
    pub(in crate::node_model) fn host_kubeconfig(&self, path: &str) -> String {
        let p = PathBuf::from(path);
        let (Ok(text), Ok(rel)) = (fs::read_to_string(&p), p.strip_prefix(&self.root)) else { return path.to_string() };
        let mapped = self.map_paths_in(&text);
        if mapped == text {
            return path.to_string();
        }
        self.relocated(&rel.to_string_lossy(), &mapped).display().to_string()
    }

    pub(in crate::node_model) fn map_paths_in(&self, text: &str) -> String {
        let mut out = String::new();
        let mut word = String::new();
        let flush = |word: &mut String, out: &mut String| {
            if word.starts_with('/') && self.root.join(word.trim_start_matches('/')).exists() {
                out.push_str(&self.root.join(word.trim_start_matches('/')).display().to_string());
            } else {
                out.push_str(word);
            }
            word.clear();
        };
        for c in text.chars() {
            if c.is_whitespace() || c == '"' || c == '\'' {
                flush(&mut word, &mut out);
                out.push(c);
            } else {
                word.push(c);
            }
        }
        flush(&mut word, &mut out);
        out
    }
}
