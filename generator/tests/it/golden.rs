//! Golden tests: every `fixtures/<case>/cases` line runs the real `mk8s-gen` binary
//! in that directory and compares exit code, stdout, stderr and any `{out}`
//! directory with `fixtures/<case>/expected/`.
//!
//! Refresh the expected files after an intended change with
//! `MK8S_BLESS=1 cargo test -p mk8s-gen --test it golden::` (this module only),
//! then review the diff.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use mk8s_testkit::workspace;

struct Case {
    dir: PathBuf,
    name: String,
    exit: i32,
    args: Vec<String>,
}

/// Secrets and CA keys are kept 0600, as an operator keeps them (git records no
/// such mode), so outputs do not depend on the umask of the checkout.
fn private_fixtures() {
    use std::os::unix::fs::PermissionsExt;
    for dir in fs::read_dir(workspace().join("fixtures")).unwrap() {
        for f in fs::read_dir(dir.unwrap().path()).into_iter().flatten() {
            let p = f.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if name.ends_with("secrets.yaml") || name.ends_with(".key") {
                fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
            }
        }
    }
}

fn cases() -> Vec<Case> {
    private_fixtures();
    let mut out = Vec::new();
    let mut dirs: Vec<_> = fs::read_dir(workspace().join("fixtures")).unwrap().map(|e| e.unwrap().path()).collect();
    dirs.sort();
    for dir in dirs {
        let Ok(text) = fs::read_to_string(dir.join("cases")) else { continue };
        assert!(text.starts_with("# "), "{}: the first line of `cases` says what the case covers", dir.display());
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let mut words = line.split_whitespace().map(String::from);
            let name = words.next().unwrap();
            let exit = words.next().unwrap().parse().unwrap();
            out.push(Case { dir: dir.clone(), name, exit, args: words.collect() });
        }
    }
    assert!(out.len() >= 20, "fixtures went missing: only {} cases", out.len());
    out
}

fn read_tree(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut m = BTreeMap::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd {
            let p = e.unwrap().path();
            let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            m.insert(p.file_name().unwrap().to_string_lossy().to_string(), (fs::read(&p).unwrap(), mode));
        }
    }
    m
}

fn check_file(path: &Path, got: &[u8], bless: bool, failures: &mut Vec<String>) {
    if bless {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        if got.is_empty() {
            let _ = fs::remove_file(path);
        } else {
            fs::write(path, got).unwrap();
        }
        return;
    }
    let want = fs::read(path).unwrap_or_default();
    if want != got {
        failures.push(format!(
            "{} differs:\n--- expected\n{}\n--- got\n{}",
            path.display(),
            String::from_utf8_lossy(&want),
            String::from_utf8_lossy(got)
        ));
    }
}

#[test]
fn golden_outputs() {
    let bless = std::env::var_os("MK8S_BLESS").is_some();
    let bin = env!("CARGO_BIN_EXE_mk8s-gen");
    let mut failures = Vec::new();
    for case in cases() {
        let out_dir = tempfile::tempdir().unwrap();
        let args: Vec<String> = case
            .args
            .iter()
            .map(|a| if a == "{out}" { out_dir.path().join("bundle").display().to_string() } else { a.clone() })
            .collect();
        let output = Command::new(bin).args(&args).current_dir(&case.dir).env("TZ", "UTC").output().unwrap();
        let label = format!("{}/{}", case.dir.file_name().unwrap().to_string_lossy(), case.name);
        if output.status.code() != Some(case.exit) {
            failures.push(format!(
                "{label}: exit {:?}, expected {}\nstderr:\n{}",
                output.status.code(),
                case.exit,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let expected = case.dir.join("expected");
        check_file(&expected.join(format!("{}.stdout", case.name)), &output.stdout, bless, &mut failures);
        let stderr = String::from_utf8_lossy(&output.stderr).replace(&out_dir.path().display().to_string(), "{tmp}");
        check_file(&expected.join(format!("{}.stderr", case.name)), stderr.as_bytes(), bless, &mut failures);
        if case.args.iter().any(|a| a == "{out}") {
            let got = read_tree(&out_dir.path().join("bundle"));
            let want_dir = expected.join(&case.name);
            if bless {
                let _ = fs::remove_dir_all(&want_dir);
                if !got.is_empty() {
                    fs::create_dir_all(&want_dir).unwrap();
                }
                for (name, (data, mode)) in &got {
                    fs::write(want_dir.join(name), data).unwrap();
                    fs::write(want_dir.join(format!("{name}.mode")), format!("{mode:o}\n")).unwrap();
                }
            } else {
                let want: BTreeMap<_, _> =
                    read_tree(&want_dir).into_iter().filter(|(n, _)| !n.ends_with(".mode")).collect();
                let names = |m: &BTreeMap<String, (Vec<u8>, u32)>| m.keys().cloned().collect::<Vec<_>>();
                if names(&want) != names(&got) {
                    failures.push(format!("{label}: files {:?}, expected {:?}", names(&got), names(&want)));
                }
                for (name, (data, mode)) in &got {
                    check_file(&want_dir.join(name), data, false, &mut failures);
                    check_file(
                        &want_dir.join(format!("{name}.mode")),
                        format!("{mode:o}\n").as_bytes(),
                        false,
                        &mut failures,
                    );
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} golden mismatch(es):\n{}", failures.len(), failures.join("\n\n"));
}

/// Same inputs, byte-identical output, whatever the process, working directory, TZ
/// or HOME: every successful case is run again from another directory (its paths
/// made absolute) and compared with the committed output, which another process
/// produced on another day (both auth modes are among the fixtures).
#[test]
fn output_is_reproducible() {
    let bin = env!("CARGO_BIN_EXE_mk8s-gen");
    let elsewhere = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for case in cases().into_iter().filter(|c| c.exit == 0 && !c.args.iter().any(|a| a == "{out}")) {
        let args: Vec<String> = case
            .args
            .iter()
            .map(|a| {
                let p = case.dir.join(a);
                if !a.starts_with('-') && p.exists() {
                    p.display().to_string()
                } else {
                    a.clone()
                }
            })
            .collect();
        let want = fs::read(case.dir.join("expected").join(format!("{}.stdout", case.name))).unwrap_or_default();
        if want.is_empty() {
            continue;
        }
        for tz in ["Pacific/Kiritimati", "America/St_Johns"] {
            let out = Command::new(bin)
                .args(&args)
                .current_dir(elsewhere.path())
                .env("TZ", tz)
                .env("HOME", elsewhere.path())
                .env("LC_ALL", "C")
                .output()
                .unwrap();
            assert!(out.status.success(), "{}: {}", case.name, String::from_utf8_lossy(&out.stderr));
            assert!(
                out.stdout == want,
                "{}/{} differs when run from elsewhere with TZ={tz}",
                case.dir.display(),
                case.name
            );
        }
        checked += 1;
    }
    assert!(checked >= 12, "only {checked} cases checked");
}
