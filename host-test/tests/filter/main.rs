//! Behaviour tests of the real dohguard filter (`target/dohguard_filter.wasm`,
//! built by `cargo xtask wasm`) running in this crate's wasmtime host. One
//! test binary, so the filter is compiled once for all of them.

mod cname;
mod common;
mod configuration;
mod doh_requests;
mod edns_and_logs;
mod features;
mod hardening;
mod overrides;
mod policy_and_answers;
mod record;
mod scorer_and_cache;
mod verdict_cache;
