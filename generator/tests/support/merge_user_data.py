"""Merge a multipart user-data the way cloud-init does, with cloud-init's own code
(Debian's python3-cloudinit): UserDataProcessor splits and decodes the parts, and
each text/cloud-config part is merged into the result with the mergers its
Merge-Type header (or content) names, defaulting to cloud-init's
dict(replace)+list()+str(), exactly as handlers/cloud_config.py does. Prints the
merged cloud-config as JSON."""
import json
import sys
import tempfile

from cloudinit import mergers, safeyaml
from cloudinit import user_data as ud
from cloudinit.helpers import Paths
from cloudinit.handlers.cloud_config import DEF_MERGERS, MERGE_HEADER


raw = open(sys.argv[1], "rb").read()
paths = Paths({"cloud_dir": tempfile.mkdtemp()})  # only used for #include downloads
message = ud.UserDataProcessor(paths).process(raw)
merged = {}
parts = 0
for part in message.walk():
    if part.get_content_type() != "text/cloud-config":
        continue
    payload = part.get_payload(decode=True).decode()
    doc = safeyaml.load(payload) or {}
    chosen = mergers.dict_extract_mergers(doc) + mergers.string_extract_mergers(part.get(MERGE_HEADER, ""))
    merged = mergers.construct(chosen or DEF_MERGERS).merge(merged, doc)
    parts += 1
# Each part, and the merged result, as plain documents for `cloud-init schema`.
out_dir = sys.argv[2] if len(sys.argv) > 2 else None
if out_dir:
    i = 0
    for part in message.walk():
        if part.get_content_type() == "text/cloud-config":
            with open(f"{out_dir}/part{i}.yaml", "w") as f:
                f.write(part.get_payload(decode=True).decode())
            i += 1
    with open(f"{out_dir}/merged.yaml", "w") as f:
        f.write("#cloud-config\n" + safeyaml.dumps(merged))
print(json.dumps({"parts": parts, "merged": merged}, default=str))
