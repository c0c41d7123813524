//! wasmtime proxy-wasm host (placeholder until written).
