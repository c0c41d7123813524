//! Analysts' overrides on the real filter: the root tick polls the console through its
//! cluster (one worker at a time), the set reaches the other workers through shared data, an
//! override beats the lists and a cached verdict, the last known set outlives a console
//! outage, an expired override stops applying, and the record names the override.

use std::time::Duration;

use crate::common::*;
use dohguard_host_test::{Clock, Filter, HeaderMap, SharedData};
use hickory_proto::rr::RecordType;
use serde_json::{json, Value};

const CONSOLE: &str = "dohguard_console";
const TOKEN: &str = "0123456789abcdef0123";

fn metric(filter: &Filter, name: &str) -> i64 {
    filter
        .metric(name)
        .unwrap_or_else(|| panic!("metric {name} is not defined"))
}

fn worker(shared: &SharedData, clock: &Clock, extra: Value) -> Filter {
    let mut config = json!({
        "verdict_header": VERDICT_HEADER, "verdict_header_detail": true,
        "deny": ["ads.example.test"],
        "scorer": { "cluster": SCORER, "timeout_ms": 200 },
        "overrides": { "cluster": CONSOLE, "token": TOKEN, "poll_interval_ms": 1000 },
    });
    if let (Some(c), Value::Object(e)) = (config.as_object_mut(), extra) {
        c.extend(e);
    }
    plugin()
        .vm()
        .configuration(config.to_string())
        .clusters(&[SCORER, CONSOLE])
        .shared_data(shared.clone())
        .clock(clock.clone())
        .start()
        .unwrap()
}

fn set(version: u64, overrides: Value) -> String {
    json!({"version": version, "overrides": overrides}).to_string()
}

fn allow_ads(expires_at_ms: Option<u64>) -> Value {
    json!([{"id": "ov-1", "action": "allow", "match": "exact", "name": "ads.example.test",
            "clients": [], "expires_at_ms": expires_at_ms, "created_ms": 1}])
}

/// Ticks; returns the poll the tick sent (path), answering it with `reply` (`None`: the
/// console unreachable, as Envoy reports a reset).
fn tick(filter: &mut Filter, reply: Option<(u16, &str)>) -> Option<String> {
    filter.tick().unwrap();
    let call = filter
        .pending_http_calls()
        .into_iter()
        .find(|c| c.cluster == CONSOLE)?;
    assert_eq!(call.header(":method").as_deref(), Some("GET"));
    let expected = format!("Bearer {TOKEN}");
    assert_eq!(
        call.header("authorization").as_deref(),
        Some(expected.as_str())
    );
    let path = call.header(":path").unwrap();
    let reply = reply.map(|(status, body)| {
        let status = status.to_string();
        (
            HeaderMap::from_pairs(&[(":status", &status)]),
            body.as_bytes().to_vec(),
        )
    });
    filter.deliver_http_call(call.token, reply).unwrap();
    Some(path)
}

/// The verdict header the filter gives `name` (no callout expected).
fn decided(filter: &mut Filter, name: &str) -> String {
    let mut stream = filter.stream().unwrap();
    let step = doh_get(&mut stream, &wire(&query(name, RecordType::A, false)))
        .expect_no_http_call()
        .into_step();
    let header = match step.local_response() {
        Some(reply) => reply.header(VERDICT_HEADER),
        None => {
            stream
                .response_headers(&[(":status", "200")], true)
                .unwrap();
            stream.response_header_map().get(VERDICT_HEADER)
        }
    };
    stream.finish().unwrap();
    header.unwrap_or_else(|| panic!("{name}: no verdict header"))
}

#[test]
fn one_worker_polls_and_every_worker_applies_the_set() {
    let (shared, clock) = (SharedData::new(), Clock::new());
    let mut a = worker(&shared, &clock, json!({}));
    let mut b = worker(&shared, &clock, json!({}));
    assert_eq!(a.tick_period(), Some(Duration::from_millis(250)));
    assert_eq!(
        decided(&mut a, "ads.example.test."),
        "block; reason=deny_list"
    );

    let body = set(7, allow_ads(None));
    assert_eq!(
        tick(&mut a, Some((200, &body))).as_deref(),
        Some("/v1/overrides?since=0")
    );
    assert_eq!(metric(&a, "dohguard.overrides.updated"), 1);
    assert_eq!(
        decided(&mut a, "ads.example.test."),
        "allow; reason=override"
    );
    // B holds no lease this interval: it sends nothing, and adopts the set from shared data.
    assert_eq!(
        decided(&mut b, "ads.example.test."),
        "block; reason=deny_list"
    );
    assert_eq!(
        tick(&mut b, None),
        None,
        "B does not poll within A's interval"
    );
    assert_eq!(
        decided(&mut b, "ads.example.test."),
        "allow; reason=override"
    );
    assert_eq!(metric(&b, "dohguard.reason.override"), 1);

    // The next interval: one of them polls, with the version it applies; 304 changes nothing.
    clock.advance(Duration::from_millis(1000));
    let polled = tick(&mut b, Some((304, ""))).or_else(|| tick(&mut a, Some((304, ""))));
    assert_eq!(polled.as_deref(), Some("/v1/overrides?since=7"));
    assert_eq!(
        decided(&mut b, "ads.example.test."),
        "allow; reason=override"
    );
}

