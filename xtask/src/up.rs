//! `cargo xtask up`: builds the filter (and the scorer), generates the TLS certificate if
//! missing, and runs the whole gateway on fixed, documented ports until Ctrl-C: unbound
//! (recursing, with the demo zone from `envoy/demo-zone.txt` so the examples work offline),
//! osmem-server (the Elasticsearch-API store), the scorer, Envoy with the filter and the
//! demo deny list, the security console (with the store), Prometheus and Alertmanager, and
//! the anomaly detector (`anomaly/`, built in release, reading Prometheus). Configurations and logs go to
//! `run/gateway/`, the certificate to `run/tls/`, the console's initial admin password to
//! `run/console/initial-admin-password` (mode 0600).

use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context};

use dohguard_launcher::anomaly::{self, ANOMALY_BIN_VAR};
use dohguard_launcher::console::{Console, ConsoleOptions, CONSOLE_BIN_VAR, INITIAL_ADMIN};
use dohguard_launcher::envoy::{EnvoyPorts, GatewayLimits};
use dohguard_launcher::filter_config::{read_rule_list, FailureMode, FilterConfig};
use dohguard_launcher::monitoring::{DetectorSetup, Monitoring, MonitoringPorts, Timing};
use dohguard_launcher::overrides::OverrideFeed;
use dohguard_launcher::paths::repo_root;
use dohguard_launcher::scorer::{default_model_card, SCORER_BIN_VAR};
use dohguard_launcher::stack::ScorerKind;
use dohguard_launcher::tls::TLS_HOSTNAME;
use dohguard_launcher::unbound::{demo_zones, UnboundOptions};
use dohguard_launcher::{Stack, StackOptions};

