//! The shape of a verdict, in one place. `docs/contracts.md` ("Contract 3: the decision
//! record") is the prose version; both change together.
//!
//! - [`event`]: what the filter records for every DoH query it answers or forwards, sent in
//!   batches to the scorer (`POST /v1/events`), which is the one writer of verdict documents.
//! - [`document`]: the Elasticsearch document (Elastic Common Schema names, `dohguard.*` for
//!   the rest) that the scorer writes and the console and the anomaly detector read.
//!
//! No I/O here: serde types and pure conversions only, so the filter (wasm32), the scorer
//! and the readers to come share them.

pub mod document;
pub mod event;

pub use document::{VerdictDocument, SCHEMA_VERSION};
pub use event::{Answer, DecisionEvent, EventBatch, Layer};
