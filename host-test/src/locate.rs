//! Where the dohguard filter `.wasm` is: `$DOHGUARD_FILTER_WASM` when set
//! (relative paths are taken from the workspace root), else
//! `target/dohguard_filter.wasm` as written by `cargo xtask wasm`.

use std::path::{Path, PathBuf};

use crate::error::HostError;

pub const FILTER_WASM_ENV: &str = "DOHGUARD_FILTER_WASM";

pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// The path the filter is expected at, whether or not it exists.
pub fn filter_wasm_path() -> PathBuf {
    match std::env::var_os(FILTER_WASM_ENV) {
        Some(path) if !path.is_empty() => workspace_root().join(path),
        _ => workspace_root().join("target").join("dohguard_filter.wasm"),
    }
}

/// The built filter, or an error telling the reader to run `cargo xtask wasm`.
pub fn dohguard_filter_wasm() -> Result<PathBuf, HostError> {
    let path = filter_wasm_path();
    if path.is_file() {
        Ok(path)
    } else {
        Err(HostError::FilterWasmMissing { path })
    }
}
