//! Developer tasks: `cargo xtask <task>`. Each task lives in its own module with its own `Args`.

mod bench;
mod fuzz;
mod record_metrics;
mod render;
mod scorer_bench;
mod up;
mod wasm;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "dohguard developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build the proxy-wasm filter for wasm32-wasip1 (Debian rustc-web + build-std).
    Wasm(wasm::Args),
    /// Start the whole gateway locally (unbound, scorer, Elasticsearch-API store, Envoy + filter).
    Up(up::Args),
    /// Gateway benchmarks: Envoy+filter vs bare Envoy vs dnsdist (h2load); prints figures.
    Bench(bench::Args),
    /// Scorer benchmarks: HTTP vs raw ONNX Runtime ceiling, Flask baseline, sink; prints figures.
    ScorerBench(scorer_bench::Args),
    /// Render the production configuration under deploy/ from the templates (--check compares).
    Render(render::Args),
    /// Record a labelled metrics data set from the real stack (traffic generator + faults).
    RecordMetrics(record_metrics::Args),
    /// Short fuzz run of every fuzz target: DoH/DNS decode, scorer reply (cargo-fuzz).
    Fuzz(fuzz::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Wasm(args) => wasm::run(args),
        Task::Up(args) => up::run(args),
        Task::Bench(args) => bench::run(args),
        Task::ScorerBench(args) => scorer_bench::run(args),
        Task::Fuzz(args) => fuzz::run(args),
        Task::Render(args) => render::run(args),
        Task::RecordMetrics(args) => record_metrics::run(args),
    }
}
