//! `dohguard-scorer`: the scoring service binary. Parses flags, loads the configuration,
//! starts the service, prints one JSON line with the bound address (so callers that asked
//! for port 0 can find it), and shuts down gracefully on SIGINT/SIGTERM, flushing the sink.
//! SIGHUP reloads the model. `replay-dead-letters` re-sends the documents Elasticsearch refused
//! one by one, once their cause is fixed, and exits.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use dohguard_scorer::{
    config::Overrides,
    router,
    sink::{auth::Credential, dead_letter, EsClient},
    App, Config,
};
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(name = "dohguard-scorer", version, about = "dohguard scoring service")]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// TOML configuration file.
    #[arg(long, global = true, env = "DOHGUARD_SCORER_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address (port 0 picks a free port).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Model card JSON (the ONNX file sits next to it).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Extra detector model card (repeatable), e.g. models/tunnel-v1/model.card.json.
    #[arg(long = "detector")]
    detectors: Vec<PathBuf>,
    /// Elasticsearch base URL.
    #[arg(long, global = true, conflicts_with = "no_elasticsearch")]
    elasticsearch_url: Option<String>,
    /// Run without Elasticsearch: verdicts go to the spool only.
    #[arg(long, global = true)]
    no_elasticsearch: bool,
    /// Spool folder.
    #[arg(long, global = true)]
    spool_dir: Option<PathBuf>,
    /// Print the effective configuration as TOML-like JSON and exit.
    #[arg(long)]
    print_config: bool,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Send the documents Elasticsearch refused (`<spool dir>/rejected.ndjson`) again, after
    /// the cause is fixed; prints a JSON summary; exit status 1 while any remain.
    ReplayDeadLetters,
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
        detector_cards: cli.detectors,
        elasticsearch_url: cli.elasticsearch_url,
        no_elasticsearch: cli.no_elasticsearch,
        spool_dir: cli.spool_dir,
    };
    let config = dohguard_serving::config::or_exit(
        Config::load(cli.config.as_deref(), &overrides),
        cli.print_config,
    );
    // The credential's file or variable is read now, so a bad one stops start-up naming the
    // key (the message never contains the secret).
    if config.elasticsearch.url.is_some() {
        if let Err(e) = Credential::load(&config.elasticsearch) {
            eprintln!("{e}");
            std::process::exit(2);
        }
    }
    if let Some(Cmd::ReplayDeadLetters) = cli.command {
        return replay_dead_letters(&config).await;
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

async fn replay_dead_letters(config: &Config) -> anyhow::Result<()> {
    let url = config
        .elasticsearch
        .url
        .as_deref()
        .context("replay-dead-letters needs elasticsearch.url")?;
    let es = EsClient::new(url, &config.elasticsearch)?;
    // The fix may be a newer template; a key that may not install it still replays.
    if let Err(e) = es.install_template().await {
        tracing::warn!(error = %e, "index template not installed; replaying anyway");
    }
    let summary =
        dead_letter::replay(&es, &config.spool.dir, config.elasticsearch.bulk_max_docs).await?;
    println!("{}", serde_json::to_string(&summary)?);
    if !summary.all_stored() {
        eprintln!(
            "dohguard-scorer: {} dead letters remain in {}",
            summary.rejected_again + summary.kept,
            config.spool.dir.join(dead_letter::FILE).display()
        );
        std::process::exit(1);
    }
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
