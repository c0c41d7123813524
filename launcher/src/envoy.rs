//! Envoy as the DoH gateway: renders `envoy/gateway.yaml.j2` (listeners, `/dns-query` route,
//! the wasm filter, the scorer cluster, admin), checks it with `envoy --mode validate`, starts
//! Envoy and waits for the admin interface to report it live. Also reads the admin `/stats`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::http;
use crate::process::{http_ok, ManagedProcess};
use crate::tls::TlsFiles;
use crate::tools::{self, Tool};
use crate::LaunchError;

/// Name of the Envoy cluster the filter calls (the filter's `scorer_cluster` setting).
pub const SCORER_CLUSTER: &str = "dohguard_scorer";

/// Where `/dns-query` goes.
#[derive(Debug, Clone)]
pub enum Upstream {
    /// Proxied to unbound's cleartext HTTP/2 DoH port.
    Unbound { port: u16 },
    /// Answered by Envoy itself with this file's bytes (benchmark bound: bare `direct_response`).
    Direct { body_file: PathBuf },
}

/// The proxy-wasm filter and its plugin configuration (JSON, see `filter/CONFIG.md`).
#[derive(Debug, Clone)]
pub struct FilterSetup {
    pub wasm: PathBuf,
    pub config: serde_json::Value,
}

/// The per-client rate limit on the DoH listeners (Envoy's local rate limit, one token
/// bucket per client address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RateLimit {
    /// Sustained queries per second one client address may send.
    pub per_client_per_s: u32,
    /// Queries a client may send at once (the bucket's size).
    pub burst: u32,
    /// Client addresses tracked at once; past it the least recently seen one loses its bucket.
    pub max_clients: u32,
}

impl Default for RateLimit {
    /// Generous: a busy NAT of many devices fits; a single flooding host does not.
    fn default() -> Self {
        Self {
            per_client_per_s: 1000,
            burst: 2000,
            max_clients: 65_536,
        }
    }
}

/// Bounds on the scorer callouts in flight (the scorer cluster's circuit breakers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ScorerCircuit {
    pub max_connections: u32,
    pub max_pending_requests: u32,
    pub max_requests: u32,
}

impl Default for ScorerCircuit {
    fn default() -> Self {
        Self {
            max_connections: 64,
            max_pending_requests: 256,
            max_requests: 512,
        }
    }
}

/// What a hostile client may cost the gateway: timeouts on the DoH listeners, the per-client
/// rate limit, the scorer cluster's circuit breakers, and the overload manager's bounds.
/// Rendered into `envoy/gateway.yaml.j2`; the defaults are the product's (docs/gateway.md).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GatewayLimits {
    /// All request headers must arrive within this.
    pub request_headers_timeout_ms: u32,
    /// The whole request (headers and body) must arrive within this.
    pub request_timeout_ms: u32,
    /// A stream with no activity in either direction for this long is reset.
    pub stream_idle_timeout_ms: u32,
    /// A connection with no streams for this long is closed.
    pub connection_idle_timeout_ms: u32,
    /// `None` turns the per-client rate limit off (the benchmarks' single load generator).
    pub rate_limit: Option<RateLimit>,
    pub scorer_circuit: ScorerCircuit,
    /// The overload manager's heap bound: past 95% Envoy refuses new requests.
    pub max_heap_bytes: u64,
    /// Open client connections at most.
    pub max_downstream_connections: u32,
}

impl Default for GatewayLimits {
    fn default() -> Self {
        Self {
            request_headers_timeout_ms: 5_000,
            request_timeout_ms: 10_000,
            stream_idle_timeout_ms: 5_000,
            connection_idle_timeout_ms: 60_000,
            rate_limit: Some(RateLimit::default()),
            scorer_circuit: ScorerCircuit::default(),
            max_heap_bytes: 1 << 30,
            max_downstream_connections: 50_000,
        }
    }
}

#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    pub upstream: Upstream,
    pub filter: Option<FilterSetup>,
    pub tls: Option<TlsFiles>,
    /// Address of the scorer (`host`, `port`), when the filter may call one.
    pub scorer: Option<(String, u16)>,
    /// The console's loopback port, when the filter polls it for overrides
    /// (cluster [`crate::overrides::CONSOLE_CLUSTER`]).
    pub console_port: Option<u16>,
    /// The certificate the console serves HTTPS with (self-signed, so it is its own CA), when
    /// it does: the console cluster then speaks TLS to it and verifies it (SNI `localhost`).
    pub console_tls_ca: Option<PathBuf>,
    /// Worker threads (`--concurrency`).
    pub concurrency: u32,
    /// Fixed ports (for `cargo xtask up`); ephemeral when `None`.
    pub ports: Option<EnvoyPorts>,
    pub limits: GatewayLimits,
}

