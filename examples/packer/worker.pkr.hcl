# A worker image with mk8s-bootstrap, its unit, traefik and the load-balancer files
# baked in; per-node user-data then carries only the plan and credentials:
#
#   mk8s-gen packer --cluster cluster.yaml --bootstrap-bin ./mk8s-bootstrap \
#     --traefik-bin ./traefik --out bake/
#   packer build worker.pkr.hcl
#   mk8s-gen --cluster cluster.yaml --secrets secrets.yaml --node worker-1 --baked > user-data
#
# Bake and generate from the same facts: the baked files include the control-plane
# endpoints and the load-balancer configuration.

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
      "sudo cp -a /tmp/bake/. /",
      "sudo chown -R root:root /etc/mk8s-worker /etc/systemd/system/mk8s-*.service /usr/local/bin/mk8s-bootstrap",
      "sudo systemctl daemon-reload",
      # Optional: install MicroK8s ahead so first boot only configures it.
      "sudo snap install microk8s --classic --channel ${var.microk8s_channel}",
      "sudo rm -rf /tmp/bake",
    ]
  }
}
