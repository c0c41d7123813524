//! Where the repository's inputs live: templates under `envoy/`, the filter built by
//! `cargo xtask wasm`, the scorer binary and the model card.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

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

/// A workspace binary the stack runs (the scorer, the console), and how to build it.
#[derive(Debug, Clone, Copy)]
pub struct WorkspaceBinary {
    /// File name under `target/{debug,release}/`.
    pub name: &'static str,
    /// The variable that names the binary to run instead (`cargo xtask up` points it at the
    /// release build); the launcher never passes it on to the child.
    pub override_var: &'static str,
    /// Source folders (Rust files only) the binary must be newer than.
    pub sources: &'static [&'static str],
    /// For the errors: what is missing or stale, and the command that builds it.
    pub missing: &'static str,
    pub stale: &'static str,
    pub hint: &'static str,
}

impl WorkspaceBinary {
    /// The binary named by `override_var`, else the newest build under `target/` that is newer
    /// than its sources; a stale or missing one is an error naming the build command.
    pub fn locate(&self) -> Result<PathBuf, LaunchError> {
        if let Some(path) = std::env::var_os(self.override_var) {
            return Ok(PathBuf::from(path));
        }
        let root = repo_root();
        // Only Rust sources: cargo rebuilds the binary whenever one of them changes, while
        // other files (docs, a manifest's dev-dependencies) can change without a rebuild.
        let newest_source = self
            .sources
            .iter()
            .filter_map(|p| newest_mtime(&root.join(p)))
            .max();
        let built = ["target/debug", "target/release"]
            .iter()
            .map(|dir| root.join(dir).join(self.name))
            .filter_map(|p| Some((modified(&p)?, p)))
            .max();
        match (built, newest_source) {
            (Some((built_at, path)), Some(source)) if built_at >= source => Ok(path),
            (Some((_, path)), None) => Ok(path),
            (Some((_, path)), Some(_)) => Err(LaunchError::MissingFile {
                what: self.stale,
                path,
                hint: self.hint,
            }),
            (None, _) => Err(LaunchError::MissingFile {
                what: self.missing,
                path: root.join("target/debug").join(self.name),
                hint: self.hint,
            }),
        }
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).ok()?.modified().ok()
}

fn newest_mtime(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        let is_rust = path.extension().is_some_and(|e| e == "rs");
        return if is_rust { meta.modified().ok() } else { None };
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(|entry| newest_mtime(&entry.ok()?.path()))
        .max()
}
