//! Launches the real dohguard gateway stack for end-to-end tests, `cargo xtask up` and the
//! gateway benchmarks: `unbound` (the upstream DoH resolver), Envoy with the proxy-wasm filter,
//! the scorer (or a stand-in that speaks the callout contract), `osmem-server` (the
//! Elasticsearch-API store) and the security console. Every process runs on ephemeral ports
//! with configuration rendered from the templates in `envoy/` into a temporary directory,
//! is awaited by polling (never a
//! fixed sleep) and is stopped by PID when its handle drops (`cargo xtask up` uses fixed,
//! documented ports and `run/gateway/` instead). Tools are found through
//! `ENVOY_BIN`, `OSMEM_BIN` and `PATH` (see `scripts/env.sh`); a missing one is an error that
//! names it.

pub mod anomaly;
pub mod background;
pub mod console;
pub mod console_stack;
pub mod demo_traffic;
pub mod deploy;
pub mod dns;
pub mod dnsdist;
pub mod doh_client;
pub mod envoy;
pub mod error;
pub mod filter_config;
pub mod http;
pub mod kdig;
pub mod monitoring;
pub mod osmem;
pub mod overrides;
pub mod paths;
pub mod ports;
pub mod process;
pub mod scorer;
pub mod stack;
pub mod stand_in_scorer;
pub mod template;
pub mod tls;
pub mod tools;
pub mod unbound;
pub mod wait;
pub mod webhook;

pub use error::LaunchError;
pub use stack::{Stack, StackOptions};
