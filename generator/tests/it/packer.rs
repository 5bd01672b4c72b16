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

/// The example with the `packer { required_plugins { ... } }` block removed (Packer
/// 1.7+ syntax; Debian's packer 1.6.6 has the amazon builder built in).
fn example_for_packer_1_6() -> String {
    let text = fs::read_to_string(workspace().join("examples/packer/worker.pkr.hcl")).unwrap();
    let start = text.find("packer {\n").expect("the example has a packer {} block");
    let end = start + text[start..].find("\n}\n").expect("the block ends") + 3;
    let rest = format!("{}{}", &text[..start], &text[end..]);
    assert!(!rest.contains("required_plugins {"), "{rest}");
    rest
}

fn packer_validate(dir: &Path, file: &str) -> std::process::Output {
    Command::new(mk8s_testkit::tools::require("packer"))
        .arg("validate")
        .arg(file)
        .current_dir(dir)
        // No update check: the validation is offline.
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .unwrap()
}

#[test]
fn real_packer_validates_the_worked_example() {
    let text = fs::read_to_string(workspace().join("examples/packer/worker.pkr.hcl")).unwrap();
    assert!(text.contains("Packer 1.7 or later"), "the example says which Packer it needs");
    assert!(!text.contains("cp -a"), "copying the upload keeps the SSH user as owner of /, /etc, /usr");
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("worker.pkr.hcl"), example_for_packer_1_6()).unwrap();
    // The file provisioner's source must exist: make it as the example says.
    let stand_in = workspace().join("fixtures/seed/bootstrap-stand-in.bin");
    let o = Command::new(BIN)
        .current_dir(workspace().join("fixtures/seed"))
        .args(["packer", "--cluster", "cluster.yaml", "--out"])
        .arg(dir.path().join("bake"))
        .args(["--bootstrap-bin", stand_in.to_str().unwrap(), "--traefik-bin", stand_in.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = packer_validate(dir.path(), "worker.pkr.hcl");
    let said = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "packer validate: {said}");
    // The control: a misspelt argument is refused.
    fs::write(dir.path().join("bad.pkr.hcl"), example_for_packer_1_6().replace("instance_type ", "instance_typo "))
        .unwrap();
    let o = packer_validate(dir.path(), "bad.pkr.hcl");
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stdout).contains("instance_typo"));
}

