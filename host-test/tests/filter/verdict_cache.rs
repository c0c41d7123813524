//! The verdict cache's capacity and keying against the real filter: names crafted to collide
//! under the old unkeyed hash do not evict a chosen verdict, VMs started with different random
//! bytes agree on the hash key through shared data, a scorer reply about another name is not
//! used, and a registered domain the filter's suffix list disagrees with is cached for the
//! name only.

use crate::common::*;
use dohguard_host_test::{Filter, SharedData};
use hickory_proto::rr::RecordType;
use serde_json::json;

/// A counter's value; a counter the filter did not define fails the test (never read as 0).
fn metric(filter: &Filter, name: &str) -> i64 {
    filter
        .metric(name)
        .unwrap_or_else(|| panic!("metric {name} is not defined"))
}

/// Asks for `name`, expects a callout and answers it with `body`; true when blocked.
fn scored(filter: &mut Filter, name: &str, body: &str) -> bool {
    let mut stream = filter.stream().unwrap();
    let step = doh_get(&mut stream, &wire(&query(name, RecordType::A, false)))
        .expect_http_call(SCORER)
        .returning(200, body)
        .unwrap()
        .into_step();
    let blocked = step.local_response().is_some();
    assert!(
        blocked || step.continues(),
        "neither answered nor forwarded"
    );
    stream.finish().unwrap();
    blocked
}

/// Asks for `name` and expects a decision without a callout; true when blocked.
fn cached(filter: &mut Filter, name: &str) -> bool {
    let mut stream = filter.stream().unwrap();
    let step = doh_get(&mut stream, &wire(&query(name, RecordType::A, false)))
        .expect_no_http_call()
        .into_step();
    let blocked = step.local_response().is_some();
    assert!(
        blocked || step.continues(),
        "{name}: neither answered nor forwarded"
    );
    stream.finish().unwrap();
    blocked
}

/// Whether asking for `name` makes a callout (left pending, then the stream is dropped).
fn asks_scorer(filter: &mut Filter, name: &str) -> bool {
    let mut stream = filter.stream().unwrap();
    let asked = !doh_get(&mut stream, &wire(&query(name, RecordType::A, false)))
        .http_calls()
        .is_empty();
    if asked {
        let token = filter.pending_http_calls().last().unwrap().token;
        filter.time_out_http_call(token).unwrap();
    }
    asked
}

/// The slot of `name` in the cache before it was keyed: FNV-1a of `n:<name>` modulo
/// `max_entries`, one verdict per slot.
fn old_slot(name: &str, max_entries: u64) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in b"n:".iter().chain(name.as_bytes()) {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash % max_entries
}

#[test]
fn names_crafted_to_collide_do_not_evict_a_chosen_verdict() {
    let max_entries = 4096;
    let mut filter = filter(scorer_config(
        json!({ "cache": { "max_entries": max_entries } }),
    ));
    let victim = "victim-xjw3kq9z.com";
    let block = verdict(victim, victim, "block", "name", 3600);
    assert!(scored(&mut filter, victim, &block));
    // 150 names that each took the victim's slot in the direct-mapped cache.
    let target = old_slot(victim, max_entries);
    let crafted: Vec<String> = (0u64..)
        .map(|i| format!("c{i}.attacker.test"))
        .filter(|n| old_slot(n, max_entries) == target)
        .take(150)
        .collect();
    for name in &crafted {
        let allow = verdict(name, "attacker.test", "allow", "name", 3600);
        assert!(!scored(&mut filter, name, &allow));
    }
    assert!(
        cached(&mut filter, victim),
        "the victim's block verdict is still cached"
    );
    assert_eq!(metric(&filter, "dohguard.cache.hit"), 1);
    assert_eq!(metric(&filter, "dohguard.callout.sent"), 151);
}