#[derive(Debug, Clone, Copy)]
pub struct EnvoyPorts {
    pub admin: u16,
    pub http: u16,
    pub https: u16,
}

impl EnvoyPorts {
    /// Port 0 everywhere: Envoy binds and the kernel picks, so no other process can take a
    /// port between choosing it and binding it. [`Envoy::start`] reads the real numbers back.
    pub const KERNEL_PICKED: Self = Self {
        admin: 0,
        http: 0,
        https: 0,
    };
}

/// Renders the gateway configuration for `options` on `ports`.
pub fn render(options: &EnvoyOptions, ports: EnvoyPorts) -> Result<String, LaunchError> {
    let upstream = match &options.upstream {
        Upstream::Unbound { port } => serde_json::json!({"kind": "unbound", "port": port}),
        Upstream::Direct { body_file } => {
            serde_json::json!({"kind": "direct", "body_file": body_file})
        }
    };
    let filter = options.filter.as_ref().map(|f| {
        serde_json::json!({
            "wasm": f.wasm,
            "config_json": f.config.to_string(),
            "vm_id": "dohguard",
        })
    });
    let tls = options
        .tls
        .as_ref()
        .map(|t| serde_json::json!({"port": ports.https, "cert": t.cert, "key": t.key}));
    let scorer = options
        .scorer
        .as_ref()
        .map(|(host, port)| serde_json::json!({"host": host, "port": port}));
    crate::template::render(
        "envoy/gateway.yaml.j2",
        serde_json::json!({
            "admin_port": ports.admin,
            "http_port": ports.http,
            "tls": tls,
            "upstream": upstream,
            "filter": filter,
            "scorer": scorer,
            "scorer_cluster": SCORER_CLUSTER,
            "console": options.console_port.map(|port| serde_json::json!({"host": "127.0.0.1", "port": port,
                "tls_ca": options.console_tls_ca, "sni": crate::tls::TLS_HOSTNAME})),
            "console_cluster": crate::overrides::CONSOLE_CLUSTER,
            "upstream_source": crate::unbound::GATEWAY_SOURCE,
            "limits": options.limits,
        }),
    )
}

/// Runs `envoy --mode validate -c config`; the error carries Envoy's explanation.
pub fn validate(config: &Path) -> Result<(), LaunchError> {
    let output = Command::new(tools::find(Tool::Envoy)?)
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "-l",
            "warn",
            "-c",
        ])
        .arg(config)
        .output()
        .map_err(LaunchError::io("running envoy --mode validate"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(LaunchError::ToolFailed {
            tool: "envoy --mode validate",
            status: output.status.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        })
    }
}

#[derive(Debug)]
pub struct Envoy {
    process: ManagedProcess,
    pub ports: EnvoyPorts,
    pub tls: bool,
    pub config_path: PathBuf,
}

