# A worker image with mk8s-bootstrap, its unit, traefik and the load-balancer files
# baked in; per-node user-data then carries only the plan and credentials:
#
#   mk8s-gen packer --cluster cluster.yaml --bootstrap-bin ./mk8s-bootstrap \
#     --traefik-bin ./traefik --out bake/
#   packer build worker.pkr.hcl
#   mk8s-gen --cluster cluster.yaml --secrets secrets.yaml --node worker-1 --baked -o user-data
#
# Bake and generate from the same facts: the baked files include the control-plane
# endpoints and the load-balancer configuration.
#
# Needs Packer 1.7 or later (`packer { required_plugins }`, then `packer init .`).
# Packer 1.6 has the amazon builder built in: without the `packer {}` block below
# the rest validates with it (tested with Debian's packer 1.6.6).

packer {
  required_plugins {
    amazon = { source = "github.com/hashicorp/amazon", version = ">= 1.2.0" }
  }
}

source "amazon-ebs" "worker" {
  region        = "eu-west-1"
  instance_type = "t3.small"
  ssh_username  = "ubuntu"
  ami_name      = "mk8s-worker-{{timestamp}}"
  source_ami_filter {
    filters     = { name = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*" }
    owners      = ["099720109477"]
    most_recent = true
  }
}

build {
  sources = ["source.amazon-ebs.worker"]

  # A fresh, existing destination: Packer uploads the *contents* of "bake/" into it.
  # Into a destination that does not exist, the upload would merge etc/ and usr/
  # into one folder, and every file would be installed at the wrong path.
  provisioner "shell" {
    inline = ["rm -rf /tmp/mk8s-bake", "mkdir -m 0700 /tmp/mk8s-bake"]
  }

  # The files mk8s-gen packer wrote, laid out as on the node.
  provisioner "file" {
    source      = "bake/"
    destination = "/tmp/mk8s-bake"
  }

  # MicroK8s is not installed here: the bootstrap installs the channel of the facts
  # (it is in each node's plan) on first boot. A MicroK8s installed while baking
  # would start, and every machine of the image would share that node's own CA,
  # certificates and datastore; for a node without the snap store, bake the files
  # of `microk8s.local-snap` instead (docs/cluster-facts.md, "Air-gapped installs").
  provisioner "shell" {
    inline = [
      "cd /tmp/mk8s-bake",
      # The upload is laid out as on the node, or the build stops here.
      "test -f etc/systemd/system/mk8s-bootstrap.service && test -f usr/local/bin/mk8s-bootstrap || { echo 'mk8s-bake: the upload is not laid out as on the node (etc/..., usr/local/bin/...): was bake/ written by mk8s-gen packer?' >&2; exit 1; }",
      # The upload belongs to the SSH user: install each file owned by root with the
      # mode mk8s-gen gave it (0644, binaries 0755). Missing directories are created
      # root-owned; existing ones (/, /etc, /usr) keep their owner and mode.
      "find . -type f | sort | while read -r f; do sudo install -D -o root -g root -m \"$(stat -c %a \"$f\")\" \"$f\" \"/$${f#./}\"; done",
      # Every file is where its unit expects it, byte for byte, or the build fails.
      "find . -type f | while read -r f; do sudo cmp -s \"$f\" \"/$${f#./}\" || { echo \"mk8s-bake: /$${f#./} is not installed\" >&2; exit 1; }; done",
      "b=$(sed -n 's/^ExecStart=\\([^ ]*\\).*/\\1/p' /etc/systemd/system/mk8s-bootstrap.service); test -x \"$b\" || { echo \"mk8s-bake: $b, the bootstrap unit's ExecStart, is not an executable\" >&2; exit 1; }",
      "sudo systemctl daemon-reload",
      "cd / && rm -rf /tmp/mk8s-bake",
    ]
  }
}
