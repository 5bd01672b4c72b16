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

variable "microk8s_channel" {
  type    = string
  default = "1.30/stable"
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

  # The files mk8s-gen packer wrote, laid out as on the node.
  provisioner "file" {
    source      = "bake/"
    destination = "/tmp/bake"
  }

  provisioner "shell" {
    inline = [
      # The upload belongs to the SSH user: install each file owned by root with the
      # mode mk8s-gen gave it (0644, binaries 0755). Missing directories are created
      # root-owned; existing ones (/, /etc, /usr) keep their owner and mode.
      "cd /tmp/bake && find . -type f | sort | while read -r f; do sudo install -D -o root -g root -m \"$(stat -c %a \"$f\")\" \"$f\" \"/$${f#./}\"; done",
      "sudo systemctl daemon-reload",
      # Optional: install MicroK8s ahead so first boot only configures it.
      "sudo snap install microk8s --classic --channel ${var.microk8s_channel}",
      "sudo rm -rf /tmp/bake",
    ]
  }
}
