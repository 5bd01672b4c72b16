//! Helpers shared by the generator's integration tests.
#![allow(dead_code)]

use std::fs;
use std::path::Path;

use mk8s_gen::render::{self, Delivery, FileContent, NodeOutput};
use mk8s_gen::secrets::Secrets;
use mk8s_testkit::workspace;

/// Render one node through the library, like the CLI does.
pub fn render_facts(facts_yaml: &str, dir: &Path, node: &str) -> NodeOutput {
    render_facts_with(facts_yaml, dir, node, &Delivery::Preinstalled)
}

/// [`render_facts`] with a bootstrap delivery.
pub fn render_facts_with(facts_yaml: &str, dir: &Path, node: &str, delivery: &Delivery) -> NodeOutput {
    let facts = mk8s_gen::load(facts_yaml, dir).valid("facts", facts_yaml).unwrap_or_else(|e| panic!("{e}"));
    let secrets = Secrets::parse(&fs::read_to_string(workspace().join("fixtures/seed/secrets.yaml")).unwrap()).unwrap();
    render::render_node(&facts, &secrets, facts.worker(node).unwrap(), delivery).unwrap()
}

pub fn text_of<'a>(out: &'a NodeOutput, path: &str) -> &'a str {
    match &out.files.iter().find(|f| f.path == path).unwrap_or_else(|| panic!("{path} not generated")).content {
        FileContent::Text(t) => t,
        FileContent::GzipBase64(_) => panic!("{path} is binary"),
    }
}

/// Three simulated apiservers behind a real node-local load balancer.
pub mod lb {
    use std::fs;
    use std::net::SocketAddr;
    use std::path::Path;
    use std::process::Command;
    use std::sync::Arc;
    use std::time::Duration;

    use mk8s_gen::render::NodeOutput;
    use mk8s_testkit::apiserver::SimApiserver;
    use mk8s_testkit::pki::Ca;
    use mk8s_testkit::proc::{free_port, wait_listening, Guard};
    use mk8s_testkit::tls::https_get;
    use mk8s_testkit::tools;

    use super::{render_facts, text_of};

    /// The worker's token, known to every apiserver: clients through the balancer
    /// authenticate, since the apiservers run MicroK8s's default AlwaysAllow, which
    /// refuses every anonymous request (the balancers' own checks stay anonymous).
    pub const TOKEN: &str = "0123456789abcdef0123456789abcdef";
    const KNOWN_TOKENS: &str = "0123456789abcdef0123456789abcdef,system:node:w,kubelet-w,\"system:nodes\"\n";

    pub struct Cluster {
        pub ca: Arc<Ca>,
        pub sims: Vec<SimApiserver>,
        pub lb: SocketAddr,
        pub lb_process: Guard,
        dir: tempfile::TempDir,
    }

    impl Cluster {
        /// What the balancer printed (its journal, on a node).
        pub fn lb_log(&self, kind: &str) -> String {
            fs::read_to_string(self.dir.path().join(format!("{kind}.log"))).unwrap_or_default()
        }
    }

    pub fn cluster(kind: &str) -> Cluster {
        cluster_as(kind, false)
    }

