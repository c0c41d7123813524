//! dohguard's proxy-wasm filter: a DNS-over-HTTPS (RFC 8484) gateway policy inside Envoy.
//!
//! The request path, one module each: [`doh`] turns an HTTP request into DNS message bytes
//! (or a 4xx), [`dns`] checks it is one well-formed query and normalises its name,
//! [`decision`] finds the verdict (allow/deny lists, then the shared [`cache`], then the scorer
//! callout, one per name in flight: [`inflight`]) and what to do with it, [`answer`] builds
//! the block answer, [`metrics`] names the counters, [`throttle`] keeps warnings from flooding
//! the log; [`overrides`] applies analysts' overrides, polled from the console, before the
//! lists and the cache. On the response path, [`cname`] reads a forwarded answer for CNAME and alias
//! targets that lead to blocked names. [`config`] validates the plugin configuration once. All of these are plain Rust,
//! tested natively; only `glue` (compiled for wasm32 alone) talks to the proxy-wasm host, and
//! it only translates callbacks into calls of the modules above.

pub mod answer;
pub mod cache;
pub mod cname;
pub mod config;
pub mod decision;
pub mod dns;
pub mod doh;
pub mod inflight;
pub mod metrics;
pub mod overrides;
pub mod pending;
pub mod record;
pub mod throttle;

// Host builds (tests) cannot link the proxy-wasm imports; clippy only type-checks, so it
// lints the glue on the host as well.
#[cfg(any(target_arch = "wasm32", clippy))]
mod glue;
