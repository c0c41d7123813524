//! dohguard's end-to-end tests live in `tests/tests/`: each starts the real parts together
//! (Envoy with the filter, unbound, the scorer, the Elasticsearch-API store, the console,
//! Prometheus and Alertmanager) through the product's launcher, the `dohguard-launcher` crate
//! in `launcher/`, and queries them with real clients (kdig, curl, nghttp, h2load, Chromium).
//! This library is empty on purpose: nothing here is product code.
