//! Bad plugin configurations are refused in `proxy_on_configure`, and the
//! log line names the bad field in the one shape of configuration errors,
//! `filter: configuration <key>: <problem>` (filter/CONFIG.md, docs/contracts.md).

use crate::common::plugin;
use dohguard_host_test::LogLevel;
use serde_json::{json, Value};

/// Starts the filter with `config`; it must be refused with an error log line
/// `filter: configuration <field>...: <problem>` (`field` empty: the document).
fn assert_rejected(config: &str, field: &str) {
    let err = plugin()
        .vm()
        .configuration(config)
        .start()
        .expect_err(&format!("configuration {config} was accepted"));
    assert!(err.is_configuration_rejected(), "{config}: {err}");
    let log = err.guest_log().unwrap();
    let prefix = if field.is_empty() {
        "filter: configuration: ".to_owned()
    } else {
        format!("filter: configuration {field}")
    };
    assert!(
        log.iter()
            .any(|e| e.level == LogLevel::Error && e.message.starts_with(&prefix)),
        "no error log line starts with {prefix:?} for {config}: {log:?}"
    );
}

fn rejected(config: Value, field: &str) {
    assert_rejected(&config.to_string(), field);
}

#[test]
fn valid_configurations_start() {
    for config in [
        json!({}),
        json!({ "mode": "monitor", "deny": ["a.test", "*.b.test", ".c.test"], "allow": ["ok.c.test"] }),
        json!({ "block": { "answer": "addresses", "addresses": ["192.0.2.1", "::1"], "ttl_s": 5 } }),
        json!({ "scorer": { "cluster": "s", "timeout_ms": 1, "failure_mode": "closed" }, "verdict_header": null }),
    ] {
        plugin()
            .vm()
            .configuration(config.to_string())
            .start()
            .unwrap_or_else(|e| panic!("{config}: {e}"));
    }
    plugin()
        .vm()
        .start()
        .expect("an empty configuration means all defaults");
}

#[test]
fn malformed_json_is_rejected() {
    // serde_json names where the document broke off: inside `deny`.
    assert_rejected("{\"deny\": [", "deny: ");
    assert_rejected("[1, 2]", "");
}

#[test]
fn unknown_field_is_named() {
    rejected(json!({ "denny": ["a.test"] }), "denny: ");
}

#[test]
fn bad_rule_is_named_with_its_index() {
    rejected(
        json!({ "deny": ["ok.test", "also.ok", "fine.test", "bad..com"] }),
        "deny[3]: \"bad..com\": ",
    );
    rejected(json!({ "allow": ["-".repeat(64) + ".test"] }), "allow[0]: ");
}

#[test]
fn bad_mode_and_block_answer_are_named() {
    rejected(json!({ "mode": "block-everything" }), "mode: ");
    rejected(json!({ "block": { "answer": "teapot" } }), "block.answer: ");
    rejected(
        json!({ "block": { "answer": "addresses" } }),
        "block.addresses",
    );
    rejected(
        json!({ "block": { "answer": "nxdomain", "addresses": ["192.0.2.1"] } }),
        "block.addresses",
    );
    rejected(
        json!({ "block": { "answer": "addresses", "addresses": ["not-an-ip"] } }),
        "block.addresses[0]: ",
    );
    rejected(
        json!({ "block": { "ttl_s": 2_147_483_648u64 } }),
        "block.ttl_s: ",
    );
    rejected(
        json!({ "block": { "ttl": 2_147_483_648u64 } }),
        "block.ttl_s: ",
    );
}

#[test]
fn a_renamed_key_keeps_its_meaning_with_a_warning() {
    for (config, old, new) in [
        (
            json!({ "block": { "ttl": 42 } }),
            "block.ttl",
            "block.ttl_s",
        ),
        (
            json!({ "cache": { "max_ttl": 600 } }),
            "cache.max_ttl",
            "cache.max_ttl_s",
        ),
    ] {
        let filter = plugin()
            .vm()
            .configuration(config.to_string())
            .start()
            .unwrap_or_else(|e| panic!("{config}: {e}"));
        let warning = format!("filter: configuration {old}: deprecated, renamed to {new}");
        assert!(
            filter
                .logs()
                .iter()
                .any(|e| e.level == LogLevel::Warn && e.message.starts_with(&warning)),
            "no warning {warning:?}: {:?}",
            filter.logs()
        );
    }
    // Old and new name together: refused, never a silent choice.
    rejected(json!({ "block": { "ttl": 1, "ttl_s": 2 } }), "block.ttl: ");
}

#[test]
fn bad_scorer_settings_are_named() {
    rejected(json!({ "scorer": { "timeout_ms": 100 } }), "scorer: ");
    rejected(
        json!({ "scorer": { "cluster": "s", "timeout_ms": 0 } }),
        "scorer.timeout_ms: ",
    );
    rejected(
        json!({ "scorer": { "cluster": "s", "timeout_ms": 60001 } }),
        "scorer.timeout_ms: ",
    );
    rejected(
        json!({ "scorer": { "cluster": "s", "failure_mode": "sideways" } }),
        "scorer.failure_mode: ",
    );
}
