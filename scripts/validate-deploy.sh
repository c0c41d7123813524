#!/usr/bin/env bash
# Offline checks of the deployment files in deploy/ (docs/deploy.md), run by scripts/test.sh:
#  1. the systemd units: `systemd-analyze verify` in a scratch root (the units as committed,
#     the host's own system units, empty stand-ins for the binaries their Exec lines name);
#     any diagnostic at all fails, since unknown keys only print a warning; and
#     `systemd-analyze security --offline` must rate each unit's exposure 2.0 or lower;
#  2. the Kubernetes manifests: `kubernetes-validate --strict` against the Kubernetes 1.37
#     schemas it bundles (unknown fields are errors; a kind without a schema must not pass
#     with a warning);
#     and scripts/check-k8s-paths.py: every path the ConfigMaps and commands name is mounted;
#  3. the Istio custom resources: `check-jsonschema` against the schemas in
#     deploy/kubernetes/istio/schema/, written from Istio's documented fields.
# Each checker is also shown a broken copy first, so a checker that accepts anything fails here.
# The generated files' freshness and the units' command lines are tested in tests/tests/deploy.rs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/env.sh

fail() { printf '\033[31mvalidate-deploy:\033[0m %s\n' "$*" >&2; exit 1; }
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

for tool in systemd-analyze kubernetes-validate check-jsonschema; do
  command -v "$tool" >/dev/null || fail "$tool not found: run scripts/setup.sh"
done

# --- 1. systemd units --------------------------------------------------------------------
units=(deploy/systemd/*.service)
sysroot="$scratch/root"
mkdir -p "$sysroot/etc/systemd/system" "$sysroot/usr/lib/systemd"
cp -r /usr/lib/systemd/system "$sysroot/usr/lib/systemd/"
cp "${units[@]}" "$sysroot/etc/systemd/system/"
# The programs the units run (the first word of every Exec*= line), as empty executables.
grep -h '^Exec[A-Za-z]*=' "${units[@]}" | sed 's/^[^=]*=[-+!@:]*//' | awk '{print $1}' | sort -u |
  while read -r program; do
    mkdir -p "$sysroot$(dirname "$program")"
    printf '#!/bin/sh\n' >"$sysroot$program"
    chmod +x "$sysroot$program"
  done
verify() { (cd "$sysroot/etc/systemd/system" && systemd-analyze verify --root="$sysroot" "$@" 2>&1) || true; }
# A key systemd does not know must be reported, or a clean run below proves nothing.
sed 's/^NoNewPrivileges=yes/NoNewPrivilege=yes/' deploy/systemd/dohguard-scorer.service \
  >"$sysroot/etc/systemd/system/broken-check.service"
[ -n "$(verify broken-check.service)" ] || fail "systemd-analyze verify did not report an unknown key"
rm "$sysroot/etc/systemd/system/broken-check.service"
names=("${units[@]##*/}")
out="$(verify "${names[@]}")"
[ -z "$out" ] || fail "systemd-analyze verify: $out"
# The sandboxing, scored by systemd itself: 0 is fully locked down, 10 is a plain service;
# each unit scores 1.5 today, and above 2.0 fails.
for name in "${names[@]}"; do
  (cd "$sysroot/etc/systemd/system" &&
    systemd-analyze security --offline=true --root="$sysroot" --threshold=20 "$name" | tail -n1) ||
    fail "$name: systemd-analyze security exposure above 2.0 (run it to see which settings)"
done
echo "systemd units: ${names[*]} verified (systemd-analyze $(systemd-analyze --version | awk 'NR==1{print $2}'))"

# --- 2. Kubernetes manifests -------------------------------------------------------------
manifests=(deploy/kubernetes/*.yaml)
sed 's/readOnlyRootFilesystem/readOnlyRootFilesytem/' deploy/kubernetes/gateway.yaml >"$scratch/broken.yaml"
if kubernetes-validate --strict --quiet "$scratch/broken.yaml" >/dev/null 2>&1; then
  fail "kubernetes-validate accepted a misspelt field"
fi
out="$(kubernetes-validate --strict "${manifests[@]}" 2>&1)" || fail "kubernetes-validate: $out"
if grep -v '^INFO .* passed for resource' <<<"$out" | grep -q .; then
  fail "kubernetes-validate did not validate everything: $out"
fi
echo "$out"
mkdir "$scratch/k8s" && cp "${manifests[@]}" "$scratch/k8s/"
sed -i 's#mountPath: /etc/dohguard/filter#mountPath: /etc/dohguard/wasm#' "$scratch/k8s/gateway.yaml"
if "$DOHGUARD_PYTHON" scripts/check-k8s-paths.py "$scratch/k8s" >/dev/null 2>&1; then
  fail "check-k8s-paths.py accepted a filter path that is not mounted"
fi
"$DOHGUARD_PYTHON" scripts/check-k8s-paths.py deploy/kubernetes || fail "a path is not mounted"

# --- 3. Istio custom resources -----------------------------------------------------------
for kind in wasmplugin envoyfilter; do
  file="deploy/kubernetes/istio/$kind.yaml"
  schema="deploy/kubernetes/istio/schema/$kind.schema.json"
  sed 's/^\(  *\)\(match\|failStrategy\|configPatches\):/\1\2s:/' "$file" >"$scratch/broken-$kind.yaml"
  if check-jsonschema --schemafile "$schema" "$scratch/broken-$kind.yaml" >/dev/null 2>&1; then
    fail "check-jsonschema accepted a misspelt field in a copy of $file"
  fi
  check-jsonschema --schemafile "$schema" "$file" || fail "$file does not match $schema"
done
echo "deployment files valid"