#[derive(clap::Args)]
pub struct Args {
    /// DoH over TLS: https://localhost:PORT/dns-query
    #[arg(long, default_value_t = 8443)]
    https_port: u16,
    /// DoH over cleartext HTTP/1.1 or HTTP/2 (prior knowledge): http://127.0.0.1:PORT/dns-query
    #[arg(long, default_value_t = 8080)]
    http_port: u16,
    /// Envoy admin (/stats, /stats/prometheus).
    #[arg(long, default_value_t = 9901)]
    admin_port: u16,
    /// unbound's DoH port (cleartext HTTP/2, what Envoy proxies to).
    #[arg(long, default_value_t = 8053)]
    unbound_doh_port: u16,
    /// unbound's classic DNS port.
    #[arg(long, default_value_t = 5353)]
    unbound_dns_port: u16,
    /// The scorer's HTTP port.
    #[arg(long, default_value_t = 8090)]
    scorer_port: u16,
    /// The Elasticsearch-API store (osmem-server).
    #[arg(long, default_value_t = 9200)]
    elasticsearch_port: u16,
    /// Prometheus (scrapes Envoy, the scorer and Alertmanager; recording and alerting rules).
    #[arg(long, default_value_t = 9090)]
    prometheus_port: u16,
    /// Alertmanager (the static alerts and the anomaly detector's).
    #[arg(long, default_value_t = 9093)]
    alertmanager_port: u16,
    /// The anomaly detector's /metrics (it reads Prometheus, Prometheus scrapes it).
    #[arg(long, default_value_t = 8791)]
    anomaly_port: u16,
    /// The security console (web UI and API): http://127.0.0.1:PORT/
    #[arg(long, default_value_t = 8780)]
    console_port: u16,
    /// Serve the console over HTTPS with the gateway's self-signed certificate (run/tls/,
    /// made with openssl on first use); Envoy polls its override feed over TLS too.
    #[arg(long)]
    console_tls: bool,
    /// Deny list, one rule per line.
    #[arg(long, default_value = "envoy/demo-deny-list.txt")]
    deny_list: PathBuf,
    /// Run without the scorer, the store and the console (deny list only).
    #[arg(long)]
    no_scorer: bool,
    /// Answer only the local demo zones; refuse everything else instead of recursing.
    #[arg(long)]
    offline: bool,
    /// Block (instead of allow) when the scorer cannot be asked.
    #[arg(long)]
    fail_closed: bool,
    /// Do not send the demo traffic. By default `up` sends a realistic mix of DoH queries
    /// through the gateway once it is up (demo zone, algorithmic-looking names, deny-list hits,
    /// an NXDOMAIN burst from one client; launcher/src/demo_traffic.rs), because the embedded
    /// store starts empty and a fresh console must not be an empty page.
    #[arg(long)]
    no_demo_traffic: bool,
    /// Envoy worker threads.
    #[arg(long, default_value_t = 2)]
    concurrency: u32,
    /// Skip `cargo xtask wasm` and the release builds of the scorer, console and detector.
    #[arg(long)]
    no_build: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let root = repo_root();
    if !args.no_build {
        cargo(&["xtask", "wasm"])?;
        // Release builds, in one cargo run: `up` is the product running, not a test.
        let mut packages = vec!["build", "--release", "-p", "dohguard-anomaly"];
        if !args.no_scorer {
            packages.extend(["-p", "dohguard-scorer", "-p", "dohguard-console"]);
        }
        cargo(&packages)?;
        // The launcher runs exactly these builds (not a newer debug build of a test run).
        std::env::set_var(
            ANOMALY_BIN_VAR,
            root.join("target/release/dohguard-anomaly"),
        );
        if !args.no_scorer {
            std::env::set_var(SCORER_BIN_VAR, root.join("target/release/dohguard-scorer"));
            std::env::set_var(
                CONSOLE_BIN_VAR,
                root.join("target/release/dohguard-console"),
            );
        }
    }
    let deny_path = root.join(&args.deny_list);
    let deny = read_rule_list(
        &std::fs::read_to_string(&deny_path)
            .with_context(|| format!("reading the deny list {}", deny_path.display()))?,
    );
    let filter = FilterConfig {
        deny,
        scorer: !args.no_scorer,
        // Every query on the record (the scorer writes the documents).
        events: !args.no_scorer,
        failure_mode: if args.fail_closed {
            FailureMode::Closed
        } else {
            FailureMode::Open
        },
        ..FilterConfig::default()
    };
    let scorer = if args.no_scorer {
        ScorerKind::None
    } else {
        ScorerKind::Real {
            model_card: default_model_card()?,
        }
    };
    let run_dir = root.join("run/gateway");
    // The console is the filter's override source (it starts after Envoy, on this port).
    // With --console-tls the console uses the gateway's certificate (made here if need be;
    // the stack below reuses it).
    let tls_dir = root.join("run/tls");
    let console_tls = match args.console_tls && !args.no_scorer {
        true => Some(
            dohguard_launcher::tls::ensure_self_signed(&tls_dir)
                .context("making the self-signed certificate in run/tls/")?,
        ),
        false => None,
    };
    let override_feed = if args.no_scorer {
        None
    } else {
        let feed = OverrideFeed::new(Some(args.console_port))?;
        Some(match &console_tls {
            Some(tls) => feed.with_console_tls(&tls.cert),
            None => feed,
        })
    };
    let stack = Stack::start(StackOptions {
        filter_config: Some(filter.to_json()),
        scorer,
        tls: true,
        unbound: UnboundOptions {
            // Offline stand-ins for popular names only when not recursing: they would shadow
            // the real answers.
            zones: if args.offline {
                UnboundOptions::default().zones
            } else {
                demo_zones()?
            },
            recursion: !args.offline,
            doh_port: Some(args.unbound_doh_port),
            dns_port: Some(args.unbound_dns_port),
            ..UnboundOptions::default()
        },
        concurrency: args.concurrency,
        limits: GatewayLimits::default(),
        envoy_ports: Some(EnvoyPorts {
            admin: args.admin_port,
            http: args.http_port,
            https: args.https_port,
        }),
        osmem_port: Some(args.elasticsearch_port),
        scorer_port: Some(args.scorer_port),
        run_dir: Some(run_dir.clone()),
        tls_dir: Some(tls_dir.clone()),
        direct_body: None,
        override_feed: override_feed.clone(),
    })
    .context("starting the gateway (configurations and logs are in run/gateway/)")?;

    // The shipped anomaly model learned its features from recordings with 1 s scrapes and 15 s
    // rate windows (`Timing::fast`, anomaly/data/README.md), so `up` computes them the same
    // way; the static alerts keep the operator's one-minute `for:`.
    let timing = Timing {
        alert_for: Timing::operator().alert_for,
        group_wait: Timing::operator().group_wait,
        ..Timing::fast()
    };
    let anomaly_card = anomaly::default_model_card()?;
    let monitoring = Monitoring::start_with_detector(
        &stack,
        &timing,
        None,
        Some(MonitoringPorts {
            prometheus: args.prometheus_port,
            alertmanager: args.alertmanager_port,
        }),
        Some(&DetectorSetup {
            interval_ms: anomaly::evaluation_interval_ms(&anomaly_card)?,
            model_card: anomaly_card,
            port: Some(args.anomaly_port),
            admin_token_file: None,
        }),
    )
    .context("starting Prometheus, Alertmanager and the anomaly detector (logs in run/gateway/)")?;
    let console = match (&stack.osmem, &override_feed) {
        (Some(store), Some(feed)) => {
            let options = ConsoleOptions {
                elasticsearch_url: store.url(),
                scorer_url: stack.scorer.as_ref().map(|s| s.url()),
                port: Some(args.console_port),
                password_file: Some(root.join("run/console/initial-admin-password")),
                scorer_admin_token_file: stack.scorer.as_ref().map(|s| s.admin_token_file.clone()),
            };
            let started = match &console_tls {
                Some(tls) => Console::start_feeding_tls(&run_dir, &options, feed, tls),
                None => Console::start_feeding(&run_dir, &options, feed),
            };
            Some(started.context("starting the console (its log is run/gateway/console.log)")?)
        }
        _ => None,
    };

