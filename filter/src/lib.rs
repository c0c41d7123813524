//! proxy-wasm DoH filter (placeholder until written).
