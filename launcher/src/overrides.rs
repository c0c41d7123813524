//! The console as the filter's override source (contract 4, "The override feed"): a console port
//! chosen before Envoy starts (its cluster needs it; the console itself may start later, and until
//! it answers the filter keeps its last known set), a random bearer token written to a file (mode
//! 0600) the console reads, and the filter's `overrides` configuration. Everything on loopback.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::ports::free_port;
use crate::LaunchError;

/// Name of the Envoy cluster the filter polls the console through.
pub const CONSOLE_CLUSTER: &str = "dohguard_console";

/// How often the filter polls (ms): with its 1-2 s round trip, an override applies within
/// about two seconds.
pub const POLL_INTERVAL_MS: u64 = 1000;

#[derive(Clone)]
pub struct OverrideFeed {
    /// The console's port (loopback).
    pub console_port: u16,
    /// The console's certificate when it serves HTTPS ([`OverrideFeed::with_console_tls`]).
    pub console_tls_ca: Option<PathBuf>,
    token: String,
}

impl std::fmt::Debug for OverrideFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverrideFeed")
            .field("console_port", &self.console_port)
            .finish_non_exhaustive() // never the token
    }
}

impl OverrideFeed {
    /// A fresh token, and the console on `port` (a free one when `None`).
    pub fn new(port: Option<u16>) -> Result<Self, LaunchError> {
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes).map_err(|e| LaunchError::Http {
            url: "the operating system's random source".into(),
            message: e.to_string(),
        })?;
        let token = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self {
            console_port: port.map_or_else(free_port, Ok)?,
            console_tls_ca: None,
            token,
        })
    }

    /// The console serves HTTPS with this self-signed certificate: Envoy's console cluster
    /// speaks TLS to it and trusts exactly this certificate.
    pub fn with_console_tls(mut self, cert: &Path) -> Self {
        self.console_tls_ca = Some(cert.to_owned());
        self
    }

    /// The filter's `overrides` section.
    pub fn filter_config(&self) -> Value {
        json!({
            "cluster": CONSOLE_CLUSTER,
            "token": self.token,
            "poll_interval_ms": POLL_INTERVAL_MS,
        })
    }

    /// Adds the `overrides` section to a filter configuration (a JSON object).
    pub fn add_to(&self, filter_config: &mut Value) {
        if let Some(fields) = filter_config.as_object_mut() {
            fields.insert("overrides".into(), self.filter_config());
        }
    }

    /// Writes the token to `<dir>/console-feed-token` (mode 0600) for the console.
    pub fn write_token(&self, dir: &Path) -> Result<PathBuf, LaunchError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join("console-feed-token");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(LaunchError::io(format!("writing {}", path.display())))?;
        file.write_all(self.token.as_bytes())
            .map_err(LaunchError::io(format!("writing {}", path.display())))?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_random_private_and_not_in_debug_output() {
        let a = OverrideFeed::new(None).unwrap();
        let b = OverrideFeed::new(None).unwrap();
        assert_ne!(a.token, b.token);
        assert_eq!(a.token.len(), 48);
        assert!(!format!("{a:?}").contains(&a.token));
        let dir = tempfile::tempdir().unwrap();
        let path = a.write_token(dir.path()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let mut config = json!({"deny": []});
        a.add_to(&mut config);
        assert_eq!(config["overrides"]["cluster"], CONSOLE_CLUSTER);
        assert_eq!(config["overrides"]["token"], a.token);
    }
}