impl Envoy {
    /// Renders the configuration into `dir`, validates it, starts Envoy and waits until the
    /// admin interface answers `/ready` with 200 (all listeners up, the filter loaded).
    /// Without fixed ports the kernel picks them (see [`EnvoyPorts::KERNEL_PICKED`]): Envoy
    /// writes its admin address to a file and the listeners' ports come from `/listeners`.
    pub fn start(dir: &Path, options: &EnvoyOptions) -> Result<Self, LaunchError> {
        let ports = options.ports.unwrap_or(EnvoyPorts::KERNEL_PICKED);
        let config_path = dir.join("envoy.yaml");
        std::fs::write(&config_path, render(options, ports)?).map_err(LaunchError::io(format!(
            "writing {}",
            config_path.display()
        )))?;
        validate(&config_path)?;
        // DOHGUARD_ENVOY_LOG_LEVEL (e.g. `debug`) helps when a test fails; the filter logs at info.
        let log_level =
            std::env::var("DOHGUARD_ENVOY_LOG_LEVEL").unwrap_or_else(|_| "info".to_owned());
        let mut command = Command::new(tools::find(Tool::Envoy)?);
        command
            .arg("-c")
            .arg(&config_path)
            .args(["--disable-hot-restart", "--log-level", &log_level])
            .arg("--concurrency")
            .arg(options.concurrency.to_string());
        let admin_address_file = dir.join("envoy-admin-address");
        command.arg("--admin-address-path").arg(&admin_address_file);
        let mut process = ManagedProcess::spawn("envoy", command, &dir.join("envoy.log"))?;
        let mut admin = None;
        process.wait_ready(Duration::from_secs(30), || {
            admin = admin.or_else(|| read_admin_address(&admin_address_file));
            admin.is_some_and(|address| http_ok(&format!("http://{address}/ready")))
        })?;
        let admin = admin.expect("ready implies the admin address was read");
        let listeners_url = format!("http://{admin}/listeners?format=json");
        let listeners = http::get_text(&listeners_url)?.1;
        let bound = |name: &str| {
            listener_port(&listeners, name).ok_or_else(|| LaunchError::Http {
                url: listeners_url.clone(),
                message: format!("no bound port for listener {name} in {listeners}"),
            })
        };
        let ports = EnvoyPorts {
            admin: admin.port(),
            http: bound("doh_cleartext")?,
            https: if options.tls.is_some() {
                bound("doh_tls")?
            } else {
                ports.https
            },
        };
        Ok(Self {
            process,
            ports,
            tls: options.tls.is_some(),
            config_path,
        })
    }

    pub fn process(&mut self) -> &mut ManagedProcess {
        &mut self.process
    }

    /// `http://127.0.0.1:PORT/dns-query` (cleartext listener).
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}/dns-query", self.ports.http)
    }

    /// `https://localhost:PORT/dns-query` (TLS listener; the certificate is for localhost).
    pub fn https_url(&self) -> String {
        format!("https://localhost:{}/dns-query", self.ports.https)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports.admin)
    }

    /// The admin `/stats` text (`name: value` lines).
    pub fn stats(&self) -> Result<String, LaunchError> {
        Ok(http::get_text(&self.admin_url("/stats"))?.1)
    }

    /// The admin `/stats/prometheus` text.
    pub fn prometheus(&self) -> Result<String, LaunchError> {
        Ok(http::get_text(&self.admin_url("/stats/prometheus"))?.1)
    }

    /// Value of counter or gauge `name` in `/stats`, if present.
    pub fn stat(&self, name: &str) -> Result<Option<u64>, LaunchError> {
        Ok(parse_stat(&self.stats()?, name))
    }
}

/// The address Envoy wrote with `--admin-address-path`, once it is complete.
fn read_admin_address(path: &Path) -> Option<std::net::SocketAddr> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The port listener `name` is bound to, from the admin `/listeners?format=json` answer.
pub fn listener_port(listeners_json: &str, name: &str) -> Option<u16> {
    let value: serde_json::Value = serde_json::from_str(listeners_json).ok()?;
    value["listener_statuses"]
        .as_array()?
        .iter()
        .find(|status| status["name"] == name)?["local_address"]["socket_address"]["port_value"]
        .as_u64()
        .and_then(|port| u16::try_from(port).ok())
}

/// Finds `name: value` in Envoy's `/stats` text.
pub fn parse_stat(stats: &str, name: &str) -> Option<u64> {
    stats.lines().find_map(|line| {
        let (key, value) = line.split_once(": ")?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_stat_finds_exact_names_only() {
        let stats = "a.b: 3\na.b.c: 7\nhist: P0(nan,0)\n";
        assert_eq!(parse_stat(stats, "a.b"), Some(3));
        assert_eq!(parse_stat(stats, "a.b.c"), Some(7));
        assert_eq!(parse_stat(stats, "a"), None);
        assert_eq!(parse_stat(stats, "hist"), None);
    }

    #[test]
    fn listener_port_reads_the_bound_port_of_the_named_listener() {
        let json = r#"{"listener_statuses":[
            {"name":"doh_cleartext","local_address":{"socket_address":{"address":"127.0.0.1","port_value":37981}}},
            {"name":"doh_tls","local_address":{"socket_address":{"address":"127.0.0.1","port_value":40001}}}]}"#;
        assert_eq!(listener_port(json, "doh_cleartext"), Some(37981));
        assert_eq!(listener_port(json, "doh_tls"), Some(40001));
        assert_eq!(listener_port(json, "readiness"), None);
        assert_eq!(listener_port("not json", "doh_tls"), None);
    }
}
