//! `dohguard-console`: parses flags, loads the configuration (a bad value exits with status
//! 2 naming the key), prepares the console's indices and the initial admin, prints one JSON
//! line with the bound address, and serves until SIGINT/SIGTERM.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context;
use clap::Parser;
use dohguard_console::{app, config::Overrides, AppState, Config};
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(
    name = "dohguard-console",
    version,
    about = "dohguard security console"
)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, env = "DOHGUARD_CONSOLE_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address (port 0 picks a free port).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Elasticsearch base URL.
    #[arg(long)]
    elasticsearch_url: Option<String>,
    /// Where the initial admin's generated password is written (mode 0600).
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// Folder of the installed front-end assets (console/web/node_modules).
    #[arg(long)]
    assets_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("dohguard_console=info,warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let overrides = Overrides {
        listen: cli.listen,
        elasticsearch_url: cli.elasticsearch_url,
        password_file: cli.password_file,
        assets_dir: cli.assets_dir,
    };
    let config = match Config::load(cli.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dohguard-console: {e}");
            std::process::exit(2);
        }
    };
    let listen = config.listen;
    let admin = config.admin.clone();
    let tls = if config.tls.enabled() {
        match dohguard_console::tls::server_config(&config.tls) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("dohguard-console: {e}");
                std::process::exit(2);
            }
        }
    } else {
        None
    };
    let state = AppState::new(config).context("Elasticsearch client")?;
    let password = state
        .prepare()
        .await
        .context("preparing the console's indices in Elasticsearch")?;
    state.spawn_overview_cache();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let local = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let password_file = admin.password_file.display().to_string();
    println!(
        "{}",
        serde_json::json!({"listen": local.to_string(), "url": format!("{scheme}://{local}/"),
                           "initial_admin": admin.initial_user,
                           "initial_admin_created": password.is_some(),
                           "password_file": password_file})
    );
    if let Some(password) = password {
        // Shown once, at first start, and only to a terminal: a launcher's log file is not
        // where a password belongs (it reads the 0600 file instead).
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            eprintln!(
                "dohguard-console: created the initial admin {:?} with password {password} (also in {password_file}, mode 0600)",
                admin.initial_user
            );
        } else {
            eprintln!(
                "dohguard-console: created the initial admin {:?}; its password is in {password_file} (mode 0600)",
                admin.initial_user
            );
        }
    }
    tracing::info!(%local, "dohguard-console listening");
    match tls {
        Some(tls) => {
            let listener = dohguard_console::tls::TlsListener::new(listener, tls)?;
            axum::serve(listener, app(state))
                .with_graceful_shutdown(shutdown_signal())
                .await?
        }
        None => {
            axum::serve(listener, app(state))
                .with_graceful_shutdown(shutdown_signal())
                .await?
        }
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
