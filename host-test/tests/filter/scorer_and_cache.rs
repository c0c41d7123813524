//! Scorer callouts of the real filter (scripted replies, errors, timeouts,
//! fail-open/closed) and its verdict cache in shared data (hits, TTL expiry
//! on the host clock, registered-domain scope, sharing across VMs).

use std::time::Duration;

use crate::common::*;
use dohguard_host_test::{Action, Filter, HeaderMap, HttpStream, SharedData, Step};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::{json, Value};

/// Asks for `name`, expects a callout and answers it with `reply` (status, body).
/// Returns the verdict header of the outcome: on the local reply when
/// answered, else on the forwarded response.
fn ask_scorer(filter: &mut Filter, name: &str, status: u16, body: &str) -> (bool, Option<String>) {
    let mut stream = filter.stream().unwrap();
    let step = doh_get(&mut stream, &wire(&query(name, RecordType::A, true)))
        .expect_pause()
        .expect_http_call(SCORER)
        .returning(status, body)
        .unwrap()
        .into_step();
    finish_decision(step, stream)
}

/// Asks for `name` and expects no callout (a cache or list decision).
fn ask_cached(filter: &mut Filter, name: &str) -> (bool, Option<String>) {
    let mut stream = filter.stream().unwrap();
    let step = doh_get(&mut stream, &wire(&query(name, RecordType::A, true)))
        .expect_no_http_call()
        .into_step();
    finish_decision(step, stream)
}

/// (blocked?, verdict header) for a decided request.
fn finish_decision(step: Step, mut stream: HttpStream<'_>) -> (bool, Option<String>) {
    if let Some(reply) = step.local_response() {
        assert!(
            !step.resumed_request() && step.action != Some(Action::Continue),
            "answered and forwarded"
        );
        dns_answer(reply);
        return (true, reply.header(VERDICT_HEADER));
    }
    assert!(step.continues(), "neither answered nor forwarded: {step:?}");
    // A headers-only reply: nothing for the CNAME inspection to hold.
    stream
        .response_headers(&[(":status", "200")], true)
        .unwrap()
        .expect_continue();
    let header = stream.response_header_map().get(VERDICT_HEADER);
    stream.finish().unwrap();
    (false, header)
}

/// A counter's value; a counter the filter did not define fails the test (never read as 0).
fn metric(filter: &Filter, name: &str) -> i64 {
    filter
        .metric(name)
        .unwrap_or_else(|| panic!("metric {name} is not defined"))
}

#[test]
fn callout_carries_the_contract_request() {
    let mut filter = filter(scorer_config(json!({})));
    let mut stream = filter.stream().unwrap();
    stream.set_property("source.address", "198.51.100.23:40001");
    let call = doh_get(
        &mut stream,
        &wire(&query("WWW.Xjw3kq9z.com.", RecordType::AAAA, false)),
    )
    .expect_pause()
    .expect_http_call(SCORER);
    let request = call.request();
    assert_eq!(request.header(":method").as_deref(), Some("POST"));
    assert_eq!(request.header(":path").as_deref(), Some("/v1/score"));
    assert_eq!(request.header(":authority").as_deref(), Some(SCORER));
    assert!(request
        .header("content-type")
        .unwrap_or_default()
        .starts_with("application/json"));
    assert_eq!(request.timeout, Duration::from_millis(200));
    let body: Value = serde_json::from_slice(&request.body).expect("JSON callout body");
    assert_eq!(body["name"], "www.xjw3kq9z.com");
    assert_eq!(body["qtype"], "AAAA");
    assert_eq!(body["client"], "198.51.100.23");
    assert_eq!(metric(&filter, "dohguard.callout.sent"), 1);
    assert!(
        filter.unknown_property_paths().is_empty(),
        "the filter read properties the host does not provide: {:?}",
        filter.unknown_property_paths()
    );
}

