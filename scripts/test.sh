#!/usr/bin/env bash
# Every test of the project, in the order a failure is cheapest to see. Assumes scripts/setup.sh ran
# (./dohguard test does both). Each step names itself, so a CI log says which one broke.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/env.sh

step() { printf '\n\033[1;34m==> %s\033[0m\n' "$*"; }

step "format (cargo fmt --check)"
cargo fmt --all --check

step "lint (cargo clippy -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "deployment files: systemd units, Kubernetes and Istio manifests (scripts/validate-deploy.sh)"
scripts/validate-deploy.sh

step "filter wasm build (cargo xtask wasm)"
cargo xtask wasm

step "scorer, console and anomaly detector binaries (the end-to-end tests start the real processes)"
cargo build -p dohguard-scorer -p dohguard-console -p dohguard-anomaly --locked

step "Rust tests: core, filter, host-test (real .wasm), scorer, console, end-to-end (real Envoy, unbound, scorer, osmem, console in Chromium)"
cargo test --workspace --locked

step "fuzz: every target for ${DOHGUARD_FUZZ_SECONDS:-30} s (cargo xtask fuzz), so none can rot"
cargo xtask fuzz --seconds "${DOHGUARD_FUZZ_SECONDS:-30}"

step "model pipeline tests (pytest)"
"$DOHGUARD_PYTHON" -m pytest models/tests -q

step "anomaly tests (pytest)"
"$DOHGUARD_PYTHON" -m pytest anomaly/tests -q

step "all tests passed"
