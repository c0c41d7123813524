//! Where the repository's inputs live: templates under `envoy/`, the filter built by
//! `cargo xtask wasm`, the scorer binary and the model card.

use std::path::{Path, PathBuf};

use crate::LaunchError;

/// The repository root (this crate lives in `<root>/launcher`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("launcher/ has a parent")
        .to_path_buf()
}

pub fn envoy_dir() -> PathBuf {
    repo_root().join("envoy")
}

/// The filter as built by `cargo xtask wasm` (always the optimised `wasm` profile).
pub fn filter_wasm() -> Result<PathBuf, LaunchError> {
    let path = std::env::var_os("DOHGUARD_FILTER_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/dohguard_filter.wasm"));
    if path.is_file() {
        Ok(path)
    } else {
        Err(LaunchError::MissingFile {
            what: "the filter .wasm",
            path,
            hint: "build it with `cargo xtask wasm`",
        })
    }
}