#[test]
fn block_verdict_gets_the_block_answer_with_ede_filtered() {
    let mut filter = filter(scorer_config(json!({})));
    let mut stream = filter.stream().unwrap();
    let reply = doh_get(
        &mut stream,
        &wire(&query("xjw3kq9z.com.", RecordType::A, true)),
    )
    .expect_http_call(SCORER)
    .returning(
        200,
        verdict(
            "xjw3kq9z.com",
            "xjw3kq9z.com",
            "block",
            "registered_domain",
            3600,
        ),
    )
    .unwrap()
    .expect_local_response(200);
    let answer = dns_answer(&reply);
    assert_eq!(answer.metadata.id, 0x1234);
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        extended_error(&answer),
        Some((15, "blocked by model".into()))
    );
    assert_eq!(
        reply.header(VERDICT_HEADER).as_deref(),
        Some("block; reason=model")
    );
    assert_eq!(metric(&filter, "dohguard.reason.model"), 1);
    assert_eq!(metric(&filter, "dohguard.verdict.block"), 1);
    assert_eq!(metric(&filter, "dohguard.blocked"), 1);
    assert_eq!(metric(&filter, "dohguard.cache.miss"), 1);
}

#[test]
fn allow_and_monitor_verdicts_continue() {
    let mut filter = filter(scorer_config(json!({})));
    let allow = verdict("example.org", "example.org", "allow", "name", 60);
    assert_eq!(
        ask_scorer(&mut filter, "example.org.", 200, &allow),
        (false, Some("allow; reason=model".into()))
    );
    let monitor = verdict("odd.example.net", "example.net", "monitor", "name", 60);
    assert_eq!(
        ask_scorer(&mut filter, "odd.example.net.", 200, &monitor),
        (false, Some("monitor; reason=model".into()))
    );
    assert_eq!(metric(&filter, "dohguard.verdict.allow"), 1);
    assert_eq!(metric(&filter, "dohguard.verdict.monitor"), 1);
}

#[test]
fn monitor_mode_forwards_a_model_block() {
    let mut filter = filter(scorer_config(json!({ "mode": "monitor" })));
    let block = verdict("xjw3kq9z.com", "xjw3kq9z.com", "block", "name", 60);
    assert_eq!(
        ask_scorer(&mut filter, "xjw3kq9z.com.", 200, &block),
        (false, Some("block; reason=model; enforced=no".into()))
    );
    assert_eq!(metric(&filter, "dohguard.monitor_passed"), 1);
}

#[test]
fn cached_verdict_answers_without_a_second_callout() {
    let mut filter = filter(scorer_config(json!({})));
    let block = verdict("xjw3kq9z.com", "xjw3kq9z.com", "block", "name", 3600);
    assert!(ask_scorer(&mut filter, "xjw3kq9z.com.", 200, &block).0);
    let (blocked, header) = ask_cached(&mut filter, "xjw3kq9z.com.");
    assert!(blocked);
    assert_eq!(header.as_deref(), Some("block; reason=model; cache=hit"));
    let allow = verdict("example.org", "example.org", "allow", "name", 3600);
    assert!(!ask_scorer(&mut filter, "example.org.", 200, &allow).0);
    assert_eq!(
        ask_cached(&mut filter, "example.org."),
        (false, Some("allow; reason=model; cache=hit".into()))
    );
    assert_eq!(metric(&filter, "dohguard.callout.sent"), 2);
    assert_eq!(metric(&filter, "dohguard.cache.hit"), 2);
    assert_eq!(metric(&filter, "dohguard.cache.miss"), 2);
    assert_eq!(metric(&filter, "dohguard.reason.cache"), 2);
    assert_eq!(metric(&filter, "dohguard.queries"), 4);
}

