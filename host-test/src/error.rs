//! Errors of the host library.

use std::path::PathBuf;

use crate::state::LogEntry;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    #[error("filter wasm not found at {}: run `cargo xtask wasm` first (or point {} at a built filter)", path.display(), crate::locate::FILTER_WASM_ENV)]
    FilterWasmMissing { path: PathBuf },

    #[error("cannot read {}: {source}", path.display())]
    ReadWasm {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot compile {}: {message}", path.display())]
    Compile { path: PathBuf, message: String },

    #[error("cannot instantiate the module: {message}")]
    Instantiate { message: String },

    #[error("the module has no usable export `{name}`: {message}")]
    MissingExport { name: &'static str, message: String },

    #[error("guest trapped in {callback}: {message}{}", output_suffix(output))]
    Trap {
        callback: &'static str,
        message: String,
        /// What the guest wrote to stdout/stderr (a Rust panic message lands here).
        output: String,
    },

    #[error("guest returned {raw} from {callback}, which is not an action")]
    BadAction { callback: &'static str, raw: i32 },

    #[error("proxy_on_vm_start returned false; guest log:{}", log_suffix(log))]
    VmStartRejected { log: Vec<LogEntry> },

    #[error(
        "proxy_on_configure rejected the configuration; guest log:{}",
        log_suffix(log)
    )]
    ConfigurationRejected { log: Vec<LogEntry> },

    #[error("no HTTP call with token {token} is in flight")]
    UnknownHttpCall { token: u32 },

    #[error("no open HTTP context {0}")]
    NoSuchStream(u32),
}

impl HostError {
    pub fn is_configuration_rejected(&self) -> bool {
        matches!(self, Self::ConfigurationRejected { .. })
    }

    pub fn is_trap(&self) -> bool {
        matches!(self, Self::Trap { .. })
    }

    /// The guest's log lines up to a rejected start or configuration.
    pub fn guest_log(&self) -> Option<&[LogEntry]> {
        match self {
            Self::VmStartRejected { log } | Self::ConfigurationRejected { log } => Some(log),
            _ => None,
        }
    }
}

fn output_suffix(output: &str) -> String {
    if output.is_empty() {
        String::new()
    } else {
        format!("\nguest output:\n{output}")
    }
}

fn log_suffix(log: &[LogEntry]) -> String {
    log.iter()
        .map(|entry| format!("\n  [{:?}] {}", entry.level, entry.message))
        .collect()
}