#[test]
fn vms_with_different_random_bytes_share_one_hash_key() {
    let shared = SharedData::new();
    let config = scorer_config(json!({})).to_string();
    let start = |seed: u64| {
        plugin()
            .vm()
            .configuration(config.clone())
            .clusters(&[SCORER])
            .shared_data(shared.clone())
            .random_seed(seed)
            .start()
            .unwrap()
    };
    let (mut worker_a, mut worker_b) = (start(1), start(2));
    let key = shared
        .get("dohguard/cache/key")
        .expect("the key is in shared data")
        .0;
    assert_eq!(key.len(), 16);
    let block = verdict("xjw3kq9z.com", "xjw3kq9z.com", "block", "name", 3600);
    assert!(scored(&mut worker_a, "xjw3kq9z.com.", &block));
    assert!(
        cached(&mut worker_b, "xjw3kq9z.com."),
        "B reads what A stored"
    );

    // A VM that lost a start-up race (the stored key changed after it read it) adopts the
    // stored key at its next insert, and from then on shares entries with the others.
    shared
        .set("dohguard/cache/key", b"late-racer-key-0".to_vec(), 0)
        .unwrap();
    let mut worker_c = start(3);
    let allow = verdict("example.org", "example.org", "allow", "name", 3600);
    assert!(!scored(&mut worker_a, "example.org.", &allow));
    assert!(!cached(&mut worker_c, "example.org."));
    assert_eq!(metric(&worker_c, "dohguard.cache.hit"), 1);
}

#[test]
fn a_reply_about_another_name_is_malformed_and_not_cached() {
    let mut filter = filter(scorer_config(json!({})));
    let other = verdict(
        "other-xjw3kq9z.com",
        "other-xjw3kq9z.com",
        "block",
        "registered_domain",
        3600,
    );
    assert!(
        !scored(&mut filter, "example.org.", &other),
        "fails open, not blocked on another name's verdict"
    );
    assert_eq!(metric(&filter, "dohguard.callout.malformed"), 1);
    assert_eq!(metric(&filter, "dohguard.reason.scorer_failure"), 1);
    assert!(
        asks_scorer(&mut filter, "other-xjw3kq9z.com."),
        "nothing was cached for it"
    );
    assert!(
        asks_scorer(&mut filter, "example.org."),
        "nor for the name asked"
    );
}

#[test]
fn a_registered_domain_the_filter_disagrees_with_is_cached_for_the_name() {
    let mut filter = filter(scorer_config(json!({})));
    // The scorer's suffix list says b.example.com; the filter's says example.com.
    let body = verdict(
        "a.b.example.com",
        "b.example.com",
        "block",
        "registered_domain",
        3600,
    );
    assert!(scored(&mut filter, "a.b.example.com.", &body));
    assert!(
        cached(&mut filter, "a.b.example.com."),
        "the name itself is cached"
    );
    for sibling in ["c.b.example.com.", "b.example.com.", "x.example.com."] {
        assert!(
            asks_scorer(&mut filter, sibling),
            "{sibling} is not covered"
        );
    }
    // Agreement keeps the domain scope.
    let agreed = verdict(
        "a.xjw3kq9z.com",
        "xjw3kq9z.com",
        "block",
        "registered_domain",
        3600,
    );
    assert!(scored(&mut filter, "a.xjw3kq9z.com.", &agreed));
    assert!(cached(&mut filter, "b.xjw3kq9z.com."));
}

#[test]
fn concurrent_misses_for_one_name_make_one_callout() {
    let mut filter = filter(scorer_config(json!({})));
    let dns = wire(&query("xjw3kq9z.com.", RecordType::A, false));
    let (leader, call) = {
        let mut stream = filter.stream().unwrap();
        let call = doh_get(&mut stream, &dns)
            .expect_pause()
            .expect_http_call(SCORER)
            .leave_pending();
        (stream.context_id(), call)
    };
    let waiter = {
        let mut stream = filter.stream().unwrap();
        doh_get(&mut stream, &dns)
            .expect_pause()
            .expect_no_http_call();
        stream.context_id()
    };
    assert_eq!(metric(&filter, "dohguard.callout.joined"), 1);
    let body = verdict("xjw3kq9z.com", "xjw3kq9z.com", "block", "name", 3600);
    let headers = dohguard_host_test::HeaderMap::from_pairs(&[(":status", "200")]);
    let step = filter
        .deliver_http_call(call.token, Some((headers, body.into_bytes())))
        .unwrap();
    for (id, answered) in [
        (leader, step.local_response()),
        (
            waiter,
            step.for_stream(waiter).and_then(|s| s.local_response()),
        ),
    ] {
        let reply = answered.unwrap_or_else(|| panic!("stream {id} was not answered: {step:?}"));
        let answer = dns_answer(reply);
        assert_eq!(answer.metadata.id, 0x1234);
        assert_eq!(
            reply.header(VERDICT_HEADER).as_deref(),
            Some("block; reason=model")
        );
    }
    for id in [leader, waiter] {
        filter.reopen_stream(id).unwrap().finish().unwrap();
    }
    assert_eq!(
        metric(&filter, "dohguard.callout.sent"),
        1,
        "one callout for both"
    );
    assert_eq!(metric(&filter, "dohguard.blocked"), 2);
    assert_eq!(metric(&filter, "dohguard.reason.model"), 2);
    assert_eq!(metric(&filter, "dohguard.queries"), 2);
    assert!(cached(&mut filter, "xjw3kq9z.com."));
}

