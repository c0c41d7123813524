//! The whole gateway as one value: unbound upstream, optionally the Elasticsearch-API store and
//! a scorer (real or stand-in), and Envoy (with or without the filter) in front. Started in
//! dependency order, each awaited by polling; dropped in reverse order (Envoy first), each
//! process stopped by PID. Configurations and logs live in a temporary directory (kept when
//! `DOHGUARD_KEEP_RUN_DIR` is set) or in a directory the caller names.

use std::path::{Path, PathBuf};

use crate::envoy::{Envoy, EnvoyOptions, EnvoyPorts, FilterSetup, GatewayLimits, Upstream};
use crate::filter_config::FilterConfig;
use crate::osmem::Osmem;
use crate::paths;
use crate::scorer::{Scorer, ScorerOptions};
use crate::stand_in_scorer::StandInScorer;
use crate::tls::{self, TlsFiles};
use crate::unbound::{Unbound, UnboundOptions};
use crate::LaunchError;

/// Which scorer the filter's callout reaches.
#[derive(Debug, Clone, Default)]
pub enum ScorerKind {
    /// No scorer cluster at all.
    #[default]
    None,
    /// The in-process stand-in (blocks `*.dga.test`).
    StandIn,
    /// The real `dohguard-scorer` with this model card, logging to a fresh osmem-server.
    Real { model_card: PathBuf },
}

#[derive(Debug, Clone)]
pub struct StackOptions {
    /// The filter's plugin configuration; `None` runs bare Envoy (no filter).
    pub filter_config: Option<serde_json::Value>,
    pub scorer: ScorerKind,
    /// Add the TLS listener (self-signed certificate for `localhost`).
    pub tls: bool,
    pub unbound: UnboundOptions,
    /// Envoy worker threads.
    pub concurrency: u32,
    /// Timeouts, per-client rate limit, circuit breakers, overload bounds (product defaults).
    pub limits: GatewayLimits,
    /// Answer `/dns-query` from Envoy itself with this file's bytes instead of proxying to
    /// unbound (the bare-Envoy bound in the benchmarks).
    pub direct_body: Option<PathBuf>,
    /// Fixed ports (for `cargo xtask up`); ephemeral when `None`.
    pub envoy_ports: Option<EnvoyPorts>,
    pub osmem_port: Option<u16>,
    pub scorer_port: Option<u16>,
    /// Directory for configurations and logs; a fresh temporary one when `None`.
    pub run_dir: Option<PathBuf>,
    /// Where to keep the TLS certificate (generated when missing); the run directory when `None`.
    pub tls_dir: Option<PathBuf>,
    /// The console as the filter's override source: Envoy gets its cluster and the filter its
    /// `overrides` section; start the console with [`crate::console::Console::start_feeding`].
    pub override_feed: Option<crate::overrides::OverrideFeed>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            filter_config: None,
            scorer: ScorerKind::None,
            tls: true,
            unbound: UnboundOptions::default(),
            concurrency: 2,
            limits: GatewayLimits::default(),
            direct_body: None,
            envoy_ports: None,
            osmem_port: None,
            scorer_port: None,
            run_dir: None,
            tls_dir: None,
            override_feed: None,
        }
    }
}

impl StackOptions {
    /// The real scorer with the shipped model, the filter asking it (within 5 s) and sending
    /// its events to the store; `filter` gives the filter's other settings, `concurrency`
    /// Envoy's workers.
    pub fn real_scorer(filter: FilterConfig, concurrency: u32) -> Result<Self, LaunchError> {
        Ok(Self {
            filter_config: Some(
                FilterConfig {
                    scorer: true,
                    scorer_timeout_ms: 5000,
                    events: true,
                    ..filter
                }
                .to_json(),
            ),
            scorer: ScorerKind::Real {
                model_card: crate::scorer::default_model_card()?,
            },
            concurrency,
            ..Self::default()
        })
    }
}

#[derive(Debug)]
enum RunDir {
    Temp(tempfile::TempDir),
    Fixed(PathBuf),
}

/// A running gateway. Field order is drop order: Envoy stops before what it calls.
#[derive(Debug)]
pub struct Stack {
    pub envoy: Envoy,
    pub stand_in: Option<StandInScorer>,
    pub scorer: Option<Scorer>,
    pub osmem: Option<Osmem>,
    pub unbound: Unbound,
    pub tls: Option<TlsFiles>,
    dir: RunDir,
}

impl Stack {
    pub fn start(options: StackOptions) -> Result<Self, LaunchError> {
        // Check the build output before starting anything.
        let wasm = match options.filter_config {
            Some(_) => Some(paths::filter_wasm()?),
            None => None,
        };
        Self::start_with(options, wasm)
    }

    /// Like [`Stack::start`], but loads the module at `wasm` instead of the dohguard filter
    /// (the benchmark's no-op filter), with `options.filter_config` as its configuration.
    pub fn start_with_module(options: StackOptions, wasm: &Path) -> Result<Self, LaunchError> {
        if !wasm.is_file() {
            return Err(LaunchError::MissingFile {
                what: "the filter .wasm",
                path: wasm.to_path_buf(),
                hint: "build it first (`cargo xtask bench` builds the no-op filter)",
            });
        }
        let wasm = options.filter_config.as_ref().map(|_| wasm.to_path_buf());
        Self::start_with(options, wasm)
    }