#[test]
fn cache_is_shared_between_vms() {
    let shared = SharedData::new();
    let config = scorer_config(json!({})).to_string();
    let start = || {
        plugin()
            .vm()
            .configuration(config.clone())
            .clusters(&[SCORER])
            .shared_data(shared.clone())
            .start()
            .unwrap()
    };
    let (mut worker_a, mut worker_b) = (start(), start());
    let block = verdict("xjw3kq9z.com", "xjw3kq9z.com", "block", "name", 3600);
    assert!(ask_scorer(&mut worker_a, "xjw3kq9z.com.", 200, &block).0);
    assert!(!shared.is_empty(), "the verdict is stored in shared data");
    assert!(ask_cached(&mut worker_b, "xjw3kq9z.com.").0);
    assert_eq!(metric(&worker_b, "dohguard.callout.sent"), 0);
    assert_eq!(metric(&worker_b, "dohguard.cache.hit"), 1);
}

#[test]
fn cached_verdict_expires_with_its_ttl() {
    let mut filter = filter(scorer_config(json!({})));
    let block = verdict("xjw3kq9z.com", "xjw3kq9z.com", "block", "name", 60);
    assert!(ask_scorer(&mut filter, "xjw3kq9z.com.", 200, &block).0);
    filter.advance_clock(Duration::from_secs(59));
    assert!(ask_cached(&mut filter, "xjw3kq9z.com.").0);
    filter.advance_clock(Duration::from_secs(2));
    let allow = verdict("xjw3kq9z.com", "xjw3kq9z.com", "allow", "name", 60);
    assert!(
        !ask_scorer(&mut filter, "xjw3kq9z.com.", 200, &allow).0,
        "expired entry asks again"
    );
}

#[test]
fn cache_max_ttl_caps_the_scorer_ttl_and_zero_ttl_is_not_cached() {
    let mut filter = filter(scorer_config(json!({ "cache": { "max_ttl_s": 10 } })));
    let block = verdict("xjw3kq9z.com", "xjw3kq9z.com", "block", "name", 3600);
    assert!(ask_scorer(&mut filter, "xjw3kq9z.com.", 200, &block).0);
    filter.advance_clock(Duration::from_secs(11));
    assert!(ask_scorer(&mut filter, "xjw3kq9z.com.", 200, &block).0);

    let no_cache = verdict("example.org", "example.org", "allow", "name", 0);
    assert!(!ask_scorer(&mut filter, "example.org.", 200, &no_cache).0);
    assert!(!ask_scorer(&mut filter, "example.org.", 200, &no_cache).0);
}

#[test]
fn registered_domain_scope_covers_its_subdomains() {
    let mut filter = filter(scorer_config(json!({})));
    let block = verdict(
        "a.xjw3kq9z.co.uk",
        "xjw3kq9z.co.uk",
        "block",
        "registered_domain",
        3600,
    );
    assert!(ask_scorer(&mut filter, "a.xjw3kq9z.co.uk.", 200, &block).0);
    assert!(ask_cached(&mut filter, "b.xjw3kq9z.co.uk.").0);
    assert!(ask_cached(&mut filter, "xjw3kq9z.co.uk.").0);
    // The public suffix itself is not covered.
    let allow = verdict("other.co.uk", "other.co.uk", "allow", "name", 60);
    assert!(!ask_scorer(&mut filter, "other.co.uk.", 200, &allow).0);
}

#[test]
fn name_scope_covers_only_that_name() {
    let mut filter = filter(scorer_config(json!({})));
    let block = verdict("a.example.com", "example.com", "block", "name", 3600);
    assert!(ask_scorer(&mut filter, "a.example.com.", 200, &block).0);
    let allow = verdict("b.example.com", "example.com", "allow", "name", 3600);
    assert!(!ask_scorer(&mut filter, "b.example.com.", 200, &allow).0);
}

