//! `dohguard-scorer`: the scoring service binary. Parses flags, loads the configuration,
//! starts the service, prints one JSON line with the bound address (so callers that asked
//! for port 0 can find it), and shuts down gracefully on SIGINT/SIGTERM, flushing the sink.
//! SIGHUP reloads the model.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context;
use clap::Parser;
use dohguard_scorer::{config::Overrides, router, App, Config};
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(name = "dohguard-scorer", version, about = "dohguard scoring service")]
struct Cli {
    /// TOML configuration file.
    #[arg(long, env = "DOHGUARD_SCORER_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address (port 0 picks a free port).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Model card JSON (the ONNX file sits next to it).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Elasticsearch base URL.
    #[arg(long, conflicts_with = "no_elasticsearch")]
    elasticsearch_url: Option<String>,
    /// Run without Elasticsearch: verdicts go to the spool only.
    #[arg(long)]
    no_elasticsearch: bool,
    /// Spool folder.
    #[arg(long)]
    spool_dir: Option<PathBuf>,
    /// Print the effective configuration as TOML-like JSON and exit.
    #[arg(long)]
    print_config: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("dohguard_scorer=info,ort=warn,warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let overrides = Overrides {
        listen: cli.listen,
        model_card: cli.model,
        elasticsearch_url: cli.elasticsearch_url,
        no_elasticsearch: cli.no_elasticsearch,
        spool_dir: cli.spool_dir,
    };
    let config = match Config::load(cli.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dohguard-scorer: {e}");
            std::process::exit(2);
        }
    };
    if cli.print_config {
        println!("{}", serde_json::to_string_pretty(&config)?);
        return Ok(());
    }
    let listen = config.listen;
    let (app, tasks) = App::start(config).await.context("starting the scorer")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let local = listener.local_addr()?;
    println!(
        "{}",
        serde_json::json!({"listen": local.to_string(), "model_version": app.model().info().model_version})
    );
    tracing::info!(%local, "dohguard-scorer listening");

    let reload_model = app.model().clone();
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            let _ = reload_model.reload(None).await;
        }
    });

    // One deadline for the whole shutdown, counted from the signal: open requests get until
    // then to finish, the sink delivers until then, and what is left stays in the spool.
    let bound = std::time::Duration::from_millis(app.config.spool.shutdown_timeout_ms);
    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel();
    let server = axum::serve(listener, router(app.clone())).with_graceful_shutdown(async move {
        shutdown_signal().await;
        let _ = signalled_tx.send(tokio::time::Instant::now() + bound);
    });
    let deadline = {
        // Dropped at the end of this block, closing open connections and their `App` handles.
        let mut server = std::pin::pin!(std::future::IntoFuture::into_future(server));
        tokio::select! {
            r = &mut server => { r?; tokio::time::Instant::now() + bound }
            Ok(deadline) = signalled_rx => {
                if tokio::time::timeout_at(deadline, &mut server).await.is_err() {
                    tracing::warn!("shutdown deadline reached with requests still open; closing them");
                }
                deadline
            }
        }
    };
    tracing::info!("shutting down: flushing verdicts");
    drop(app);
    tasks.shutdown_by(deadline).await;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