    fn start_with(options: StackOptions, wasm: Option<PathBuf>) -> Result<Self, LaunchError> {
        let dir = match &options.run_dir {
            Some(path) => {
                std::fs::create_dir_all(path)
                    .map_err(LaunchError::io(format!("creating {}", path.display())))?;
                RunDir::Fixed(path.clone())
            }
            None => RunDir::Temp(
                tempfile::Builder::new()
                    .prefix("dohguard-stack-")
                    .tempdir()
                    .map_err(LaunchError::io("creating the stack's temp dir"))?,
            ),
        };
        let path = match &dir {
            RunDir::Temp(t) => t.path().to_path_buf(),
            RunDir::Fixed(p) => p.clone(),
        };
        let tls = match options.tls {
            true => Some(tls::ensure_self_signed(
                options.tls_dir.as_deref().unwrap_or(&path.join("tls")),
            )?),
            false => None,
        };
        let unbound = Unbound::start(&path, &options.unbound)?;
        let mut osmem = None;
        let mut scorer = None;
        let mut stand_in = None;
        let scorer_addr = match &options.scorer {
            ScorerKind::None => None,
            ScorerKind::StandIn => {
                let s = StandInScorer::start()?;
                let addr = (s.addr.ip().to_string(), s.addr.port());
                stand_in = Some(s);
                Some(addr)
            }
            ScorerKind::Real { model_card } => {
                let store = Osmem::start(&path, options.osmem_port)?;
                let real = Scorer::start(
                    &path,
                    &ScorerOptions {
                        model_card: model_card.clone(),
                        detector_cards: crate::scorer::default_detector_cards()?,
                        elasticsearch_url: store.url(),
                        port: options.scorer_port,
                    },
                )?;
                let addr = ("127.0.0.1".to_owned(), real.port);
                osmem = Some(store);
                scorer = Some(real);
                Some(addr)
            }
        };
        let envoy = Envoy::start(
            &path,
            &EnvoyOptions {
                upstream: match &options.direct_body {
                    Some(body_file) => Upstream::Direct {
                        body_file: body_file.clone(),
                    },
                    None => Upstream::Unbound {
                        port: unbound.doh_port,
                    },
                },
                filter: wasm.map(|wasm| {
                    let mut config = options.filter_config.clone().unwrap_or_default();
                    if let Some(feed) = &options.override_feed {
                        feed.add_to(&mut config);
                    }
                    FilterSetup { wasm, config }
                }),
                tls: tls.clone(),
                scorer: scorer_addr,
                console_port: options.override_feed.as_ref().map(|f| f.console_port),
                console_tls_ca: options
                    .override_feed
                    .as_ref()
                    .and_then(|f| f.console_tls_ca.clone()),
                concurrency: options.concurrency,
                ports: options.envoy_ports,
                limits: options.limits.clone(),
            },
        )?;
        let dir = match dir {
            RunDir::Temp(t) if std::env::var_os("DOHGUARD_KEEP_RUN_DIR").is_some() => {
                RunDir::Fixed(t.keep())
            }
            other => other,
        };
        Ok(Self {
            envoy,
            stand_in,
            scorer,
            osmem,
            unbound,
            tls,
            dir,
        })
    }

    /// Directory holding the rendered configurations and the processes' logs.
    pub fn dir(&self) -> &Path {
        match &self.dir {
            RunDir::Temp(t) => t.path(),
            RunDir::Fixed(p) => p,
        }
    }

    /// The CA certificate clients must trust for the TLS listener.
    pub fn ca(&self) -> Option<&Path> {
        self.tls.as_ref().map(|t| t.cert.as_path())
    }
}

impl Stack {
    /// Asks the gateway's TLS listener with the real kdig (EDNS on, as kdig does by default).
    pub fn kdig(
        &self,
        method: crate::kdig::Method,
        name: &str,
        rtype: &str,
    ) -> Result<crate::kdig::KdigReply, LaunchError> {
        let ca = self.ca().ok_or(LaunchError::MissingFile {
            what: "the TLS listener's certificate",
            path: self.dir().join("tls"),
            hint: "start the stack with `tls: true`",
        })?;
        crate::kdig::query_doh(
            self.envoy.ports.https,
            ca,
            tls::TLS_HOSTNAME,
            method,
            name,
            rtype,
            true,
        )
    }

    /// A raw request to the cleartext listener (HTTP/2 prior knowledge) through curl.
    pub fn http(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<crate::doh_client::HttpReply, LaunchError> {
        self.http_over(false, method, path_and_query, headers, body)
    }

    /// Like [`Stack::http`], over HTTP/1.1 when `http1` (see `Transport::CleartextHttp1`).
    pub fn http_over(
        &self,
        http1: bool,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<crate::doh_client::HttpReply, LaunchError> {
        let port = self.envoy.ports.http;
        let transport = match http1 {
            true => crate::doh_client::Transport::CleartextHttp1 { port },
            false => crate::doh_client::Transport::Cleartext { port },
        };
        crate::doh_client::request(&transport, method, path_and_query, headers, body)
    }

    /// Value of the filter's counter `name` (e.g. `dohguard.verdict.block`) in Envoy's
    /// `/stats`, where proxy-wasm metrics live under `wasmcustom.`. A counter missing from the
    /// stats is an error, never 0: the filter defines every counter when it starts, so a
    /// missing one means it was renamed or the filter is not loaded.
    pub fn filter_counter(&self, name: &str) -> Result<u64, LaunchError> {
        let stat = format!("wasmcustom.{name}");
        self.envoy.stat(&stat)?.ok_or(LaunchError::Http {
            url: format!("Envoy admin /stats ({stat})"),
            message: "counter missing from Envoy's stats".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_module_is_named_before_anything_starts() {
        let missing = Path::new("/nonexistent/noop_filter.wasm");
        let options = StackOptions {
            filter_config: Some(serde_json::json!({})),
            ..StackOptions::default()
        };
        match Stack::start_with_module(options, missing) {
            Err(LaunchError::MissingFile { path, .. }) => assert_eq!(path, missing),
            other => panic!("expected MissingFile, got {other:?}"),
        }
    }
}
