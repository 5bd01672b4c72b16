"""Write a cluster-facts file with N workers (for the fleet benchmark).
usage: fleet-facts.py N OUT.yaml [x509|x509-ecdsa]"""
import os
import sys

n, out = int(sys.argv[1]), sys.argv[2]
mode = sys.argv[3] if len(sys.argv) > 3 else "token"
x509 = mode.startswith("x509")
fixtures = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
ca = os.path.join(fixtures, mode if x509 else "seed", "ca.crt")
with open(out, "w") as f:
    f.write("cluster:\n  name: bench\n  microk8s: { channel: 1.30/stable }\n")
    f.write(f"  ca: {{ cert-file: {os.path.abspath(ca)} }}\n")
    if x509:
        f.write("  auth: x509\n  client-certificates: { not-before: 2026-11-01 }\n")
    f.write("  control-plane:\n")
    for i in range(3):
        f.write(f"    - {{ name: cp-{i}, address: 10.130.0.{i + 2} }}\n")
    f.write("workers:\n")
    for i in range(n):
        zone = "a" if i % 2 else "b"
        f.write(f"  - {{ name: worker-{i:05d}, address: 10.{128 + i // 65536}.{(i // 256) % 256}.{i % 256}, labels: {{ zone: {zone} }} }}\n")
