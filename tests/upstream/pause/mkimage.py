#!/usr/bin/env python3
"""Pack a static program into a one-layer OCI image, as an image-layout tar.

usage: mkimage.py BINARY OUT.tar REF

The layer holds BINARY as /pause (mode 0755) and the empty directories a
container's mounts land on; the config's Entrypoint is ["/pause"] and, as
registry.k8s.io/pause's, its User 65535:65535; os linux, architecture amd64.
`ctr -n k8s.io images import OUT.tar` names the image REF (e.g.
localhost/mk8s/pause:1.0): index.json's manifest carries REF as
io.containerd.image.name, which containerd reads first, and as
org.opencontainers.image.ref.name, which it keeps as the name when it is a full
reference. Deterministic: the same BINARY and REF give the same bytes (entries
sorted, mtime 0, owner 0:0, gzip without a timestamp, JSON with sorted keys).
Python 3 standard library only; scripts/build-upstream runs it.
"""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile


def digest(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def tar_bytes(entries):
    """entries: name -> bytes (a file, mode in the tuple) or None (a directory)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name in sorted(entries):
            data, mode = entries[name]
            ti = tarfile.TarInfo(name)
            ti.mtime = 0
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
            ti.mode = mode
            if data is None:
                ti.type = tarfile.DIRTYPE
                t.addfile(ti)
            else:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def main(argv):
    if len(argv) != 4:
        sys.stderr.write("usage: mkimage.py BINARY OUT.tar REF\n")
        return 2
    binary, out, ref = argv[1:]
    if "/" not in ref or ":" not in ref.rsplit("/", 1)[1]:
        sys.stderr.write(f"mkimage.py: REF must be a full name with a tag, e.g. localhost/mk8s/pause:1.0, not {ref!r}\n")
        return 2
    with open(binary, "rb") as f:
        program = f.read()

    layer_entries = {"pause": (program, 0o755)}
    for d in ("dev", "etc", "proc", "sys"):
        layer_entries[d] = (None, 0o755)
    layer_entries["tmp"] = (None, 0o1777)
    layer = tar_bytes(layer_entries)
    layer_gz = gzip.compress(layer, compresslevel=9, mtime=0)

    config = canonical({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/pause"], "User": "65535:65535", "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [digest(layer)]},
        "history": [{"created_by": "mk8s-worker tests/upstream/pause/mkimage.py"}],
    })
    manifest = canonical({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digest(layer_gz), "size": len(layer_gz)}],
    })
    index = canonical({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest(manifest),
            "size": len(manifest),
            "annotations": {"io.containerd.image.name": ref,
                            "org.opencontainers.image.ref.name": ref},
            "platform": {"architecture": "amd64", "os": "linux"},
        }],
    })

    image = {
        "oci-layout": (canonical({"imageLayoutVersion": "1.0.0"}), 0o644),
        "index.json": (index, 0o644),
        "blobs": (None, 0o755),
        "blobs/sha256": (None, 0o755),
    }
    for blob in (layer_gz, config, manifest):
        image["blobs/sha256/" + hashlib.sha256(blob).hexdigest()] = (blob, 0o644)
    data = tar_bytes(image)
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, out)
    sys.stderr.write(f"mkimage.py: {out}: {ref} {digest(manifest)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
