//! `cargo xtask render`: writes the production configuration under `deploy/` from the same
//! templates the launcher uses (see `dohguard_e2e::deploy`): the systemd installation's
//! `/etc/dohguard` files and the Kubernetes ConfigMaps. `--check` only compares (the deploy
//! test does the same); `--out DIR` renders an installation's own systemd files, with its own
//! filter configuration and listen address, without touching the committed ones.

use std::path::PathBuf;

use anyhow::{bail, Context};

use dohguard_e2e::deploy::{self, Profile};
use dohguard_e2e::paths::repo_root;

#[derive(clap::Args)]
pub struct Args {
    /// Compare the committed files with a fresh rendering; fail naming the stale ones.
    #[arg(long, conflicts_with = "out")]
    check: bool,
    /// Write envoy.yaml, unbound.conf and scorer.toml for a systemd host into DIR instead.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// With --out: the filter configuration (JSON, filter/CONFIG.md) to embed.
    #[arg(long, requires = "out", value_name = "FILE")]
    filter_config: Option<PathBuf>,
    /// With --out: the address Envoy's DoH listeners bind (e.g. a public interface's).
    #[arg(long, requires = "out", value_name = "ADDR")]
    listen_address: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(out) = &args.out {
        return render_installation(out, &args);
    }
    let root = repo_root();
    let mut stale = Vec::new();
    for (path, text) in deploy::committed_files()? {
        let full = root.join(&path);
        let current = std::fs::read_to_string(&full).unwrap_or_default();
        if current == text {
            continue;
        }
        if args.check {
            stale.push(path.display().to_string());
        } else {
            std::fs::write(&full, text).with_context(|| format!("writing {}", full.display()))?;
            println!("wrote {}", path.display());
        }
    }
    if !stale.is_empty() {
        bail!(
            "stale generated files (run `cargo xtask render`): {}",
            stale.join(", ")
        );
    }
    Ok(())
}

fn render_installation(out: &std::path::Path, args: &Args) -> anyhow::Result<()> {
    let filter = match &args.filter_config {
        Some(path) => serde_json::from_str(
            &std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("{} is not JSON", path.display()))?,
        None => deploy::filter_config()?,
    };
    let mut profile = Profile::systemd();
    if let Some(address) = &args.listen_address {
        profile.listen_address = address.clone();
    }
    let rendered = deploy::render(&profile, &filter)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for (name, text) in [
        ("envoy.yaml", &rendered.envoy_yaml),
        ("unbound.conf", &rendered.unbound_conf),
        ("scorer.toml", &rendered.scorer_toml),
    ] {
        let path = out.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    println!(
        "check it with: envoy --mode validate -c {}",
        out.join("envoy.yaml").display()
    );
    Ok(())
}