#[test]
fn waiters_get_the_failure_mode_when_the_leader_goes_first() {
    let mut filter = filter(scorer_config(json!({})));
    let dns = wire(&query("xjw3kq9z.com.", RecordType::A, false));
    let leader = {
        let mut stream = filter.stream().unwrap();
        doh_get(&mut stream, &dns)
            .expect_http_call(SCORER)
            .leave_pending();
        stream.context_id()
    };
    let waiter = {
        let mut stream = filter.stream().unwrap();
        doh_get(&mut stream, &dns)
            .expect_pause()
            .expect_no_http_call();
        stream.context_id()
    };
    // The leader's client goes away: Envoy ends its stream and cancels its callout.
    filter.reopen_stream(leader).unwrap().finish().unwrap();
    assert_eq!(metric(&filter, "dohguard.callout.error"), 1);
    assert_eq!(metric(&filter, "dohguard.reason.scorer_failure"), 1);
    let mut stream = filter.reopen_stream(waiter).unwrap();
    // A headers-only reply: an answer with a body would be held for CNAME inspection.
    stream
        .response_headers(&[(":status", "200")], true)
        .unwrap()
        .expect_continue();
    assert_eq!(
        stream.response_header_map().get(VERDICT_HEADER).as_deref(),
        Some("allow; reason=scorer_failure"),
        "fail-open let the waiter through"
    );
    stream.finish().unwrap();
    // The flight is over: the next request asks the scorer itself.
    assert!(asks_scorer(&mut filter, "xjw3kq9z.com."));
}

/// Two VMs (Envoy workers) sharing shared data and one clock, as the filter sees them.
fn two_workers() -> (Filter, Filter) {
    let shared = SharedData::new();
    let clock = dohguard_host_test::Clock::new();
    let mut config = json!({ "verdict_header": VERDICT_HEADER, "verdict_header_detail": true });
    if let (Some(base), serde_json::Value::Object(extra)) =
        (config.as_object_mut(), scorer_config(json!({})))
    {
        base.extend(extra);
    }
    let start = || {
        plugin()
            .vm()
            .configuration(config.to_string())
            .clusters(&[SCORER])
            .shared_data(shared.clone())
            .clock(clock.clone())
            .start()
            .unwrap()
    };
    (start(), start())
}

/// Asks `worker` for `name` and expects the request parked: no callout, paused.
fn parked(worker: &mut Filter, dns: &[u8]) -> u32 {
    let mut stream = worker.stream().unwrap();
    doh_get(&mut stream, dns)
        .expect_pause()
        .expect_no_http_call();
    stream.context_id()
}