#[test]
fn malformed_reply_is_counted_and_fails_open() {
    let mut filter = filter(scorer_config(json!({})));
    for body in [
        "not json",
        r#"{"verdict":"block"}"#,
        r#"{"verdict":"maybe","score":0.5,"ttl":1}"#,
    ] {
        let (blocked, header) = ask_scorer(&mut filter, "example.org.", 200, body);
        assert!(!blocked, "{body}");
        assert_eq!(
            header.as_deref(),
            Some("allow; reason=scorer_failure"),
            "{body}"
        );
    }
    let out_of_range =
        verdict("example.org", "example.org", "block", "name", 60).replace("0.99", "1.5");
    assert!(!ask_scorer(&mut filter, "example.org.", 200, &out_of_range).0);
    assert_eq!(metric(&filter, "dohguard.callout.malformed"), 4);
    assert_eq!(metric(&filter, "dohguard.reason.scorer_failure"), 4);
    assert!(
        filter.logs().iter().any(|e| e.message.contains("scorer")),
        "failures are logged"
    );
}

#[test]
fn server_error_is_counted_and_fails_closed_when_configured() {
    let mut filter = filter(scorer_config(
        json!({ "scorer": { "failure_mode": "closed" } }),
    ));
    let mut stream = filter.stream().unwrap();
    let reply = doh_get(
        &mut stream,
        &wire(&query("example.org.", RecordType::A, true)),
    )
    .expect_http_call(SCORER)
    .returning(503, "overloaded")
    .unwrap()
    .expect_local_response(200);
    let answer = dns_answer(&reply);
    assert_eq!(
        extended_error(&answer),
        Some((15, "scorer unavailable".into()))
    );
    assert_eq!(
        reply.header(VERDICT_HEADER).as_deref(),
        Some("block; reason=scorer_failure")
    );
    assert_eq!(metric(&filter, "dohguard.callout.error"), 1);
    assert_eq!(metric(&filter, "dohguard.callout.timeout"), 0);
}

#[test]
fn server_error_fails_open_by_default() {
    let mut filter = filter(scorer_config(json!({})));
    assert_eq!(
        ask_scorer(&mut filter, "example.org.", 500, "boom"),
        (false, Some("allow; reason=scorer_failure".into()))
    );
    assert_eq!(metric(&filter, "dohguard.callout.error"), 1);
}

#[test]
fn timeout_is_counted_and_the_failure_mode_applies() {
    let mut open = filter(scorer_config(json!({})));
    let mut stream = open.stream().unwrap();
    doh_get(
        &mut stream,
        &wire(&query("example.org.", RecordType::A, false)),
    )
    .expect_http_call(SCORER)
    .timing_out()
    .unwrap()
    .expect_continue();

    assert_eq!(metric(&open, "dohguard.callout.timeout"), 1);
    assert_eq!(metric(&open, "dohguard.callout.error"), 0);

    let mut closed = filter(scorer_config(
        json!({ "scorer": { "failure_mode": "closed" } }),
    ));
    let mut stream = closed.stream().unwrap();
    let pending = doh_get(
        &mut stream,
        &wire(&query("example.org.", RecordType::A, false)),
    )
    .expect_http_call(SCORER)
    .leave_pending();

    closed.advance_clock(pending.timeout);
    let expired = closed.expire_http_calls().unwrap();
    let reply = expired[0].1.local_response().expect("fail-closed answers");
    assert_eq!(
        dns_answer(reply).metadata.response_code,
        ResponseCode::NXDomain
    );
    assert_eq!(metric(&closed, "dohguard.callout.timeout"), 1);
}

#[test]
fn reset_before_the_deadline_is_an_error_not_a_timeout() {
    let mut filter = filter(scorer_config(json!({})));
    let mut stream = filter.stream().unwrap();
    doh_get(
        &mut stream,
        &wire(&query("example.org.", RecordType::A, false)),
    )
    .expect_http_call(SCORER)
    .failing()
    .unwrap()
    .expect_continue();

    assert_eq!(metric(&filter, "dohguard.callout.error"), 1);
    assert_eq!(metric(&filter, "dohguard.callout.timeout"), 0);
}

