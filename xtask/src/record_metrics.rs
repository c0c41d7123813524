//! `cargo xtask record-metrics`: one recording of the labelled metrics data set (issue 9).
//! Starts the whole stack hermetically (unbound with the demo zones only, osmem, the real
//! scorer, Envoy + filter with recording on, the console as its override source) and
//! Prometheus scraping every second, then runs
//! the traffic generator and fault injectors (`python -m dohguard_anomaly record`, in
//! `anomaly/`) against it, which writes `recording.csv`, `labels.json` and `manifest.json`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context};

use dohguard_launcher::console_stack::{ConsoleStack, ConsoleStackOptions};
use dohguard_launcher::filter_config::read_rule_list;
use dohguard_launcher::monitoring::{Monitoring, Timing};
use dohguard_launcher::overrides::OverrideFeed;
use dohguard_launcher::paths::repo_root;

#[derive(clap::Args)]
pub struct Args {
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Length of the recording.
    #[arg(long, default_value_t = 20.0)]
    minutes: f64,
    /// Seed of the traffic and the fault plan.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Normal queries per second at the compressed day's peak.
    #[arg(long, default_value_t = 40.0)]
    rate: f64,
    /// Length of the compressed day, in seconds.
    #[arg(long, default_value_t = 600.0)]
    day_seconds: f64,
    /// A clean recording (no faults).
    #[arg(long)]
    no_faults: bool,
    /// Only these fault classes (comma-separated; `python -m dohguard_anomaly record --faults`).
    #[arg(long)]
    faults: Option<String>,
    /// Number of DoH clients (distinct loopback source addresses).
    #[arg(long, default_value_t = 6)]
    clients: u32,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let root = repo_root();
    let deny = read_rule_list(
        &std::fs::read_to_string(root.join("envoy/demo-deny-list.txt"))
            .context("reading envoy/demo-deny-list.txt")?,
    );
    // The console as the override source: the cache-flush fault goes through it.
    let mut running = ConsoleStack::start(ConsoleStackOptions {
        deny,
        concurrency: 2,
        override_feed: Some(OverrideFeed::new(None)?),
        ..ConsoleStackOptions::default()
    })
    .context("starting the stack")?;
    let session = running.admin().context("logging in to the console")?;
    let console_url = running.console.url();
    let stack = &mut running.stack;
    let monitoring = Monitoring::start_for(stack, &Timing::fast(), None, None)
        .context("starting Prometheus and Alertmanager")?;
    let python =
        std::env::var("DOHGUARD_PYTHON").context("DOHGUARD_PYTHON (source scripts/env.sh)")?;
    let scorer_pid = stack
        .scorer
        .as_mut()
        .and_then(|s| s.process().pid())
        .context("the scorer's PID")?;
    let unbound_pid = stack.unbound.process().pid().context("unbound's PID")?;
    let mut command = Command::new(python);
    command
        .current_dir(root.join("anomaly"))
        .args(["-m", "dohguard_anomaly", "record"])
        .arg("--doh-url")
        .arg(stack.envoy.http_url())
        .arg("--prometheus")
        .arg(monitoring.prometheus.url())
        .arg("--zone")
        .arg(root.join("envoy/demo-zone.txt"))
        .arg("--scorer-pid")
        .arg(scorer_pid.to_string())
        .arg("--unbound-pid")
        .arg(unbound_pid.to_string())
        .arg("--minutes")
        .arg(args.minutes.to_string())
        .arg("--seed")
        .arg(args.seed.to_string())
        .arg("--rate")
        .arg(args.rate.to_string())
        .arg("--day-seconds")
        .arg(args.day_seconds.to_string())
        .arg("--clients")
        .arg(args.clients.to_string())
        .arg("--out")
        .arg(std::path::absolute(&args.out)?);
    if args.no_faults {
        command.arg("--no-faults");
    }
    if let Some(faults) = &args.faults {
        command.arg("--faults").arg(faults);
    }
    // The session in the environment: never on a command line others can read.
    command
        .env("DOHGUARD_CONSOLE_URL", &console_url)
        .env("DOHGUARD_CONSOLE_COOKIE", &session.cookie)
        .env("DOHGUARD_CONSOLE_CSRF", &session.csrf_token);
    let status = command.status().context("running the traffic generator")?;
    if !status.success() {
        bail!(
            "the traffic generator failed ({status}); the stack's logs are in {}",
            stack.dir().display()
        );
    }
    drop(monitoring);
    drop(running);
    Ok(())
}