    print_banner(&stack, &monitoring, console.as_ref(), &args, &run_dir);
    if !args.no_demo_traffic {
        let sent = dohguard_launcher::demo_traffic::send(stack.envoy.ports.http)
            .context("sending the demo traffic")?;
        println!(
            "demo traffic: {} queries from {} clients, {} answered (see the console)",
            sent.sent, sent.clients, sent.answered
        );
    }
    wait_for_ctrl_c_or_exit(stack, monitoring, console)
}

fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(args)
        .current_dir(repo_root())
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn print_banner(
    stack: &Stack,
    monitoring: &Monitoring,
    console: Option<&Console>,
    args: &Args,
    run_dir: &std::path::Path,
) {
    let ca = stack.ca().expect("TLS is on").display().to_string();
    let kdig = |name: &str| {
        format!(
            "kdig @127.0.0.1 -p {} +https=/dns-query +tls-ca={ca} +tls-hostname={TLS_HOSTNAME} {name} A",
            args.https_port
        )
    };
    println!();
    println!("dohguard gateway is up");
    println!("  DoH (TLS):       {}", stack.envoy.https_url());
    println!("  DoH (cleartext): {}", stack.envoy.http_url());
    println!(
        "  Envoy admin:     {}",
        stack.envoy.admin_url("/stats?filter=wasmcustom")
    );
    if let Some(scorer) = &stack.scorer {
        println!("  scorer:          {}/metrics", scorer.url());
    }
    if let Some(store) = &stack.osmem {
        println!(
            "  verdicts:        {}/logs-dohguard.verdicts-*/_search",
            store.url()
        );
    }
    println!(
        "  Prometheus:      {}/graph?g0.expr=dohguard%3Aqueries%3Arate",
        monitoring.prometheus.url()
    );
    println!("  Alertmanager:    {}", monitoring.alertmanager.url());
    if let Some(detector) = &monitoring.anomaly {
        println!("  anomaly metrics: {}/metrics", detector.url());
    }
    if let Some(store) = &stack.osmem {
        println!(
            "  anomalies:       {}/logs-dohguard.anomalies-*/_search",
            store.url()
        );
    }
    if let Some(console) = console {
        println!("  console:         {}", console.url());
        if console.tls {
            println!(
                "                   (self-signed certificate: {}; your browser will ask you to accept it)",
                ca
            );
        }
        println!(
            "                   log in as {INITIAL_ADMIN}; password: cat {}",
            console.password_file.display()
        );
    }
    println!("  configs, logs:   {}", run_dir.display());
    println!();
    println!("try (allowed, from the demo zone):");
    println!("  {}", kdig("www.example.test"));
    println!("blocked by the demo deny list:");
    println!("  {}", kdig("ads.example.test"));
    if stack.scorer.is_some() {
        println!("scored by the model (a DGA-looking name):");
        println!("  {}", kdig("uhbqolxf.org"));
    }
    println!();
    println!("Ctrl-C stops everything.");
}

/// Blocks until Ctrl-C (then stops the stack cleanly) or until a process dies (an error).
fn wait_for_ctrl_c_or_exit(
    mut stack: Stack,
    mut monitoring: Monitoring,
    mut console: Option<Console>,
) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })
    .context("installing the Ctrl-C handler")?;
    loop {
        if rx.recv_timeout(Duration::from_millis(500)).is_ok() {
            println!("\nstopping ...");
            drop(console);
            drop(monitoring);
            drop(stack);
            println!("stopped");
            return Ok(());
        }
        monitoring.check_running()?;
        stack.envoy.process().check_running()?;
        stack.unbound.process().check_running()?;
        if let Some(scorer) = stack.scorer.as_mut() {
            scorer.process().check_running()?;
        }
        if let Some(store) = stack.osmem.as_mut() {
            store.process().check_running()?;
        }
        if let Some(console) = console.as_mut() {
            console.process().check_running()?;
        }
    }
}
