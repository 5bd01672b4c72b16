//! Human-readable file contents rendered from `templates/`, compiled into the binary.
//!
//! Every `{{ value }}` is escaped for the file it lands in, chosen by the template's
//! name: YAML files get JSON-quoted scalars (valid YAML, no YAML 1.1 surprises),
//! shell scripts get single-quoted words, systemd units accept only characters that
//! need no quoting there. Undefined variables are errors.

use std::sync::OnceLock;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior};

const TEMPLATES: &[(&str, &str)] = &[
    ("kubeconfig.yaml", include_str!("../../templates/kubeconfig.yaml.j2")),
    ("traefik.yaml", include_str!("../../templates/traefik.yaml.j2")),
    ("provider.yaml", include_str!("../../templates/provider.yaml.j2")),
    ("mk8s-traefik.service", include_str!("../../templates/mk8s-traefik.service.j2")),
    ("mk8s-bootstrap.service", include_str!("../../templates/mk8s-bootstrap.service.j2")),
    ("mk8s-maintain.service", include_str!("../../templates/mk8s-maintain.service.j2")),
    ("mk8s-maintain.timer", include_str!("../../templates/mk8s-maintain.timer.j2")),
    ("haproxy.cfg", include_str!("../../templates/haproxy.cfg.j2")),
    ("mk8s-haproxy.service", include_str!("../../templates/mk8s-haproxy.service.j2")),
    ("mk8s-balance.service", include_str!("../../templates/mk8s-balance.service.j2")),
    ("apiserver-proxy-provider.yaml", include_str!("../../templates/apiserver-proxy-provider.yaml.j2")),
    ("apiserver-proxy-traefik-template.yaml", include_str!("../../templates/apiserver-proxy-traefik-template.yaml.j2")),
    ("fetch-bootstrap.sh", include_str!("../../templates/fetch-bootstrap.sh.j2")),
    ("merge-known-tokens.sh", include_str!("../../templates/merge-known-tokens.sh.j2")),
    ("hosts-entries.sh", include_str!("../../templates/hosts-entries.sh.j2")),
    ("microk8s.yaml", include_str!("../../templates/microk8s.yaml.j2")),
    ("check-control-plane.sh", include_str!("../../templates/check-control-plane.sh.j2")),
    ("register-join-tokens.sh", include_str!("../../templates/register-join-tokens.sh.j2")),
    ("apply-day2.sh", include_str!("../../templates/apply-day2.sh.j2")),
    ("node-client-rotation.yaml", include_str!("../../templates/node-client-rotation.yaml.j2")),
    // Included by every script: --help, --dry-run, and nothing else.
    ("script-args.sh", include_str!("../../templates/script-args.sh.j2")),
    // The file helpers of the scripts that rewrite a file (scratch, state, replace).
    ("script-files.sh", include_str!("../../templates/script-files.sh.j2")),
    ("authz-mode.sh", include_str!("../../templates/authz-mode.sh.j2")),
    // Included by the scripts that need an HA (dqlite) control plane.
    ("ha-cluster.sh", include_str!("../../templates/ha-cluster.sh.j2")),
];

fn escape_mode(name: &str) -> AutoEscape {
    match name.rsplit('.').next() {
        Some("yaml") => AutoEscape::Custom("yaml".into()),
        Some("sh") => AutoEscape::Custom("shell".into()),
        Some("service") => AutoEscape::Custom("systemd".into()),
        Some("cfg") => AutoEscape::Custom("haproxy".into()),
        _ => AutoEscape::Custom("refuse".into()),
    }
}

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_syntax(SyntaxConfig::builder().keep_trailing_newline(true).build().expect("valid syntax"));
        env.set_auto_escape_callback(escape_mode);
        env.set_formatter(|out, state, value| {
            let text = if value.is_safe() { value.to_string() } else { escape(state.auto_escape(), value)? };
            out.write_str(&text).map_err(Error::from)
        });
        for (name, src) in TEMPLATES {
            env.add_template(name, src).expect("bundled templates compile");
        }
        env
    })
}