#[test]
fn dispatch_failure_applies_the_failure_mode_at_once() {
    // The host refuses calls to clusters Envoy does not know, as Envoy does.
    let mut filter = plugin()
        .vm()
        .configuration(scorer_config(json!({ "scorer": { "failure_mode": "closed" } })).to_string())
        .clusters(&["some_other_cluster"])
        .start()
        .unwrap();
    let mut stream = filter.stream().unwrap();
    let reply = doh_get(
        &mut stream,
        &wire(&query("example.org.", RecordType::A, false)),
    )
    .expect_no_http_call()
    .expect_local_response(200);
    assert_eq!(
        dns_answer(&reply).metadata.response_code,
        ResponseCode::NXDomain
    );

    assert_eq!(metric(&filter, "dohguard.callout.error"), 1);
}

#[test]
fn verdict_header_can_be_renamed_or_turned_off() {
    let mut renamed = filter(json!({ "verdict_header": "x-dns-verdict", "deny": ["bad.test"] }));
    let mut stream = renamed.stream().unwrap();
    let reply = doh_get(
        &mut stream,
        &wire(&query("bad.test.", RecordType::A, false)),
    )
    .expect_local_response(200);
    assert_eq!(
        reply.header("x-dns-verdict").as_deref(),
        Some("block; reason=deny_list")
    );
    assert_eq!(reply.header(VERDICT_HEADER), None);

    let mut off = filter(json!({ "verdict_header": null }));
    let mut stream = off.stream().unwrap();
    doh_get(
        &mut stream,
        &wire(&query("example.org.", RecordType::A, false)),
    )
    .expect_continue();
    stream
        .response_headers(&[(":status", "200")], false)
        .unwrap();
    assert_eq!(stream.response_header_map().get(VERDICT_HEADER), None);
}

#[test]
fn post_query_is_scored_from_the_body_callback() {
    let mut filter = filter(scorer_config(json!({})));
    let mut stream = filter.stream().unwrap();
    let reply = doh_post(
        &mut stream,
        &wire(&query("xjw3kq9z.com.", RecordType::A, true)),
    )
    .expect_pause()
    .expect_http_call(SCORER)
    .returning(
        200,
        verdict("xjw3kq9z.com", "xjw3kq9z.com", "block", "name", 60),
    )
    .unwrap()
    .expect_local_response(200);
    assert_eq!(dns_answer(&reply).metadata.id, 0x1234);
}

#[test]
fn concurrent_callouts_resume_their_own_streams() {
    let mut filter = filter(scorer_config(json!({})));
    let mut pending = Vec::new();
    for name in ["first.example.", "second.example."] {
        let mut stream = filter.stream().unwrap();
        let call = doh_get(&mut stream, &wire(&query(name, RecordType::A, false)))
            .expect_http_call(SCORER)
            .leave_pending();
        pending.push(call);
    }
    assert_ne!(pending[0].context_id, pending[1].context_id);
    let reply = |verdict_name: &str, answer: &str| {
        let body = verdict(verdict_name, verdict_name, answer, "name", 60);
        Some((
            HeaderMap::from_pairs(&[(":status", "200")]),
            body.into_bytes(),
        ))
    };
    // Answer the second stream first: each reply must land on its own request.
    let second = filter
        .deliver_http_call(pending[1].token, reply("second.example", "block"))
        .unwrap();
    let answer = dns_answer(second.local_response().expect("second is blocked"));
    assert_eq!(answer.queries[0].name().to_ascii(), "second.example.");
    let first = filter
        .deliver_http_call(pending[0].token, reply("first.example", "allow"))
        .unwrap();
    assert!(first.continues(), "first is allowed and resumed: {first:?}");
    assert_eq!(metric(&filter, "dohguard.verdict.block"), 1);
    assert_eq!(metric(&filter, "dohguard.verdict.allow"), 1);
}
