# Sourced by the top-level commands: where set-up put the tools. Safe to source twice.
export DOHGUARD_VENV="${DOHGUARD_VENV:-$HOME/.cache/dohguard/venv}"
export DOHGUARD_TOOLS="$DOHGUARD_VENV/tools"
export PATH="$DOHGUARD_TOOLS:$DOHGUARD_VENV/bin:$HOME/.cargo/bin:$PATH"
export ENVOY_BIN="${ENVOY_BIN:-$DOHGUARD_TOOLS/envoy}"
export OSMEM_BIN="${OSMEM_BIN:-$DOHGUARD_TOOLS/osmem-server}"
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$DOHGUARD_TOOLS/libonnxruntime.so}"
export DOHGUARD_PYTHON="$DOHGUARD_VENV/bin/python"