fn escape(mode: &AutoEscape, value: &Value) -> Result<String, Error> {
    let s = match value.as_str() {
        Some(s) => s.to_string(),
        None if value.is_number() => value.to_string(),
        None => {
            return Err(Error::new(
                ErrorKind::BadSerialization,
                format!("only strings and numbers can be interpolated, got {}", value.kind()),
            ))
        }
    };
    let mode = match mode {
        AutoEscape::Custom(m) => m.as_ref(),
        _ => "",
    };
    match mode {
        "yaml" => {
            if value.is_number() {
                Ok(s)
            } else {
                Ok(serde_json::to_string(&s).expect("strings serialize"))
            }
        }
        "shell" => Ok(shell_quote(&s)),
        // HAProxy words: addresses, names and durations only (no spaces, no '#').
        "haproxy" => {
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:[]-@".contains(&b)) {
                Ok(s)
            } else {
                Err(Error::new(ErrorKind::BadSerialization, format!("{s:?} cannot be written into haproxy.cfg")))
            }
        }
        "systemd" => {
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-=:@+".contains(&b)) {
                Ok(s)
            } else {
                Err(Error::new(
                    ErrorKind::BadSerialization,
                    format!("{s:?} cannot be written into a systemd unit unquoted"),
                ))
            }
        }
        _ => Err(Error::new(ErrorKind::BadSerialization, "no escaping rule for this template")),
    }
}

/// POSIX shell single-quoting: `it's` -> `'it'\''s'`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Render a bundled template with a serializable context.
pub fn render<S: serde::Serialize>(name: &str, ctx: S) -> Result<String, Error> {
    env().get_template(name)?.render(Value::from(minijinja::value::Serde(ctx)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_values_are_quoted() {
        let out = render(
            "kubeconfig.yaml",
            json!({"user": "kubelet", "node": "on", "ca_data": "QUJD", "server": "https://127.0.0.1:16443", "token": "a\nb: c"}),
        )
        .unwrap();
        assert!(out.contains("token: \"a\\nb: c\""), "{out}");
        let v: serde_yaml::Value = serde_yaml::from_str(&out).unwrap();
        assert_eq!(v["users"][0]["user"]["token"].as_str(), Some("a\nb: c"));
    }

    #[test]
    fn undefined_variables_are_errors() {
        let err = render("kubeconfig.yaml", json!({"user": "kubelet"})).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UndefinedError);
    }

    #[test]
    fn shell_values_are_single_quoted() {
        assert_eq!(shell_quote("a'b $(x)"), "'a'\\''b $(x)'");
        let out = render(
            "fetch-bootstrap.sh",
            json!({"url": "https://x/'; reboot; '", "sha256": "00", "dest": "/usr/local/bin/x"}),
        )
        .unwrap();
        assert!(out.contains("url='https://x/'\\''; reboot; '\\'''"), "{out}");
    }

    #[test]
    fn systemd_units_refuse_values_that_need_quoting() {
        let ok = render(
            "mk8s-traefik.service",
            json!({"binary": "/usr/local/bin/traefik", "config": "/etc/x.yaml", "allow": ["10.0.0.1"]}),
        );
        assert!(ok.is_ok());
        let bad = render(
            "mk8s-traefik.service",
            json!({"binary": "/usr/bin/x; rm -rf /", "config": "/etc/x.yaml", "allow": ["10.0.0.1"]}),
        );
        // Refused by the systemd escaping rule, for this value (not a missing
        // template or an undefined variable).
        let err = bad.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadSerialization, "{err:#}");
        assert!(
            err.to_string().contains(r#""/usr/bin/x; rm -rf /" cannot be written into a systemd unit unquoted"#),
            "{err:#}"
        );
    }
}