#[test]
fn an_override_beats_a_cached_verdict_and_outlives_the_console() {
    let (shared, clock) = (SharedData::new(), Clock::new());
    let mut f = worker(&shared, &clock, json!({}));
    // The scorer allows www.example.org and the verdict is cached.
    let mut stream = f.stream().unwrap();
    doh_get(
        &mut stream,
        &wire(&query("www.example.org.", RecordType::A, false)),
    )
    .expect_http_call(SCORER)
    .returning(
        200,
        verdict(
            "www.example.org",
            "example.org",
            "allow",
            "registered_domain",
            3600,
        ),
    )
    .unwrap();
    stream.finish().unwrap();
    assert_eq!(
        decided(&mut f, "www.example.org."),
        "allow; reason=model; cache=hit"
    );

    let expires = clock.now_nanos() / 1_000_000 + 5_000;
    let overrides = json!([
        {"id": "deny-org", "action": "deny", "match": "registered_domain", "name": "example.org",
         "created_ms": 1},
        {"id": "ov-1", "action": "allow", "match": "exact", "name": "ads.example.test",
         "expires_at_ms": expires, "created_ms": 2}
    ]);
    tick(&mut f, Some((200, &set(3, overrides))));
    assert_eq!(
        decided(&mut f, "www.example.org."),
        "block; reason=override"
    );
    assert_eq!(
        decided(&mut f, "img.example.org."),
        "block; reason=override"
    );

    // The console is down, answers errors, or sends a broken set: the last set applies.
    for reply in [
        None,
        Some((503, "")),
        Some((401, "")),
        Some((200, "{broken")),
    ] {
        clock.advance(Duration::from_millis(1000));
        assert!(tick(&mut f, reply).is_some());
        assert_eq!(
            decided(&mut f, "www.example.org."),
            "block; reason=override"
        );
        assert_eq!(
            decided(&mut f, "ads.example.test."),
            "allow; reason=override"
        );
    }
    assert_eq!(metric(&f, "dohguard.overrides.poll_failed"), 4);
    // A set with an override on a public suffix is refused whole.
    clock.advance(Duration::from_millis(1000));
    let bad =
        json!([{"id": "x", "action": "deny", "match": "suffix", "name": "com", "created_ms": 1}]);
    tick(&mut f, Some((200, &set(4, bad))));
    assert_eq!(metric(&f, "dohguard.overrides.poll_failed"), 5);
    assert_eq!(
        decided(&mut f, "www.example.org."),
        "block; reason=override"
    );

    // The allow expires (console still down): the deny list decides again.
    clock.advance(Duration::from_millis(2000));
    tick(&mut f, None);
    assert_eq!(
        decided(&mut f, "ads.example.test."),
        "block; reason=deny_list"
    );
}

#[test]
fn client_scoped_overrides_apply_to_their_clients_only() {
    let (shared, clock) = (SharedData::new(), Clock::new());
    let mut f = worker(&shared, &clock, json!({}));
    let overrides = json!([{"id": "lab", "action": "allow", "match": "suffix",
        "name": "ads.example.test", "clients": ["192.0.2.0/24"], "created_ms": 1}]);
    tick(&mut f, Some((200, &set(1, overrides))));
    // The host's default client is 192.0.2.7.
    assert_eq!(
        decided(&mut f, "ads.example.test."),
        "allow; reason=override"
    );
    f.set_property("source.address", "198.51.100.9:5353");
    assert_eq!(
        decided(&mut f, "ads.example.test."),
        "block; reason=deny_list"
    );
}

#[test]
fn the_record_names_the_override() {
    let (shared, clock) = (SharedData::new(), Clock::new());
    let events = json!({"events": {"cluster": "dohguard_events", "flush_interval_ms": 100}});
    let mut f = plugin()
        .vm()
        .configuration(
            json!({
                "deny": ["ads.example.test"],
                "overrides": { "cluster": CONSOLE, "token": TOKEN },
                "events": events["events"],
            })
            .to_string(),
        )
        .clusters(&[CONSOLE, "dohguard_events"])
        .shared_data(shared)
        .clock(clock)
        .start()
        .unwrap();
    assert_eq!(
        f.tick_period(),
        Some(Duration::from_millis(100)),
        "the flush interval"
    );
    tick(&mut f, Some((200, &set(2, allow_ads(None)))));
    let mut stream = f.stream().unwrap();
    doh_get(
        &mut stream,
        &wire(&query("ads.example.test.", RecordType::A, false)),
    )
    .expect_continue();
    stream.finish().unwrap();
    f.advance_clock(Duration::from_millis(100));
    f.tick().unwrap();
    let batch = f
        .pending_http_calls()
        .into_iter()
        .find(|c| c.cluster == "dohguard_events")
        .expect("a batch");
    let batch: Value = serde_json::from_slice(&batch.body).unwrap();
    let event = &batch["events"][0];
    assert_eq!(event["layer"], "override", "{batch}");
    assert_eq!(event["rule"], "ov-1", "{batch}");
    assert_eq!(event["verdict"], "allow", "{batch}");
}

#[test]
fn without_overrides_configured_nothing_ticks_or_polls() {
    let mut f = filter(json!({ "deny": ["ads.example.test"] }));
    assert_eq!(f.tick_period(), None);
    assert!(f.metric("dohguard.overrides.poll_failed").is_some());
    assert_eq!(
        decided(&mut f, "ads.example.test."),
        "block; reason=deny_list"
    );
}