#[test]
fn concurrent_misses_on_two_workers_make_one_callout() {
    let (mut worker_a, mut worker_b) = two_workers();
    let dns = wire(&query("xjw3kq9z.com.", RecordType::A, false));
    let (leader, call) = {
        let mut stream = worker_a.stream().unwrap();
        let call = doh_get(&mut stream, &dns)
            .expect_pause()
            .expect_http_call(SCORER)
            .leave_pending();
        (stream.context_id(), call)
    };
    let waiter = parked(&mut worker_b, &dns);
    assert_eq!(metric(&worker_b, "dohguard.callout.joined"), 1);
    assert_eq!(
        worker_b.tick_period(),
        Some(std::time::Duration::from_millis(5)),
        "worker B polls for its parked request"
    );
    assert!(
        worker_b.tick_streams().unwrap().is_empty(),
        "no verdict yet: the parked request keeps waiting"
    );
    let body = verdict("xjw3kq9z.com", "xjw3kq9z.com", "block", "name", 3600);
    let headers = dohguard_host_test::HeaderMap::from_pairs(&[(":status", "200")]);
    let step = worker_a
        .deliver_http_call(call.token, Some((headers, body.into_bytes())))
        .unwrap();
    let reply = step.local_response().expect("the leader is answered");
    assert_eq!(
        reply.header(VERDICT_HEADER).as_deref(),
        Some("block; reason=model")
    );
    let polled = worker_b.tick_streams().unwrap();
    let (id, step) = polled.first().expect("the parked request is decided");
    assert_eq!(*id, waiter);
    let reply = step
        .local_response()
        .unwrap_or_else(|| panic!("the parked request was not answered: {step:?}"));
    assert_eq!(dns_answer(reply).metadata.id, 0x1234);
    let header = reply.header(VERDICT_HEADER).unwrap_or_default();
    assert!(
        header.starts_with("block; reason=model"),
        "the leader's verdict: {header}"
    );
    worker_a.reopen_stream(leader).unwrap().finish().unwrap();
    worker_b.reopen_stream(waiter).unwrap().finish().unwrap();
    assert_eq!(metric(&worker_a, "dohguard.callout.sent"), 1);
    assert_eq!(
        metric(&worker_b, "dohguard.callout.sent"),
        0,
        "one callout across both workers"
    );
    assert_eq!(metric(&worker_b, "dohguard.blocked"), 1);
    assert_eq!(worker_b.tick_period(), None, "nothing parked: no fast tick");
    // The marker is released: a later miss (after the verdict expires) leads again.
    assert!(cached(&mut worker_b, "xjw3kq9z.com."));
}

#[test]
fn a_parked_request_gets_the_failure_mode_when_the_leader_never_answers() {
    let (mut worker_a, mut worker_b) = two_workers();
    let dns = wire(&query("xjw3kq9z.com.", RecordType::A, false));
    {
        let mut stream = worker_a.stream().unwrap();
        doh_get(&mut stream, &dns)
            .expect_http_call(SCORER)
            .leave_pending();
    }
    let waiter = parked(&mut worker_b, &dns);
    worker_b.advance_clock(std::time::Duration::from_millis(100));
    assert!(
        worker_b.tick_streams().unwrap().is_empty(),
        "the marker is live for the scorer timeout (200 ms)"
    );
    // Worker A never answers (stuck, or its reply is lost): the marker's deadline passes.
    worker_b.advance_clock(std::time::Duration::from_millis(100));
    let polled = worker_b.tick_streams().unwrap();
    let (id, step) = polled.first().expect("the parked request is given up");
    assert_eq!(*id, waiter);
    assert!(step.resumed_request(), "fail-open forwards it: {step:?}");
    let mut stream = worker_b.reopen_stream(waiter).unwrap();
    stream
        .response_headers(&[(":status", "200")], true) // no body: nothing held for answer inspection
        .unwrap()
        .expect_continue();
    assert_eq!(
        stream.response_header_map().get(VERDICT_HEADER).as_deref(),
        Some("allow; reason=scorer_failure")
    );
    stream.finish().unwrap();
    assert_eq!(metric(&worker_b, "dohguard.reason.scorer_failure"), 1);
    assert_eq!(metric(&worker_b, "dohguard.callout.sent"), 0);
    // The expired marker is free: the next miss on worker B makes its own callout.
    assert!(asks_scorer(&mut worker_b, "xjw3kq9z.com."));
}

#[test]
fn a_worker_parks_at_most_256_requests_then_calls_out_itself() {
    let (mut worker_a, mut worker_b) = two_workers();
    let dns = wire(&query("xjw3kq9z.com.", RecordType::A, false));
    {
        let mut stream = worker_a.stream().unwrap();
        doh_get(&mut stream, &dns)
            .expect_http_call(SCORER)
            .leave_pending();
    }
    for _ in 0..256 {
        parked(&mut worker_b, &dns);
    }
    assert_eq!(metric(&worker_b, "dohguard.callout.joined"), 256);
    let mut stream = worker_b.stream().unwrap();
    doh_get(&mut stream, &dns)
        .expect_pause()
        .expect_http_call(SCORER)
        .leave_pending();
    assert_eq!(metric(&worker_b, "dohguard.callout.sent"), 1);
}
