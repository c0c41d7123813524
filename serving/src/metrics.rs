//! The Prometheus registry a part serves at `GET /metrics`.

use std::sync::Arc;

use prometheus_client::registry::Registry;

/// A part's registry once every metric is registered: cheap to clone, and shown as the text
/// exposition format.
#[derive(Debug, Clone, Default)]
pub struct Exposition(Arc<Registry>);

impl Exposition {
    pub fn new(registry: Registry) -> Self {
        Self(Arc::new(registry))
    }

    /// The registry in the Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.0)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn encodes_what_was_registered() {
        let mut registry = Registry::with_prefix("dohguard_test");
        let counter = Counter::<u64>::default();
        registry.register("things", "things seen", counter.clone());
        let exposition = Exposition::new(registry);
        counter.inc();
        let text = exposition.clone().encode();
        assert!(text.contains("dohguard_test_things_total 1"), "{text}");
    }
}
