//! `cargo xtask scorer-bench`: builds (release) and runs the scorer benchmark
//! (`scorer/benches/scorer_bench.rs`), which prints markdown figures: the raw ONNX Runtime
//! ceiling, HTTP throughput and latency at several concurrencies, the Flask baseline, and
//! sink documents/s against a plain bulk loader. Needs `source scripts/env.sh`.

use std::{path::PathBuf, process::Command};

use anyhow::{bail, Context};

#[derive(clap::Args)]
pub struct Args {
    /// Seconds per HTTP measurement.
    #[arg(long, default_value_t = 4.0)]
    seconds: f64,
    /// Documents per sink measurement run.
    #[arg(long, default_value_t = 20_000)]
    sink_docs: usize,
    /// Sink rounds (sink and plain loader alternate; best of each compared).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Run only `http` (ceiling, HTTP, Flask) or `sink`.
    #[arg(long, default_value = "all")]
    only: String,
    /// Model card to benchmark (default: the scorer's default model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Also write the figures to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    for var in ["ORT_DYLIB_PATH", "OSMEM_BIN", "DOHGUARD_PYTHON"] {
        if std::env::var_os(var).is_none() {
            bail!("{var} is not set: run `source scripts/env.sh` first");
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    // `cargo bench` also builds the scorer binary (release-based bench profile) and the
    // benchmark starts that one.
    let mut bench = Command::new(&cargo);
    bench
        .current_dir(&root)
        .args([
            "bench",
            "-p",
            "dohguard-scorer",
            "--bench",
            "scorer_bench",
            "--",
        ])
        .args(["--seconds", &args.seconds.to_string()])
        .args(["--sink-docs", &args.sink_docs.to_string()])
        .args(["--rounds", &args.rounds.to_string()])
        .args(["--only", &args.only]);
    if let Some(model) = &args.model {
        bench.arg("--model").arg(model);
    }
    // Figures on stdout are captured (for --out); cargo's progress and errors pass through.
    let output = bench
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running the scorer benchmark")?;
    let text = String::from_utf8_lossy(&output.stdout);
    print!("{text}");
    if !output.status.success() {
        bail!("the scorer benchmark failed");
    }
    if let Some(out) = &args.out {
        std::fs::write(out, text.as_bytes())
            .with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}
