//! `cargo xtask fuzz`: a short cargo-fuzz run of every fuzz target (the filter's DoH/DNS
//! decode path, `doh_decode`, and its parser of the scorer's reply, `score_reply`), or of one.
//!
//! Installs `cargo-fuzz` when it is missing, then runs each target on rustup's nightly
//! toolchain, or, where there is none, on the default toolchain with `RUSTC_BOOTSTRAP=1`
//! (libFuzzer needs `-Zsanitizer`). Inputs go up to 65,536 bytes: a selector byte plus a
//! DoH body of the 65,535 bytes the filter accepts. New corpus entries go to
//! `fuzz/corpus-run/` (ignored by git) so the committed seeds in `fuzz/seeds/` stay as
//! written; crashes land in `fuzz/artifacts/<target>/` and make the task fail.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};

#[derive(clap::Args)]
pub struct Args {
    /// How long libFuzzer runs, in seconds (after the build).
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// One fuzz target under fuzz/fuzz_targets/; every target when omitted (each runs
    /// `--seconds`).
    #[arg(long)]
    target: Option<String>,
    /// Largest input libFuzzer generates, in bytes: a selector byte and a full-size body.
    #[arg(long, default_value_t = 65_536)]
    max_len: usize,
}

/// The targets in `fuzz/fuzz_targets/`, by file name.
fn targets(fuzz_dir: &Path) -> Result<Vec<String>> {
    let dir = fuzz_dir.join("fuzz_targets");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".rs"))
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    ensure!(!names.is_empty(), "no fuzz targets in {}", dir.display());
    Ok(names)
}

pub fn run(args: Args) -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf();
    let fuzz_dir = root.join("fuzz");
    let toolchain = Toolchain::find();
    ensure_cargo_fuzz(toolchain)?;
    let chosen = match &args.target {
        Some(t) => vec![t.clone()],
        None => targets(&fuzz_dir)?,
    };
    for target in &chosen {
        run_target(&root, &fuzz_dir, toolchain, target, &args)?;
    }
    Ok(())
}

fn run_target(
    root: &Path,
    fuzz_dir: &Path,
    toolchain: Toolchain,
    target: &str,
    args: &Args,
) -> Result<()> {
    let seeds = fuzz_dir.join("seeds").join(target);
    ensure!(seeds.is_dir(), "no seed corpus at {}", seeds.display());
    let corpus = fuzz_dir.join("corpus-run").join(target);
    std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;

    let status = toolchain
        .cargo()
        .current_dir(root)
        .args(["fuzz", "run", target])
        .arg(&corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={}", args.seconds))
        .arg(format!("-max_len={}", args.max_len))
        .arg("-print_final_stats=1")
        .status()
        .context("running cargo fuzz")?;

    let entries = std::fs::read_dir(&corpus).map(|d| d.count()).unwrap_or(0);
    let artifacts = artifacts(&fuzz_dir.join("artifacts").join(target));
    println!(
        "fuzz {target}: {} s, corpus {} entries in {}, {} crash artifact(s)",
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
        "the fuzzer failed on {target} ({status}); see the artifacts above"
    );
    Ok(())
}

/// Which compiler builds the fuzz targets: rustup's nightly when installed, else the default
/// toolchain with `RUSTC_BOOTSTRAP=1` (the `-Z` flags cargo-fuzz passes need one or the other).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Toolchain {
    Nightly,
    Bootstrapped,
}

impl Toolchain {
    fn find() -> Self {
        let nightly = cargo()
            .args(["+nightly", "--version"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if nightly {
            Toolchain::Nightly
        } else {
            println!("no nightly toolchain: building the fuzz targets with RUSTC_BOOTSTRAP=1");
            Toolchain::Bootstrapped
        }
    }

    fn cargo(self) -> Command {
        let mut cmd = cargo();
        match self {
            Toolchain::Nightly => {
                cmd.arg("+nightly");
            }
            Toolchain::Bootstrapped => {
                cmd.env("RUSTC_BOOTSTRAP", "1");
            }
        }
        cmd
    }
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

fn ensure_cargo_fuzz(toolchain: Toolchain) -> Result<()> {
    let installed = toolchain
        .cargo()
        .args(["fuzz", "--version"])
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
