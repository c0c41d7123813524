//! The decision record: every DoH query the filter answers or forwards becomes one event,
//! buffered per VM and sent in batches from the root context's tick.

use crate::common::*;
use dohguard_host_test::{Filter, HeaderMap};
use hickory_proto::rr::RecordType;
use serde_json::{json, Value};

const EVENTS: &str = "dohguard_events";

fn recording_filter(extra: Value) -> Filter {
    let mut config = json!({
        "deny": [".blocked.test"],
        "events": { "cluster": EVENTS, "max_batch": 2, "max_buffered": 4 },
    });
    if let (Some(c), Value::Object(e)) = (config.as_object_mut(), extra) {
        c.extend(e);
    }
    plugin()
        .vm()
        .configuration(config.to_string())
        .clusters(&[SCORER, EVENTS])
        .property("source.address", "192.0.2.7:5353")
        .property("request.id", "req-42")
        .start()
        .unwrap()
}

/// Runs the tick and returns the events batches it sent, answering each with `status`.
fn flush(filter: &mut Filter, status: u16) -> Vec<Value> {
    filter.tick().unwrap();
    let calls: Vec<_> = filter
        .pending_http_calls()
        .into_iter()
        .filter(|c| c.cluster == EVENTS)
        .collect();
    let mut batches = Vec::new();
    for call in calls {
        assert_eq!(call.header(":path").as_deref(), Some("/v1/events"));
        batches.push(serde_json::from_slice(&call.body).expect("a batch is JSON"));
        let status = status.to_string();
        filter
            .deliver_http_call(
                call.token,
                Some((HeaderMap::from_pairs(&[(":status", &status)]), Vec::new())),
            )
            .unwrap();
    }
    batches
}

#[test]
fn a_blocked_a_forwarded_and_a_malformed_query_each_make_one_event() {
    let mut filter = recording_filter(json!({}));
    assert_eq!(filter.tick_period().map(|d| d.as_millis()), Some(200));

    let mut stream = filter.stream().unwrap();
    doh_get(
        &mut stream,
        &wire(&query("x.blocked.test.", RecordType::A, true)),
    )
    .expect_local_response(200);
    stream.finish().unwrap();

    let mut stream = filter.stream().unwrap();
    doh_get(
        &mut stream,
        &wire(&query("nx.example.", RecordType::AAAA, false)),
    )
    .expect_continue();
    stream
        .response_headers(
            &[
                (":status", "200"),
                ("content-type", "application/dns-message"),
            ],
            false,
        )
        .unwrap();
    // The upstream's reply header: NXDOMAIN (RCODE 3), no answers.
    let reply = [0x12, 0x34, 0x81, 0x83, 0, 1, 0, 0, 0, 1, 0, 0, 0];
    stream.response_body(&reply, true).unwrap();
    stream.finish().unwrap();

    let mut stream = filter.stream().unwrap();
    stream
        .request_headers(&[(":method", "GET"), (":path", "/dns-query?dns=%%")], true)
        .unwrap()
        .expect_local_response(400);
    stream.finish().unwrap();

    assert_eq!(filter.metric("dohguard.events.recorded"), Some(3));
    let batches = flush(&mut filter, 200);
    let events: Vec<&Value> = batches
        .iter()
        .flat_map(|b| b["events"].as_array().unwrap())
        .collect();
    assert_eq!(events.len(), 3, "{batches:?}");
    let blocked = events[0];
    assert_eq!(blocked["name"], "x.blocked.test");
    assert_eq!(blocked["verdict"], "block");
    assert_eq!(blocked["layer"], "deny_list");
    assert_eq!(blocked["rule"], ".blocked.test");
    assert_eq!(
        blocked["answer"],
        json!({"kind": "blocked", "mode": "nxdomain", "rcode": 3})
    );
    assert_eq!(blocked["client"], "192.0.2.7");
    assert_eq!(blocked["request_id"], "req-42");
    let forwarded = events[1];
    assert_eq!(forwarded["layer"], "no_scorer");
    assert_eq!(forwarded["qtype"], "AAAA");
    assert_eq!(
        forwarded["answer"],
        json!({"kind": "forwarded", "rcode": 3, "answers": 0})
    );
    let malformed = events[2];
    assert_eq!(malformed["layer"], "malformed");
    assert!(malformed.get("verdict").is_none());
    assert_eq!(malformed["answer"]["http_status"], 400);
    let ids: std::collections::HashSet<_> =
        events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3, "ids are unique");
    assert!(
        flush(&mut filter, 200).is_empty(),
        "acknowledged batches are not sent again"
    );
}

#[test]
fn a_failed_batch_is_sent_again_and_a_full_buffer_is_reported_as_a_gap() {
    let mut filter = recording_filter(json!({}));
    let blocked = wire(&query("x.blocked.test.", RecordType::A, false));
    for _ in 0..5 {
        let mut stream = filter.stream().unwrap();
        doh_get(&mut stream, &blocked).expect_local_response(200);
        stream.finish().unwrap();
    }
    assert_eq!(filter.metric("dohguard.events.recorded"), Some(4));
    assert_eq!(filter.metric("dohguard.events.dropped"), Some(1));
    let failed = flush(&mut filter, 503);
    assert_eq!(failed.len(), 2, "two batches of two");
    assert_eq!(filter.metric("dohguard.events.batch_failed"), Some(2));
    let again = flush(&mut filter, 200);
    let ids = |b: &[Value]| -> Vec<String> {
        b.iter()
            .flat_map(|b| b["events"].as_array().unwrap().iter())
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut first = ids(&failed);
    let mut second = ids(&again);
    first.sort();
    second.sort();
    assert_eq!(first, second, "the retry carries the same events and ids");
    let dropped: u64 = again.iter().map(|b| b["dropped"].as_u64().unwrap()).sum();
    assert_eq!(dropped, 1, "the gap is reported");
}

#[test]
fn callouts_tell_the_scorer_that_the_filter_records_the_query() {
    let mut filter = recording_filter(json!({ "scorer": { "cluster": SCORER } }));
    let mut stream = filter.stream().unwrap();
    let call = doh_get(
        &mut stream,
        &wire(&query("xjw3kq9z.com.", RecordType::A, false)),
    )
    .expect_http_call(SCORER);
    let body: Value = serde_json::from_slice(&call.request().body).unwrap();
    assert_eq!(body["caller_records"], true);
    call.returning(
        200,
        verdict("xjw3kq9z.com", "xjw3kq9z.com", "block", "name", 60),
    )
    .unwrap()
    .expect_local_response(200);
    stream.finish().unwrap();
    let batches = flush(&mut filter, 200);
    let event = &batches[0]["events"][0];
    assert_eq!(event["layer"], "model");
    assert_eq!(event["score"].as_f64().map(|s| s > 0.9), Some(true));
    assert_eq!(event["model_version"], "test-1");
}