    /// As [`cluster`]; `unprivileged` runs the balancer as its unit does: not root
    /// (nobody), with no capabilities and no way to gain privileges, reading its
    /// configuration as a world-readable file.
    pub fn cluster_as(kind: &str, unprivileged: bool) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let ca = Arc::new(Ca::new("failover-ca"));
        let port = free_port();
        let sims: Vec<_> = (2..=4)
            .map(|i| SimApiserver::start_at(ca.clone(), format!("127.0.0.{i}:{port}").parse().unwrap(), KNOWN_TOKENS))
            .collect();
        fs::write(dir.path().join("ca.crt"), &ca.cert_pem).unwrap();
        let facts = format!(
            "cluster:\n  name: fo\n  microk8s: {{ channel: 1.30/stable }}\n  ca: {{ cert-file: {} }}\n  apiserver-port: {port}\n  control-plane:\n    - {{ name: a, address: 127.0.0.2 }}\n    - {{ name: b, address: 127.0.0.3 }}\n    - {{ name: c, address: 127.0.0.4 }}\n  load-balancer: {{ mode: node-local, kind: {kind}, health-check: {{ interval: 1s, timeout: 500ms }} }}\nworkers:\n  - {{ name: w }}\n",
            dir.path().join("ca.crt").display()
        );
        let out = render_facts(&facts, dir.path(), "w");
        let lb: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let process = start_lb(kind, &out, dir.path(), unprivileged);
        assert!(wait_listening(lb, Duration::from_secs(20)), "{kind} did not listen on {lb}");
        Cluster { ca, sims, lb, lb_process: process, dir }
    }

    /// The real program's executable, where an unprivileged user can run it.
    fn program(kind: &str, dir: &Path, unprivileged: bool) -> std::path::PathBuf {
        let mut path = tools::require(kind);
        if !unprivileged {
            return path;
        }
        if !fs::read(&path).unwrap().starts_with(b"\x7fELF") {
            // A version manager's shim (e.g. pyenv): pip put the binary in the
            // interpreter's scripts directory.
            let o = Command::new(tools::require("python3"))
                .args(["-c", "import sysconfig; print(sysconfig.get_path('scripts'))"])
                .output()
                .unwrap();
            path = Path::new(String::from_utf8_lossy(&o.stdout).trim()).join(kind);
        }
        // Home directories may be closed to others: run a copy, as from /usr/local/bin.
        let copy = dir.join(kind);
        fs::copy(&path, &copy).unwrap();
        fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        copy
    }

    /// `program` as the unit runs it: uid/gid nobody, no supplementary groups, no
    /// capabilities (bounding, inheritable, ambient), no new privileges.
    fn command(program: &Path, unprivileged: bool) -> Command {
        if !unprivileged {
            return Command::new(program);
        }
        let mut c = Command::new(tools::require("setpriv"));
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--ambient-caps=-all"]);
        c.args(["--bounding-set=-all", "--no-new-privs", "--"]).arg(program);
        c
    }

    /// Start the real program with the generated files (relocated from /etc to `dir`).
    pub fn start_lb(kind: &str, out: &NodeOutput, dir: &Path, unprivileged: bool) -> Guard {
        if unprivileged {
            // A temporary directory is 0700; /etc/mk8s-worker is 0755.
            fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
        let log = fs::File::create(dir.join(format!("{kind}.log"))).unwrap();
        let bin = program(kind, dir, unprivileged);
        match kind {
            "traefik" => {
                let provider = dir.join("provider.yaml");
                fs::write(&provider, text_of(out, "/etc/mk8s-worker/traefik/provider.yaml")).unwrap();
                let static_cfg = dir.join("traefik.yaml");
                let text = text_of(out, "/etc/mk8s-worker/traefik/traefik.yaml");
                fs::write(
                    &static_cfg,
                    text.replace("/etc/mk8s-worker/traefik/provider.yaml", provider.to_str().unwrap()),
                )
                .unwrap();
                Guard::spawn(
                    command(&bin, unprivileged)
                        .arg(format!("--configFile={}", static_cfg.display()))
                        .stdout(log.try_clone().unwrap())
                        .stderr(log),
                )
            }
            "haproxy" => {
                let cfg = dir.join("haproxy.cfg");
                fs::write(&cfg, text_of(out, "/etc/mk8s-worker/haproxy/haproxy.cfg")).unwrap();
                let check = command(&bin, unprivileged).arg("-c").arg("-f").arg(&cfg).output().unwrap();
                assert!(check.status.success(), "haproxy -c: {}", String::from_utf8_lossy(&check.stdout));
                Guard::spawn(
                    command(&bin, unprivileged)
                        .arg("-db")
                        .arg("-f")
                        .arg(&cfg)
                        .stdout(log.try_clone().unwrap())
                        .stderr(log),
                )
            }
            other => panic!("no program for {other}"),
        }
    }

    impl Cluster {
        /// One request through the LB, verified against the cluster CA, that must land
        /// on one of `live` and show that apiserver's own certificate.
        pub fn ok_on(&self, live: &[usize]) -> bool {
            match https_get(self.lb, "/readyz", Some(&self.ca), Some(TOKEN)) {
                Ok(r) => r.status == 200 && live.iter().any(|&i| self.sims[i].cert_der == r.peer_cert),
                Err(_) => false,
            }
        }

        pub fn requests_to(&self, i: usize) -> usize {
            self.sims[i].requests().iter().filter(|r| r.1 == "/readyz").count()
        }
    }
}

/// `mk8s-gen control-plane --cluster CLUSTER --secrets SECRETS --out OUT`, run as the
/// real binary.
pub fn control_plane_bundle(cluster: &Path, secrets: &Path, out: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_mk8s-gen"))
        .args(["control-plane", "--cluster"])
        .arg(cluster)
        .arg("--secrets")
        .arg(secrets)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

/// Every file under `dirs`: path -> (content, mode, mtime).
pub fn snapshot(
    dirs: &[&Path],
) -> std::collections::BTreeMap<std::path::PathBuf, (Vec<u8>, u32, std::time::SystemTime)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = std::collections::BTreeMap::new();
    let mut stack: Vec<std::path::PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            out.insert(p, (Vec::new(), m.permissions().mode(), m.modified().unwrap()));
        } else {
            out.insert(p.clone(), (std::fs::read(&p).unwrap(), m.permissions().mode(), m.modified().unwrap()));
        }
    }
    out
}

/// A generated script's arguments: `--help` prints its header and a usage line,
/// an unknown argument is refused with exit 64, `--dry-run` prints what would
/// change (each of `dry_says`), and none of them changes a file under `watched`
/// or prints one of `secrets`. `run(args)` runs the script.
pub fn help_dry_run_and_bad_arguments_change_nothing(
    run: impl Fn(&[&str]) -> std::process::Output,
    watched: &[&Path],
    dry_says: &[&str],
    secrets: &[&str],
) {
    let before = snapshot(watched);
    let said = |o: &std::process::Output| {
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    };
    for help in ["--help", "-h"] {
        let o = run(&[help]);
        assert_eq!(o.status.code(), Some(0), "{help}: {}", said(&o));
        assert!(String::from_utf8_lossy(&o.stdout).starts_with("Usage: "), "{help}: {}", said(&o));
        assert!(said(&o).contains("--dry-run"), "{}", said(&o));
        assert_eq!(snapshot(watched), before, "{help} changed a file");
    }
    for bad in [&["--bogus"][..], &["--dry-run", "extra"], &["-x"]] {
        let o = run(bad);
        assert_eq!(o.status.code(), Some(64), "{bad:?}: {}", said(&o));
        assert!(said(&o).contains("unknown argument") && said(&o).contains("nothing was changed"), "{}", said(&o));
        assert_eq!(snapshot(watched), before, "{bad:?} changed a file");
    }
    for dry in ["--dry-run", "-n"] {
        let o = run(&[dry]);
        assert_eq!(o.status.code(), Some(0), "{dry}: {}", said(&o));
        for want in dry_says {
            assert!(said(&o).contains(want), "{dry} should say {want:?}: {}", said(&o));
        }
        for s in secrets {
            assert!(!said(&o).contains(s), "{dry} printed a secret");
        }
        assert_eq!(snapshot(watched), before, "{dry} changed a file");
    }
}
