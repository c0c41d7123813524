//! Self-signed TLS material for the gateway's TLS listener, generated with `openssl` at
//! set-up time (never committed): an ECDSA P-256 certificate for `localhost` and `127.0.0.1`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::tools::{self, Tool};
use crate::LaunchError;

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The host name the certificate is issued to (use it as kdig's `+tls-hostname`).
pub const TLS_HOSTNAME: &str = "localhost";

/// Reuses `dir/cert.pem` + `dir/key.pem` when both exist, otherwise generates them.
pub fn ensure_self_signed(dir: &Path) -> Result<TlsFiles, LaunchError> {
    let files = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    if files.cert.is_file() && files.key.is_file() {
        return Ok(files);
    }
    std::fs::create_dir_all(dir).map_err(LaunchError::io(format!("creating {}", dir.display())))?;
    let output = Command::new(tools::find(Tool::Openssl)?)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "365", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&files.key)
        .arg("-out")
        .arg(&files.cert)
        .output()
        .map_err(LaunchError::io("running openssl"))?;
    if !output.status.success() {
        return Err(LaunchError::ToolFailed {
            tool: "openssl",
            status: output.status.to_string(),
            output: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(files)
}
