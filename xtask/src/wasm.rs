//! `cargo xtask wasm`: builds the proxy-wasm filter for wasm32-wasip1 and shrinks it.
//!
//! rustup here has no wasm32 std, so the build uses Debian's `rustc-web` toolchain with
//! `-Zbuild-std` over its matching std sources (`rust-web-src`), Debian's `wasm-ld-22` as the
//! linker and `wasi-libc` for the wasip1 start-up objects (the project's toolchain notes
//! record why each variable is needed). The build uses its own target directory
//! (`target/wasm-build`) so it never invalidates the native build's fingerprints, then
//! `wasm-opt -Oz` writes `target/dohguard_filter.wasm`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

const TARGET: &str = "wasm32-wasip1";
const WASI_LIBC: &str = "/usr/lib/wasm32-wasi";
const RUST_SRC: &str = "/usr/lib/rustlib/src/rust";
const SETUP_HINT: &str = "run scripts/setup.sh";
/// Features the Debian rustc-web output uses and binaryen 108 does not enable by default.
const WASM_OPT_FEATURES: [&str; 4] = [
    "--enable-bulk-memory",
    "--enable-sign-ext",
    "--enable-nontrapping-float-to-int",
    "--enable-mutable-globals",
];

#[derive(clap::Args)]
pub struct Args {
    /// Debian rustc-web's cargo (rustup's cargo cannot build std for wasm32 here).
    #[arg(long, env = "DOHGUARD_WASM_CARGO", default_value = "/usr/bin/cargo")]
    cargo: PathBuf,
    /// Debian rustc-web's rustc, matching the std sources in /usr/lib/rustlib/src/rust.
    #[arg(long, env = "DOHGUARD_WASM_RUSTC", default_value = "/usr/bin/rustc")]
    rustc: PathBuf,
    /// Skip `wasm-opt -Oz` (copies the unoptimised module instead).
    #[arg(long)]
    no_opt: bool,
}

pub fn run(args: Args) -> Result<()> {
    let root = repo_root();
    let target_dir = root.join("target");
    let build_dir = target_dir.join("wasm-build");
    let output = target_dir.join("dohguard_filter.wasm");

    check_tools(&args)?;

    let rustdoc = args.rustc.with_file_name("rustdoc");
    let status = Command::new(&args.cargo)
        .current_dir(&root)
        .args([
            "build",
            "--package",
            "dohguard-filter",
            "--lib",
            "--profile",
            "wasm",
        ])
        .args([
            "--target",
            TARGET,
            "-Zbuild-std=std,panic_abort",
            "--target-dir",
        ])
        .arg(&build_dir)
        .env("RUSTC", &args.rustc)
        .env("RUSTDOC", rustdoc)
        // build-std is an unstable cargo feature; rustc-web is a stable toolchain.
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_WASM32_WASIP1_LINKER", "wasm-ld-22")
        .env(
            "CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS",
            format!("-L{WASI_LIBC}"),
        )
        // Set by rustup's `cargo xtask`; they would point the inner build at rustup's tools.
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .with_context(|| format!("running {}", args.cargo.display()))?;
    ensure!(status.success(), "wasm build failed ({status})");

    let built = build_dir
        .join(TARGET)
        .join("wasm")
        .join("dohguard_filter.wasm");
    ensure!(
        built.is_file(),
        "build succeeded but {} is missing",
        built.display()
    );

    if args.no_opt {
        std::fs::copy(&built, &output)
            .with_context(|| format!("copying to {}", output.display()))?;
    } else {
        let status = Command::new("wasm-opt")
            .arg("-Oz")
            .args(WASM_OPT_FEATURES)
            .arg(&built)
            .arg("-o")
            .arg(&output)
            .status()
            .context("running wasm-opt")?;
        ensure!(status.success(), "wasm-opt failed ({status})");
    }
    let size = std::fs::metadata(&output)?.len();
    println!(
        "{} ({} bytes, {:.1} KiB)",
        output.display(),
        size,
        size as f64 / 1024.0
    );
    Ok(())
}

/// The workspace root, wherever `cargo xtask` was started from.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Says exactly what is missing before starting a build that would fail obscurely.
fn check_tools(args: &Args) -> Result<()> {
    let missing = |what: &str, package: &str| {
        format!("{what} is missing: install Debian package {package} ({SETUP_HINT})")
    };
    for tool in [&args.cargo, &args.rustc] {
        if !tool.is_file() {
            bail!(missing(
                &format!("Debian rustc-web toolchain ({})", tool.display()),
                "rustc-web cargo-web"
            ));
        }
    }
    if !Path::new(RUST_SRC).join("library").is_dir() {
        bail!(missing(
            &format!("std sources at {RUST_SRC}"),
            "rust-web-src"
        ));
    }
    if !Path::new(WASI_LIBC).is_dir() {
        bail!(missing(&format!("wasi-libc at {WASI_LIBC}"), "wasi-libc"));
    }
    if !on_path("wasm-ld-22") {
        bail!(missing("linker wasm-ld-22", "lld-22"));
    }
    if !on_path("wasm-opt") {
        bail!(missing("wasm-opt", "binaryen"));
    }
    Ok(())
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false)
}
