//! Baked images: `mk8s-gen packer` writes what every node shares, `--baked`
//! user-data carries the rest; together they are exactly the full user-data.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use mk8s_testkit::workspace;

const BIN: &str = env!("CARGO_BIN_EXE_mk8s-gen");

/// path -> (content, mode) of a cloud-config's write_files.
fn cloud_files(text: &[u8]) -> BTreeMap<String, (Vec<u8>, u32)> {
    let doc: serde_yaml::Value = serde_yaml::from_slice(text).unwrap();
    doc["write_files"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|f| {
            let mode = u32::from_str_radix(f["permissions"].as_str().unwrap(), 8).unwrap();
            (f["path"].as_str().unwrap().to_string(), (f["content"].as_str().unwrap().as_bytes().to_vec(), mode))
        })
        .collect()
}

fn tree(dir: &Path, base: &Path, out: &mut BTreeMap<String, (Vec<u8>, u32)>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            tree(&p, base, out);
        } else {
            let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            out.insert(format!("/{}", p.strip_prefix(base).unwrap().display()), (fs::read(&p).unwrap(), mode));
        }
    }
}

fn gen(args: &[&str]) -> Vec<u8> {
    let o = Command::new(BIN).current_dir(workspace().join("fixtures/seed")).args(args).output().unwrap();
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

#[test]
fn baked_files_plus_baked_user_data_equal_the_full_user_data() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bake");
    let stand_in = workspace().join("fixtures/seed/bootstrap-stand-in.bin");
    let o = Command::new(BIN)
        .current_dir(workspace().join("fixtures/seed"))
        .args(["packer", "--cluster", "cluster.yaml", "--out", out.to_str().unwrap()])
        .args(["--bootstrap-bin", stand_in.to_str().unwrap(), "--traefik-bin", stand_in.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut baked_dir = BTreeMap::new();
    tree(&out, &out, &mut baked_dir);
    let stand_in_bytes = fs::read(&stand_in).unwrap();
    assert_eq!(baked_dir.remove("/usr/local/bin/mk8s-bootstrap"), Some((stand_in_bytes.clone(), 0o755)));
    assert_eq!(baked_dir.remove("/usr/local/bin/traefik"), Some((stand_in_bytes, 0o755)));
    assert!(
        baked_dir.keys().all(|k| !k.contains("plan.json") && !k.ends_with(".config")),
        "no secrets baked: {:?}",
        baked_dir.keys()
    );

    let full = cloud_files(&gen(&["--cluster", "cluster.yaml", "--secrets", "secrets.yaml", "--node", "worker-1"]));
    let baked =
        cloud_files(&gen(&["--cluster", "cluster.yaml", "--secrets", "secrets.yaml", "--node", "worker-1", "--baked"]));
    assert!(baked.contains_key("/etc/mk8s-worker/plan.json") && baked.contains_key("/etc/mk8s-worker/kubelet.config"));
    let mut union = baked.clone();
    union.extend(baked_dir);
    assert_eq!(union, full, "baked image + baked user-data must be the full user-data");
    assert!(baked.len() < full.len());
}

#[test]
fn packer_needs_real_binaries_and_a_traefik_cluster_for_traefik() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(BIN)
            .current_dir(workspace().join("fixtures"))
            .args(["packer", "--out", dir.path().to_str().unwrap()])
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&["--cluster", "seed/cluster.yaml", "--bootstrap-bin", "seed/cluster.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not an ELF"));
    let o = run(&[
        "--cluster",
        "lb-haproxy/cluster.yaml",
        "--bootstrap-bin",
        "seed/bootstrap-stand-in.bin",
        "--traefik-bin",
        "seed/bootstrap-stand-in.bin",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("kind: traefik"));
}