#[test]
fn the_examples_install_step_gives_root_ownership_and_the_generated_modes() {
    // The example's install command, run as written except for its destination (a
    // temporary root instead of /) and without sudo (the test runs as root).
    let text = fs::read_to_string(workspace().join("examples/packer/worker.pkr.hcl")).unwrap();
    let line = text.lines().find(|l| l.contains("sudo install")).expect("an install step").trim();
    let cmd = line.trim_end_matches(',').trim_matches('"').replace("\\\"", "\"").replace("$${", "${");
    assert!(cmd.contains("\"/${f#./}\""), "{cmd}");
    let dir = tempfile::tempdir().unwrap();
    let (bake, root) = (dir.path().join("bake"), dir.path().join("root"));
    let stand_in = workspace().join("fixtures/seed/bootstrap-stand-in.bin");
    let o = Command::new(BIN)
        .current_dir(workspace().join("fixtures/seed"))
        .args(["packer", "--cluster", "cluster.yaml", "--out"])
        .arg(&bake)
        .args(["--bootstrap-bin", stand_in.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // An existing directory keeps its mode and owner.
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::set_permissions(root.join("etc"), fs::Permissions::from_mode(0o751)).unwrap();
    std::os::unix::fs::chown(&bake, Some(65534), Some(65534)).unwrap();
    let cmd = cmd.replace("sudo ", "").replace("\"/${f#./}\"", &format!("\"{}/${{f#./}}\"", root.display()));
    // The example runs it in the upload's directory (its `cd /tmp/mk8s-bake`).
    assert!(text.contains("\"cd /tmp/mk8s-bake\","), "the install step runs in the upload");
    let o = Command::new("sh").arg("-c").arg(&cmd).current_dir(&bake).output().unwrap();
    assert!(o.status.success(), "{cmd}: {}", String::from_utf8_lossy(&o.stderr));
    use std::os::unix::fs::MetadataExt;
    let mut baked = BTreeMap::new();
    tree(&bake, &bake, &mut baked);
    let mut installed = BTreeMap::new();
    tree(&root, &root, &mut installed);
    assert_eq!(installed, baked, "same files, contents and modes");
    for path in installed.keys() {
        let m = fs::metadata(root.join(path.trim_start_matches('/'))).unwrap();
        assert_eq!((m.uid(), m.gid()), (0, 0), "{path}");
    }
    let etc = fs::metadata(root.join("etc")).unwrap();
    assert_eq!(etc.mode() & 0o7777, 0o751, "an existing directory's mode was changed");
    let made = fs::metadata(root.join("etc/mk8s-worker")).unwrap();
    assert_eq!((made.uid(), made.mode() & 0o7777), (0, 0o755));
}

/// The example's build, with a `null` source that logs into `machine` as `builder`.
fn example_for_the_machine(key: &Path) -> String {
    let text = example_for_packer_1_6();
    let sources = "sources = [\"source.amazon-ebs.worker\"]";
    assert_eq!(text.matches(sources).count(), 1, "one build, from the amazon-ebs source");
    format!(
        "{}\nsource \"null\" \"machine\" {{\n  communicator         = \"ssh\"\n  ssh_host             = \"127.0.0.1\"\n  ssh_username         = \"builder\"\n  ssh_private_key_file = \"{}\"\n  ssh_timeout          = \"60s\"\n}}\n",
        text.replace(sources, "sources = [\"source.null.machine\"]"),
        key.display()
    )
}

/// A real `packer build` of the example, as Packer performs it: Packer's own SSH
/// communicator uploads `bake/` (scp) into a booted Debian machine
/// (`systemd-nspawn`, `mk8s_testkit::boot`; its image has sshd and sudo, as cloud
/// images do; cloud-init creates the SSH user from the seed) and runs the example's
/// provisioners verbatim. Only the source differs: a `null` builder pointed at the
/// machine instead of an amazon-ebs instance. Every baked file lands where its unit
/// expects it, root-owned, with its mode. The control: without the step that makes
/// the upload's destination first, Packer merges etc/ and usr/ into one folder, and
/// the example's own check fails the build.
#[test]
fn a_real_packer_build_over_ssh_bakes_every_file_where_its_unit_expects_it() {
    use mk8s_testkit::boot::{self, Machine, Netns};
    use mk8s_testkit::tools::require;
    use std::os::unix::fs::MetadataExt;
    use std::time::{Duration, Instant};

    let image = boot::debian_root();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_ed25519");
    let o = Command::new(require("ssh-keygen"))
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "mk8s-packer-test", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(o.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&o.stderr));
    let public = fs::read_to_string(key.with_extension("pub")).unwrap();

    let netns = Netns::new("mk8s-packer");
    fs::create_dir_all(dir.path().join("machine")).unwrap();
    let mut machine = Machine::new(&image, &dir.path().join("machine"), "packer-builder", &netns);
    let seed = machine.path("/var/lib/cloud/seed/nocloud");
    fs::create_dir_all(&seed).unwrap();
    fs::write(
        seed.join("user-data"),
        format!(
            "#cloud-config\nusers:\n  - name: builder\n    sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n    shell: /bin/bash\n    ssh_authorized_keys: [\"{}\"]\n",
            public.trim()
        ),
    )
    .unwrap();
    fs::write(seed.join("meta-data"), "instance-id: iid-packer-builder\nlocal-hostname: packer-builder\n").unwrap();
    machine.boot();
    machine.wait_for("/home/builder/.ssh/authorized_keys", Duration::from_secs(120), |m| m.journal(&[], 80));
    let end = Instant::now() + Duration::from_secs(60);
    while !netns.run(|| std::net::TcpStream::connect("127.0.0.1:22").is_ok()) {
        assert!(Instant::now() < end, "sshd never listened\n{}", machine.journal(&["ssh.service"], 40));
        std::thread::sleep(Duration::from_millis(200));
    }

    let build = dir.path().join("build");
    let bake = build.join("bake");
    let stand_in = workspace().join("fixtures/seed/bootstrap-stand-in.bin");
    let o = Command::new(BIN)
        .current_dir(workspace().join("fixtures/seed"))
        .args(["packer", "--cluster", "cluster.yaml", "--out"])
        .arg(&bake)
        .args(["--bootstrap-bin", stand_in.to_str().unwrap(), "--traefik-bin", stand_in.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let template = example_for_the_machine(&key);
    let packer_build = |file: &str, text: &str| {
        fs::write(build.join(file), text).unwrap();
        let o = Command::new(require("ip"))
            .args(["netns", "exec", &netns.name])
            .arg(require("packer"))
            .args(["build", "-color=false", file])
            .current_dir(&build)
            .env("CHECKPOINT_DISABLE", "1")
            .env("HOME", dir.path())
            .output()
            .unwrap();
        (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
    };

    // The control first, on the fresh machine: an upload into a destination that
    // does not exist.
    let make_destination = "inline = [\"rm -rf /tmp/mk8s-bake\", \"mkdir -m 0700 /tmp/mk8s-bake\"]";
    assert_eq!(template.matches(make_destination).count(), 1, "{template}");
    let (ok, said) =
        packer_build("control.pkr.hcl", &template.replace(make_destination, "inline = [\"rm -rf /tmp/mk8s-bake\"]"));
    assert!(!ok, "the build must fail when the upload is merged:\n{said}");
    assert!(said.contains("mk8s-bake: the upload is not laid out as on the node"), "{said}");
    assert!(!machine.path("/etc/systemd/system/mk8s-bootstrap.service").exists(), "{said}");

    let (ok, said) = packer_build("worker.pkr.hcl", &template);
    assert!(ok, "packer build:\n{said}");
    let mut baked = BTreeMap::new();
    tree(&bake, &bake, &mut baked);
    assert!(baked.contains_key("/etc/systemd/system/mk8s-bootstrap.service") && baked.len() > 3, "{baked:?}");
    for (path, (content, mode)) in &baked {
        let on_node = machine.path(path);
        let m = fs::metadata(&on_node).unwrap_or_else(|e| panic!("{path} is not in the image: {e}\n{said}"));
        assert_eq!(&fs::read(&on_node).unwrap(), content, "{path}");
        assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (*mode, 0, 0), "{path}");
    }
    assert!(!machine.path("/tmp/mk8s-bake").exists(), "the upload is removed");
    let (_, clean) = machine.stop(Duration::from_secs(30));
    assert!(clean, "the machine powers off cleanly");
}
