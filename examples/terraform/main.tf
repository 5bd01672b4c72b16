# Worker user-data from cluster facts, through Terraform's `external` data source:
# no templatefile(), no string pasting in HCL. mk8s-gen's output is deterministic,
# so `terraform plan` shows no change until the facts or secrets change.
#
#   mk8s-gen secrets init --out secrets.yaml     # once, kept out of version control
#   terraform init && terraform plan
#
# Errors (invalid facts, unknown node, user-data over the platform's limit) show up
# in `terraform plan` with the YAML path and line, as on the command line.

terraform {
  required_providers {
    aws      = { source = "hashicorp/aws" }
    external = { source = "hashicorp/external" }
  }
}

variable "ami" {
  description = "An Ubuntu image with snapd"
  type        = string
}

variable "workers" {
  type    = list(string)
  default = ["worker-1"]
}

data "external" "user_data" {
  for_each = toset(var.workers)
  program  = ["mk8s-gen", "terraform"]
  query = {
    cluster          = "${path.module}/cluster.yaml"
    secrets          = "${path.module}/secrets.yaml"
    node             = each.key
    target           = "aws" # fail the plan if it does not fit EC2's 16 KB
    bootstrap_url    = "https://downloads.example.com/mk8s-bootstrap-0.1.0-x86_64"
    bootstrap_sha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
  }
}

# The user-data holds the node's credentials: sensitive() keeps it out of plan
# output and logs. It is still in the state file (as is the data source's result):
# keep the state in an encrypted backend with restricted access.
resource "aws_instance" "worker" {
  for_each         = toset(var.workers)
  ami              = var.ami
  instance_type    = "t3.small"
  user_data_base64 = sensitive(data.external.user_data[each.key].result.user_data_base64)
  tags             = { Name = each.key }

  # Pods must not read the node's user-data (its credentials) from the metadata
  # service: IMDSv2 only, and a hop limit of 1 so a pod's packets never get there.
  metadata_options {
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }
}

# Large fleets: each `external` call runs mk8s-gen once (about 0.1 s on a
# 10,000-worker facts file, so about 20 CPU-minutes per plan at that size).
# Generate every worker's user-data in one run instead, before `terraform plan`:
#
#   mk8s-gen fleet --cluster cluster.yaml --secrets secrets.yaml --out out/ \
#     --target aws --bootstrap-url ... --bootstrap-sha256 ...
#
# and read the files (deterministic, rewritten only when they change):
#
#   user_data_base64 = sensitive(filebase64("${path.module}/out/nodes/${each.key}.user-data"))
