//! `dohguard-anomaly`: the online anomaly detector. Parses flags, loads the configuration
//! (`--print-config` prints it and exits), loads the model, starts the evaluation loop and
//! serves `/metrics`; prints one JSON line with the bound address. SIGHUP reloads the model;
//! SIGINT/SIGTERM stop it.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context;
use clap::Parser;
use dohguard_anomaly::config::{Config, Overrides};
use dohguard_anomaly::service::Service;
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(
    name = "dohguard-anomaly",
    version,
    about = "dohguard anomaly detector"
)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, env = "DOHGUARD_ANOMALY_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address (port 0 picks a free port).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Model card JSON (the ONNX file sits next to it).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Prometheus base URL.
    #[arg(long)]
    prometheus_url: Option<String>,
    /// Elasticsearch base URL for the anomaly documents.
    #[arg(long, conflicts_with = "no_elasticsearch")]
    elasticsearch_url: Option<String>,
    /// Run without Elasticsearch (anomalies only as metrics and logs).
    #[arg(long)]
    no_elasticsearch: bool,
    /// Evaluation interval in milliseconds.
    #[arg(long)]
    interval_ms: Option<u64>,
    /// Print the effective configuration as JSON and exit.
    #[arg(long)]
    print_config: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("dohguard_anomaly=info,ort=warn,warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let overrides = Overrides {
        listen: cli.listen,
        model_card: cli.model,
        prometheus_url: cli.prometheus_url,
        elasticsearch_url: cli.elasticsearch_url,
        no_elasticsearch: cli.no_elasticsearch,
        interval_ms: cli.interval_ms,
    };
    let config = dohguard_serving::config::or_exit(
        Config::load(cli.config.as_deref(), &overrides),
        cli.print_config,
    );
    let service = match Service::start(&config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dohguard-anomaly: {e:#}");
            std::process::exit(2);
        }
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let local = listener.local_addr()?;
    println!(
        "{}",
        serde_json::json!({"listen": local.to_string(), "model_version": service.http.model.current().model_version})
    );
    tracing::info!(%local, prometheus = %config.prometheus.url, "dohguard-anomaly listening");
    axum::serve(
        listener,
        dohguard_anomaly::http::router(service.http.clone()),
    )
    .with_graceful_shutdown(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    })
    .await?;
    drop(service);
    Ok(())
}
