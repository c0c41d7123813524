"""Checks that the Kubernetes manifests mount what their configuration files name.

Every absolute path in a generated ConfigMap file (Envoy's `filename:` entries, unbound's
`directory:`, the scorer's model card and spool) and every absolute path in a container's
command must lie under one of that container's volume mounts, or inside its image (/usr, /opt).
A mount path renamed in a manifest, or a profile path changed in launcher/src/deploy.rs, fails here
instead of in a cluster. Run by scripts/validate-deploy.sh; usage: check-k8s-paths.py DIR.
"""
import re
import sys
import tomllib
from pathlib import Path

import yaml

IMAGE_PREFIXES = ("/usr/", "/opt/")
# Which container reads which ConfigMap file.
READERS = {"envoy.yaml": "envoy", "unbound.conf": "unbound", "scorer.toml": "scorer"}


def paths_in(name, text):
    if name == "envoy.yaml":
        return re.findall(r'filename: "?(/[^"}\s]+)"?', text)
    if name == "unbound.conf":
        return re.findall(r'^\s*directory: "?(/[^"\s]+)"?', text, re.M)
    if name == "scorer.toml":
        config = tomllib.loads(text)
        return [config["model"]["card"], config["spool"]["dir"]]
    raise SystemExit(f"no rule for ConfigMap file {name}")


def main(folder):
    docs = [d for f in sorted(Path(folder).glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    needed = {}  # container name -> [(path, why)]
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            for name, text in doc["data"].items():
                needed.setdefault(READERS[name], []).extend(
                    (p, f"{doc['metadata']['name']}/{name}") for p in paths_in(name, text))
    problems, checked = [], 0
    for doc in docs:
        if doc["kind"] != "Deployment":
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            mounts = [m["mountPath"].rstrip("/") + "/" for m in container.get("volumeMounts", [])]
            wanted = needed.pop(container["name"], [])
            wanted += [(a, "command") for a in container.get("command", [])[1:] if a.startswith("/")]
            for path, why in dict.fromkeys(wanted):
                checked += 1
                if not (path.startswith(IMAGE_PREFIXES) or any((path + "/").startswith(m) for m in mounts)):
                    problems.append(f"{doc['metadata']['name']}/{container['name']}: {path} ({why}) is under no volume mount")
    problems += [f"no container named {c} reads {[w for _, w in v]}" for c, v in needed.items()]
    if problems or not checked:
        raise SystemExit("\n".join(problems) or "no paths checked")
    print(f"kubernetes paths: {checked} paths in configuration and commands lie under the containers' mounts or images")


main(sys.argv[1])
