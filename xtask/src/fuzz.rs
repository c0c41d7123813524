//! `cargo xtask fuzz`: a short cargo-fuzz run of the filter's DoH/DNS decode path.
//!
//! Installs `cargo-fuzz` when it is missing, then runs the target on rustup's nightly
//! toolchain (libFuzzer needs `-Zsanitizer`). New corpus entries go to `fuzz/corpus-run/`
//! (ignored by git) so the committed seeds in `fuzz/seeds/` stay as written; crashes land in
//! `fuzz/artifacts/<target>/` and make the task fail.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

#[derive(clap::Args)]
pub struct Args {
    /// How long libFuzzer runs, in seconds (after the build).
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Fuzz target under fuzz/fuzz_targets/.
    #[arg(long, default_value = "doh_decode")]
    target: String,
    /// Largest input libFuzzer generates, in bytes.
    #[arg(long, default_value_t = 4096)]
    max_len: usize,
}

pub fn run(args: Args) -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf();
    let fuzz_dir = root.join("fuzz");
    let seeds = fuzz_dir.join("seeds").join(&args.target);
    ensure!(seeds.is_dir(), "no seed corpus at {}", seeds.display());
    let corpus = fuzz_dir.join("corpus-run").join(&args.target);
    std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;

    ensure_nightly()?;
    ensure_cargo_fuzz()?;

    let status = cargo()
        .current_dir(&root)
        .args(["+nightly", "fuzz", "run", &args.target])
        .arg(&corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={}", args.seconds))
        .arg(format!("-max_len={}", args.max_len))
        .arg("-print_final_stats=1")
        .status()
        .context("running cargo fuzz")?;

    let entries = std::fs::read_dir(&corpus).map(|d| d.count()).unwrap_or(0);
    let artifacts = artifacts(&fuzz_dir.join("artifacts").join(&args.target));
    println!(
        "fuzz {}: {} s, corpus {} entries in {}, {} crash artifact(s)",
        args.target,
        args.seconds,
        entries,
        corpus.display(),
        artifacts.len()
    );
    for path in &artifacts {
        println!("  artifact: {}", path.display());
    }
    ensure!(
        status.success(),
        "the fuzzer failed ({status}); see the artifacts above"
    );
    Ok(())
}

/// A cargo command free of the variables the outer `cargo xtask` set for itself.
fn cargo() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR");
    cmd
}

fn ensure_nightly() -> Result<()> {
    let ok = cargo()
        .args(["+nightly", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        bail!("rustup's nightly toolchain is missing: run `rustup toolchain install nightly` (scripts/setup.sh)");
    }
    Ok(())
}

fn ensure_cargo_fuzz() -> Result<()> {
    let installed = cargo()
        .args(["+nightly", "fuzz", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if installed {
        return Ok(());
    }
    println!("cargo-fuzz not found: installing it (cargo install cargo-fuzz --locked)");
    let status = cargo()
        .args(["install", "cargo-fuzz", "--locked"])
        .status()
        .context("running cargo install")?;
    ensure!(
        status.success(),
        "cargo install cargo-fuzz failed ({status})"
    );
    Ok(())
}

fn artifacts(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found
}
