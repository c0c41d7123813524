//! Builds the filter's plugin configuration (JSON; schema in `filter/CONFIG.md`) for the
//! tests, `cargo xtask up` and the benchmarks, so the field names live in one place on this
//! side of the contract.

use serde_json::{json, Map, Value};

use crate::envoy::SCORER_CLUSTER;

/// What to do when the scorer cannot be asked (error, timeout, malformed reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureMode {
    Open,
    Closed,
}

#[derive(Debug, Clone)]
pub struct FilterConfig {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    /// Call the scorer cluster on a cache miss.
    pub scorer: bool,
    pub failure_mode: FailureMode,
    /// Callout timeout (`scorer.timeout_ms`).
    pub scorer_timeout_ms: u32,
    /// Record every query: decision events to the scorer cluster's `POST /v1/events`.
    pub events: bool,
    /// Extra top-level fields merged over the generated ones (overrides win).
    pub overrides: Map<String, Value>,
}

impl Default for FilterConfig {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            deny: Vec::new(),
            scorer: false,
            failure_mode: FailureMode::Open,
            scorer_timeout_ms: 1000,
            events: false,
            overrides: Map::new(),
        }
    }
}

impl FilterConfig {
    pub fn to_json(&self) -> Value {
        let mut config = json!({
            "allow": self.allow,
            "deny": self.deny,
        });
        let fields = config.as_object_mut().expect("built as an object");
        if self.scorer {
            let failure_mode = match self.failure_mode {
                FailureMode::Open => "open",
                FailureMode::Closed => "closed",
            };
            fields.insert(
                "scorer".into(),
                json!({
                    "cluster": SCORER_CLUSTER,
                    "timeout_ms": self.scorer_timeout_ms,
                    "failure_mode": failure_mode,
                }),
            );
        }
        if self.events {
            fields.insert(
                "events".into(),
                json!({ "cluster": SCORER_CLUSTER, "flush_interval_ms": 100 }),
            );
        }
        for (key, value) in &self.overrides {
            fields.insert(key.clone(), value.clone());
        }
        config
    }
}

/// Reads a rule list file with core's one list-file parser (`rules::list_entries`: one rule
/// per line, blank lines and `#` comments, also after a rule, skipped), so the launcher, the
/// filter and the scorer read a list file the same way.
pub fn read_rule_list(text: &str) -> Vec<String> {
    dohguard_core::rules::list_entries(text)
        .map(|(_, entry)| entry.to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_lists_skip_comments_and_blanks() {
        assert_eq!(
            read_rule_list("# x\n\na.test\n  .b.test  \n"),
            ["a.test", ".b.test"]
        );
        // A trailing comment: the scorer accepted it while the launcher passed it on whole
        // and Envoy refused the filter.
        assert_eq!(read_rule_list("evil.test # c2\n"), ["evil.test"]);
        let compiled = dohguard_core::rules::RuleSet::from_patterns(
            read_rule_list("evil.test # c2\n")
                .iter()
                .map(String::as_str),
        );
        assert!(compiled.is_ok());
    }

    #[test]
    fn scorer_block_only_when_asked_and_overrides_win() {
        let mut c = FilterConfig::default();
        assert!(c.to_json().get("scorer").is_none());
        c.scorer = true;
        c.failure_mode = FailureMode::Closed;
        c.overrides.insert("mode".into(), json!("monitor"));
        let v = c.to_json();
        assert_eq!(v["scorer"]["cluster"], SCORER_CLUSTER);
        assert_eq!(v["scorer"]["failure_mode"], "closed");
        assert_eq!(v["mode"], "monitor");
    }
}
