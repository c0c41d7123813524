//! `cargo xtask wasm`: builds the proxy-wasm filter for wasm32-wasip1 and shrinks it; [`build`]
//! does the same for any proxy-wasm crate (`cargo xtask bench` builds its no-op filter with it).
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

/// Debian's rustc-web toolchain, the one that can build std for wasm32 here.
#[derive(clap::Args)]
pub struct Toolchain {
    /// Debian rustc-web's cargo (rustup's cargo cannot build std for wasm32 here).
    #[arg(long, env = "DOHGUARD_WASM_CARGO", default_value = "/usr/bin/cargo")]
    cargo: PathBuf,
    /// Debian rustc-web's rustc, matching the std sources in /usr/lib/rustlib/src/rust.
    #[arg(long, env = "DOHGUARD_WASM_RUSTC", default_value = "/usr/bin/rustc")]
    rustc: PathBuf,
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    toolchain: Toolchain,
    /// Skip `wasm-opt -Oz` (copies the unoptimised module instead).
    #[arg(long)]
    no_opt: bool,
}

/// One proxy-wasm crate to build: its manifest, package, and where the module goes.
pub struct Module {
    /// `Cargo.toml` of the workspace (or standalone crate) holding the package.
    pub manifest: PathBuf,
    pub package: &'static str,
    /// The file cargo writes, e.g. `dohguard_filter.wasm`.
    pub artifact: &'static str,
    pub output: PathBuf,
}

impl Module {
    /// The dohguard filter, written to `target/dohguard_filter.wasm`.
    pub fn dohguard_filter() -> Self {
        let root = repo_root();
        Self {
            manifest: root.join("Cargo.toml"),
            package: "dohguard-filter",
            artifact: "dohguard_filter.wasm",
            output: root.join("target").join("dohguard_filter.wasm"),
        }
    }

    /// The no-op baseline filter of `cargo xtask bench`, written to `target/noop_filter.wasm`.
    pub fn noop_filter() -> Self {
        let root = repo_root();
        Self {
            manifest: root.join("bench/noop-filter/Cargo.toml"),
            package: "dohguard-noop-filter",
            artifact: "dohguard_noop_filter.wasm",
            output: root.join("target").join("noop_filter.wasm"),
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    build(&args.toolchain, &Module::dohguard_filter(), !args.no_opt)?;
    Ok(())
}

/// Builds `module` with the `wasm` profile and writes it (through `wasm-opt -Oz` when
/// `optimise`) to `module.output`, which it returns.
pub fn build(toolchain: &Toolchain, module: &Module, optimise: bool) -> Result<PathBuf> {
    let root = repo_root();
    // Shared by every module: std, built once by build-std, is reused across them.
    let build_dir = root.join("target").join("wasm-build");
    let output = &module.output;

    check_tools(toolchain)?;

    let rustdoc = toolchain.rustc.with_file_name("rustdoc");
    let status = Command::new(&toolchain.cargo)
        .current_dir(&root)
        .arg("build")
        .arg("--manifest-path")
        .arg(&module.manifest)
        .args(["--package", module.package, "--lib", "--profile", "wasm"])
        .args([
            "--target",
            TARGET,
            "-Zbuild-std=std,panic_abort",
            "--target-dir",
        ])
        .arg(&build_dir)
        .env("RUSTC", &toolchain.rustc)
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
        .with_context(|| format!("running {}", toolchain.cargo.display()))?;
    ensure!(
        status.success(),
        "wasm build of {} failed ({status})",
        module.package
    );

    let built = build_dir.join(TARGET).join("wasm").join(module.artifact);
    ensure!(
        built.is_file(),
        "build succeeded but {} is missing",
        built.display()
    );

    if optimise {
        let status = Command::new("wasm-opt")
            .arg("-Oz")
            .args(WASM_OPT_FEATURES)
            .arg(&built)
            .arg("-o")
            .arg(output)
            .status()
            .context("running wasm-opt")?;
        ensure!(status.success(), "wasm-opt failed ({status})");
    } else {
        std::fs::copy(&built, output)
            .with_context(|| format!("copying to {}", output.display()))?;
    }
    let size = std::fs::metadata(output)?.len();
    println!(
        "{} ({} bytes, {:.1} KiB)",
        output.display(),
        size,
        size as f64 / 1024.0
    );
    Ok(output.clone())
}

/// The workspace root, wherever `cargo xtask` was started from.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Says exactly what is missing before starting a build that would fail obscurely.
fn check_tools(toolchain: &Toolchain) -> Result<()> {
    let missing = |what: &str, package: &str| {
        format!("{what} is missing: install Debian package {package} ({SETUP_HINT})")
    };
    for tool in [&toolchain.cargo, &toolchain.rustc] {
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
