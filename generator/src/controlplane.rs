//! The control-plane bundle: what each auth mode needs there (its own files, from
//! [`crate::auth`]), the workers' `/etc/hosts` lines with the script that keeps
//! them, and the certificate alternative names to add for an external load
//! balancer.

use std::net::IpAddr;
use std::path::Path;

use crate::model::release::SanSteps;
use crate::model::{Facts, LoadBalancer, Worker};
use crate::secrets::Secrets;
use crate::templates;
use crate::util::write_output;

/// What to do on the control plane so the apiserver certificate names an external
/// load balancer, for the facts' MicroK8s version (`csr-alt-names.txt`).
///
/// MicroK8s renders `certs/csr.conf` from `certs/csr.conf.template` (its
/// `[ alt_names ]` ends with `#MOREIPS`) and signs `server.crt` from it. Who re-issues:
/// - 1.19, 1.20: the apiservice-kicker, within seconds of a template change
///   (`microk8s-resources/wrappers/apiservice-kicker`, `produce_certs`), unless
///   `args/kube-apiserver` sets `--advertise-address` or `--bind-address`;
/// - 1.21+: not the kicker once `var/lock/no-cert-reissue` exists, which every join
///   creates on both nodes (1.21-1.23 `scripts/cluster/agent.py`
///   `mark_no_cert_reissue`; 1.24+ canonical/microk8s-cluster-agent
///   `pkg/api/v2/join.go`, `CreateNoCertsReissueLock`): `microk8s refresh-certs
///   --cert server.crt` does it, re-reading the template from 1.22
///   (`scripts/wrappers/refresh-certs.py`, `refresh_csr_conf; gen_server_cert`;
///   backported as 027b4fb6 and 848d912f) but only `csr.conf` in 1.21;
/// - 1.27+ also: a launch configuration with `extraSANs`
///   (canonical/microk8s-cluster-agent 1.27+ `pkg/k8sinit/schema.go`,
///   `reconcileExtraSANs` in `apply.go`) rewrites the template.
pub fn alt_names(facts: &Facts) -> Option<String> {
    let LoadBalancer::External { host, .. } = &facts.load_balancer else {
        return None;
    };
    let line = match host.parse::<IpAddr>() {
        Ok(_) => format!("IP.99 = {host}"),
        Err(_) => format!("DNS.99 = {host}"),
    };
    let dir = "/var/snap/microk8s/current/certs";
    let mut t = format!(
        "# The apiserver certificate must name the external load balancer {host}.\n\
         # MicroK8s {}: do this on every control-plane node, one node at a time\n\
         # (the apiserver restarts), as root.\n#\n",
        facts.channel.text
    );
    let template_step = format!(
        "# 1. Add this line to [ alt_names ] in {dir}/csr.conf.template, before #MOREIPS:\n#\n#      {line}\n#\n"
    );
    match facts.channel.release.san_steps {
        SanSteps::TemplateKicker => t.push_str(&format!(
            "{template_step}\
             # 2. Nothing else: the apiservice-kicker re-issues server.crt within seconds and\n\
             #    restarts the apiserver (apiservice-kicker, produce_certs). It does not when\n\
             #    args/kube-apiserver sets --advertise-address or --bind-address.\n"
        )),
        SanSteps::TemplateAndCsrConf => t.push_str(&format!(
            "{template_step}\
             # 2. Add the same line to [ alt_names ] in {dir}/csr.conf: 1.21's refresh-certs\n\
             #    signs from csr.conf without re-reading the template.\n\
             # 3. microk8s refresh-certs --cert server.crt\n\
             #    (the apiservice-kicker does not re-issue on a clustered node: every join\n\
             #    creates var/lock/no-cert-reissue, scripts/cluster/agent.py)\n"
        )),
        SanSteps::TemplateRefresh => t.push_str(&format!(
            "{template_step}\
             # 2. microk8s refresh-certs --cert server.crt\n\
             #    (it re-renders csr.conf from the template, scripts/wrappers/refresh-certs.py;\n\
             #    the apiservice-kicker does not re-issue on a clustered node: every join\n\
             #    creates var/lock/no-cert-reissue)\n"
        )),
        SanSteps::TemplateOrLaunchConfig => t.push_str(&format!(
            "# 1. Either add this line to [ alt_names ] in {dir}/csr.conf.template,\n\
             #    before #MOREIPS:\n#\n#      {line}\n#\n\
             #    or write a launch configuration that lists it in extraSANs\n\
             #    (canonical/microk8s-cluster-agent pkg/k8sinit; it rewrites the whole\n\
             #    template from MicroK8s's defaults plus extraSANs, dropping hand edits,\n\
             #    so list every extra name the certificate needs), e.g.\n\
             #    /var/snap/microk8s/common/etc/launcher/mk8s-extra-sans.yaml:\n#\n\
             #      version: 0.1.0\n\
             #      extraSANs:\n\
             #        - {host}\n#\n\
             #    and wait until the cluster-agent renames it *.applied (every 5 s).\n\
             # 2. microk8s refresh-certs --cert server.crt\n\
             #    (it re-renders csr.conf from the template, scripts/wrappers/refresh_certs.py;\n\
             #    the apiservice-kicker does not re-issue on a clustered node: every join\n\
             #    creates var/lock/no-cert-reissue, cluster-agent pkg/api/v2/join.go)\n"
        )),
    }
    t.push_str(&format!("#\n# Check: openssl x509 -noout -ext subjectAltName -in {dir}/server.crt\n{line}\n"));
    Some(t)
}

/// `hosts` lines (`ADDRESS NAME`) for the workers whose address the facts give, for
/// `hosts-entries.sh`. Names are RFC 1123 and addresses parsed, so a line can hold
/// nothing else.
pub fn hosts_lines(workers: &[&Worker]) -> String {
    workers.iter().filter_map(|w| w.address.map(|ip| format!("{ip} {}\n", w.name))).collect()
}

/// Write the control-plane bundle into `dir`. Each file is replaced atomically and
/// left untouched when unchanged. Returns the files written or confirmed.
pub fn write_bundle(facts: &Facts, secrets: &Secrets, workers: &[&Worker], dir: &Path) -> anyhow::Result<Vec<String>> {
    // It holds a script to run as root (and with tokens, the credentials): 0700
    // whatever the umask, and never through a symlink.
    crate::util::ensure_dir(dir, 0o700, true)?;
    let mut files = crate::auth::of(&facts.auth).bundle(facts, secrets, workers)?;
    // Every channel: control planes that dial kubelets by the Node's Hostname address
    // (<= 1.27, and upgraded 1.28+) must resolve worker names; see the script.
    files.push(("hosts", hosts_lines(workers), 0o644));
    files.push((
        "hosts-entries.sh",
        templates::render("hosts-entries.sh", serde_json::json!({ "cluster": facts.name }))?,
        0o755,
    ));
    if let Some(alt) = alt_names(facts) {
        files.push(("csr-alt-names.txt", alt, 0o644));
    }
    let mut written = Vec::new();
    for (name, text, mode) in files {
        write_output(&dir.join(name), text.as_bytes(), mode)?;
        written.push(name.to_string());
    }
    Ok(written)
}
