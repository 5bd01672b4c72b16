"""Read a #cloud-config user-data file the way cloud-init does (PyYAML safe_load)
and print, as JSON, what cloud-init would see: each write_files entry's path,
permissions, encoding and decoded content, and the runcmd list, with Python type
names so the test can prove nothing turned into a bool, int or None."""
import base64
import gzip
import json
import sys

import yaml

with open(sys.argv[1], "rb") as f:
    raw = f.read()
doc = yaml.safe_load(raw)
assert raw.startswith(b"#cloud-config\n"), "missing #cloud-config header"
files = []
for wf in doc["write_files"]:
    content = wf["content"]
    enc = wf.get("encoding")
    if enc == "gz+b64":
        data = gzip.decompress(base64.b64decode(content))
        text = None
    else:
        data = content.encode()
        text = content
    entry = {
        "path": wf["path"],
        "path_type": type(wf["path"]).__name__,
        "permissions": wf["permissions"],
        "permissions_type": type(wf["permissions"]).__name__,
        "owner": wf["owner"],
        "encoding": enc,
        "size": len(data),
        "content": text,
    }
    if text is not None and wf["path"].endswith(".config"):
        kc = yaml.safe_load(text)
        user = kc["users"][0]["user"]
        entry["kubeconfig"] = {
            "server": kc["clusters"][0]["cluster"]["server"],
            "user": kc["users"][0]["name"],
            # the credential: a token, or a client certificate and key
            "credential_types": sorted({k: type(v).__name__ for k, v in user.items()}.items()),
        }
    files.append(entry)
print(json.dumps({
    "files": files,
    "runcmd": doc["runcmd"],
    "runcmd_types": [[type(w).__name__ for w in cmd] for cmd in doc["runcmd"]],
    "keys": sorted(doc.keys()),
    "packages": doc.get("packages", []),
}))
