//! Developer tasks: `cargo xtask <task>`. Each task lives in its own module.

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
    /// Build the proxy-wasm filter for wasm32-wasip1 with Debian's rustc-web + build-std.
    Wasm(wasm::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Wasm(args) => wasm::run(args),
    }
}
