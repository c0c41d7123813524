//! The dohguard security console: a web UI and JSON API over the verdict documents that the
//! scorer writes to Elasticsearch (contract 3, read through `dohguard-schema`), with its own
//! records in documented indices (contract 4: users, sessions, audit, labels).
//!
//! - [`config`]: typed configuration (file, environment, flags), validated once.
//! - [`store`]: Elasticsearch access and the console's index mappings.
//! - [`account`]: password change and admin reset, the user list.
//! - [`auth`], [`audit`]: users, roles, argon2 passwords, sessions, CSRF; the audit trail.
//! - [`time_range`], [`query_log`], [`overview`], [`domain`], [`client`], [`vetting`], [`labels`], [`overrides`]: the pure logic (URL filters
//!   to queries, search_after cursors, aggregations to numbers, label validation).
//! - [`overview_cache`]: per-minute partial aggregates so the overview does not aggregate
//!   every document of the day on each request.
//! - [`tls`]: optional HTTPS (rustls).
//! - [`api`], [`pages`], [`app`]: HTTP glue; [`app::app`] is the router as a value.

pub mod account;
pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod client;
pub mod config;
pub mod domain;
pub mod error;
pub mod labels;
pub mod overrides;
pub mod overview;
pub mod overview_cache;
pub mod pages;
pub mod query_log;
pub mod retrain;
pub mod retrain_api;
pub mod store;
pub mod time_range;
pub mod tls;
pub mod users;
pub mod vetting;

pub use app::{app, AppState};
pub use config::Config;
