//! Bad plugin configurations are refused in `proxy_on_configure`, and the
//! log line names the bad field (filter/CONFIG.md).

use crate::common::plugin;
use serde_json::{json, Value};

/// Starts the filter with `config`; it must be refused with a log naming `field`.
fn assert_rejected(config: &str, field: &str) {
    let err = plugin()
        .vm()
        .configuration(config)
        .start()
        .expect_err(&format!("configuration {config} was accepted"));
    assert!(err.is_configuration_rejected(), "{config}: {err}");
    let log = err.guest_log().unwrap();
    assert!(
        log.iter().any(|e| e.message.contains(field)),
        "no log line names {field:?} for {config}: {err}"
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
        json!({ "block": { "answer": "addresses", "addresses": ["192.0.2.1", "::1"], "ttl": 5 } }),
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
    assert_rejected("{\"deny\": [", "");
}

#[test]
fn unknown_field_is_named() {
    rejected(json!({ "denny": ["a.test"] }), "denny");
}

#[test]
fn bad_rule_is_named_with_its_index() {
    rejected(
        json!({ "deny": ["ok.test", "also.ok", "fine.test", "bad..com"] }),
        "deny[3]",
    );
    rejected(json!({ "allow": ["-".repeat(64) + ".test"] }), "allow[0]");
}

#[test]
fn bad_mode_and_block_answer_are_named() {
    rejected(json!({ "mode": "block-everything" }), "mode");
    rejected(json!({ "block": { "answer": "teapot" } }), "block.answer");
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
        "block.addresses",
    );
    rejected(json!({ "block": { "ttl": 2_147_483_648u64 } }), "block.ttl");
}

#[test]
fn bad_scorer_settings_are_named() {
    rejected(json!({ "scorer": { "timeout_ms": 100 } }), "cluster");
    rejected(
        json!({ "scorer": { "cluster": "s", "timeout_ms": 0 } }),
        "timeout_ms",
    );
    rejected(
        json!({ "scorer": { "cluster": "s", "timeout_ms": 60001 } }),
        "timeout_ms",
    );
    rejected(
        json!({ "scorer": { "cluster": "s", "failure_mode": "sideways" } }),
        "failure_mode",
    );
}
