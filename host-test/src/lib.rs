//! A proxy-wasm ABI 0.2.1 host on wasmtime, for testing and measuring
//! proxy-wasm filters (here: the dohguard filter) without Envoy.
//!
//! A [`Plugin`] is a compiled module; each [`Filter`] is one VM of it, with
//! its host state in a wasmtime `Store<HostState>`: header maps, bodies,
//! properties, HTTP calls answered by the test, metrics, logs, a clock the
//! test moves, and a [`SharedData`] store that several VMs can share the way
//! Envoy's workers do. The host functions live in `imports`, one module per
//! ABI area; [`HttpStream`] and [`Outcome`] give tests an expectation-style
//! API. There is no global state: every VM is independent unless the test
//! hands it the same `SharedData` or `Clock`.

pub mod abi;
mod clock;
mod error;
mod filter;
mod header_map;
mod imports;
pub mod locate;
mod plugin;
mod shared_data;
mod state;
mod stream;

pub use abi::{Action, LogLevel};
pub use clock::Clock;
pub use error::HostError;
pub use filter::{Filter, FilterBuilder};
pub use header_map::HeaderMap;
pub use locate::dohguard_filter_wasm;
pub use plugin::Plugin;
pub use shared_data::{SetError, SharedData};
pub use state::{HostState, HttpCall, LocalResponse, LogEntry};
pub use stream::{HttpStream, Outcome, PendingCall, StatusMatch, Step};
