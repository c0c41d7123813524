//! The Elasticsearch sink against a real `osmem-server` process (the Elasticsearch-API test
//! server, started and stopped here on ephemeral ports): documents land with the ECS fields
//! and the template's mapping; a stopped server loses nothing and duplicates nothing; a full
//! queue spools; a replay of already stored documents is harmless.

mod common;

use std::{collections::HashSet, sync::Arc, time::Duration};

use common::*;
use dohguard_core::contract::ScoreRequest;
use dohguard_scorer::{
    config::{Config, DEFAULT_INDEX},
    sink::{Doc, Spool},
    App,
};
use serde_json::json;

const SETTLE: Duration = Duration::from_secs(30);

fn req(name: &str, client: Option<&str>) -> ScoreRequest {
    ScoreRequest {
        name: name.to_owned(),
        qtype: "A".to_owned(),
        client: client.map(str::to_owned),
        caller_records: false,
    }
}

async fn wait_stored(es: &Es, n: u64) {
    eventually(
        &format!("{n} documents in {DEFAULT_INDEX}"),
        SETTLE,
        || async move { es.count_if_exists(DEFAULT_INDEX).await == Some(n) },
    )
    .await;
}

/// Every document exactly once: the set of names equals `names`, no two documents share a
/// name, and no two share an `_id`.
async fn assert_exactly_once(es: &Es, names: &[String]) {
    let docs = es.all(DEFAULT_INDEX).await;
    let ids: HashSet<&str> = docs.iter().map(|(id, _)| id.as_str()).collect();
    let stored: Vec<&str> = docs
        .iter()
        .map(|(_, s)| s["dns"]["question"]["name"].as_str().unwrap())
        .collect();
    let stored_set: HashSet<&str> = stored.iter().copied().collect();
    let want: HashSet<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(docs.len(), names.len(), "document count");
    assert_eq!(ids.len(), docs.len(), "duplicate _id");
    assert_eq!(stored_set.len(), stored.len(), "a verdict stored twice");
    assert_eq!(stored_set, want, "stored names differ from scored names");
}

fn assert_nothing_dropped(app: &App) {
    assert_eq!(app.metrics.sink.dropped.get(), 0, "dropped");
    assert_eq!(app.metrics.sink.rejected.get(), 0, "rejected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_land_with_ecs_fields_and_the_template() {
    let osmem = Osmem::start();
    let es = Es::new(&osmem.url);
    let spool = tempfile::tempdir().unwrap();
    let (app, _tasks) = start(test_config(Some(&osmem.url), spool.path())).await;

    let replies = app
        .scorer
        .score(vec![
            req("www.xjw3kq9z.com", Some("192.0.2.7")),
            req("mail.example.co.uk", Some("2001:db8::5")),
            req("google.com", None),
        ])
        .await
        .unwrap();
    wait_stored(&es, 3).await;

    // The template was installed and shaped the index.
    let template = es.get("/_index_template/dohguard-verdicts").await;
    assert_eq!(
        template["index_templates"][0]["index_template"]["index_patterns"],
        json!(["logs-dohguard.verdicts-*"])
    );
    let mapping = es.get(&format!("/{DEFAULT_INDEX}/_mapping")).await;
    let props = &mapping[DEFAULT_INDEX]["mappings"]["properties"];
    assert_eq!(props["source"]["properties"]["ip"]["type"], "ip");
    assert_eq!(props["@timestamp"]["type"], "date");
    assert_eq!(props["dohguard"]["properties"]["score"]["type"], "float");
    assert_eq!(mapping[DEFAULT_INDEX]["mappings"]["dynamic"], "strict");

    let docs = es.all(DEFAULT_INDEX).await;
    let by_name = |n: &str| {
        docs.iter()
            .map(|(_, s)| s)
            .find(|s| s["dns"]["question"]["name"] == n)
            .unwrap_or_else(|| panic!("no document for {n}"))
            .clone()
    };
    let d = by_name("www.xjw3kq9z.com");
    assert!(d["@timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(d["event"]["kind"], "alert");
    assert_eq!(d["event"]["category"], json!(["network"]));
    assert_eq!(d["event"]["type"], json!(["denied"]));
    assert_eq!(d["event"]["action"], "dns-block");
    assert_eq!(d["event"]["outcome"], "success");
    assert_eq!(d["dns"]["question"]["type"], "A");
    assert_eq!(d["dns"]["question"]["registered_domain"], "xjw3kq9z.com");
    assert_eq!(d["dns"]["question"]["subdomain"], "www");
    assert_eq!(d["dns"]["question"]["top_level_domain"], "com");
    assert_eq!(d["source"]["ip"], "192.0.2.7");
    assert_eq!(d["dohguard"]["verdict"], "block");
    assert_eq!(d["dohguard"]["reason"], "model");
    assert_eq!(
        d["dohguard"]["model_version"],
        replies[0].model_version.as_str()
    );
    assert!((d["dohguard"]["score"].as_f64().unwrap() - f64::from(replies[0].score)).abs() < 1e-6);
    assert!(d["dohguard"]["latency_us"].as_u64().is_some());

    let uk = by_name("mail.example.co.uk");
    assert_eq!(uk["dns"]["question"]["top_level_domain"], "co.uk");
    assert_eq!(uk["source"]["ip"], "2001:db8::5");
    let g = by_name("google.com");
    assert_eq!(g["event"]["kind"], "event");
    assert_eq!(g["dohguard"]["verdict"], "allow");
    assert!(g.get("source").is_none(), "no client, no source.ip");

    // The ip mapping works: a CIDR term query finds the IPv4 client only.
    let hits = es
        .post(
            &format!("/{DEFAULT_INDEX}/_search"),
            json!({"query": {"term": {"source.ip": "192.0.2.0/24"}}}),
        )
        .await;
    assert_eq!(hits["hits"]["total"]["value"], 1, "{hits}");

    assert_eq!(app.metrics.sink.sent.get(), 3);
    assert_eq!(app.metrics.sink.spooled.get(), 0);
    assert_nothing_dropped(&app);
}

async fn score_names(app: &Arc<App>, names: &[String]) {
    for chunk in names.chunks(16) {
        let reqs = chunk.iter().map(|n| req(n, Some("198.51.100.9"))).collect();
        let replies = app
            .scorer
            .score(reqs)
            .await
            .expect("scoring never waits on Elasticsearch");
        assert_eq!(replies.len(), chunk.len());
    }
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{prefix}{i}.fault-test.example"))
        .collect()
}

/// osmem-server keeps data in memory; a real Elasticsearch keeps it across a restart.
/// Stand in for that by dumping the index before the stop and seeding the new process with it.
async fn snapshot(es: &Es, dir: &std::path::Path) -> std::path::PathBuf {
    let mut ndjson = String::new();
    for (id, source) in es.all(DEFAULT_INDEX).await {
        ndjson.push_str(&json!({"create": {"_index": DEFAULT_INDEX, "_id": id}}).to_string());
        ndjson.push('\n');
        ndjson.push_str(&source.to_string());
        ndjson.push('\n');
    }
    let path = dir.join("snapshot.ndjson");
    std::fs::write(&path, ndjson).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_loses_nothing_and_duplicates_nothing() {
    let mut osmem = Osmem::start();
    let port = osmem.port;
    let es = Es::new(&osmem.url);
    let spool = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let (app, _tasks) = start(test_config(Some(&osmem.url), spool.path())).await;

    // Phase 1: server up.
    let before = names("before", 200);
    score_names(&app, &before).await;
    wait_stored(&es, 200).await;
    let seed = snapshot(&es, scratch.path()).await;

    // Phase 2: server stopped; scoring goes on and every reply still comes back.
    osmem.stop();
    let during = names("during", 300);
    let started = std::time::Instant::now();
    score_names(&app, &during).await;
    let scoring_time = started.elapsed();
    let m = app.metrics.sink.clone();
    eventually("the outage's verdicts are spooled", SETTLE, || {
        let spooled = m.spooled.get();
        async move { spooled >= 300 }
    })
    .await;
    assert_eq!(app.sink().state().as_str(), "spooling");

    // Phase 3: the server comes back on the same port (with its data); more scoring meanwhile.
    let osmem2 = Osmem::start_on(port, Some(&seed));
    assert_eq!(osmem2.port, port);
    let after = names("after", 100);
    score_names(&app, &after).await;
    wait_stored(&es, 600).await;
    eventually("the sink is live again", SETTLE, || {
        let live = app.sink().state().as_str() == "live";
        async move { live }
    })
    .await;

    let all: Vec<String> = before
        .iter()
        .chain(&during)
        .chain(&after)
        .cloned()
        .collect();
    assert_exactly_once(&es, &all).await;
    let s = &app.metrics.sink;
    assert!(s.replayed.get() >= 300, "replayed {}", s.replayed.get());
    assert!(s.retried.get() > 0 || s.spooled.get() > 0);
    assert_eq!(s.sent.get() + s.replayed.get(), 600, "stored once each");
    eventually("spool drained", SETTLE, || {
        let empty = app.sink().spool().is_empty();
        async move { empty }
    })
    .await;
    assert_nothing_dropped(&app);
    eprintln!("scored 300 names during the outage in {scoring_time:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_spools_and_everything_arrives_once() {
    let osmem = Osmem::start();
    let es = Es::new(&osmem.url);
    let spool = tempfile::tempdir().unwrap();
    let mut config: Config = test_config(Some(&osmem.url), spool.path());
    config.elasticsearch.queue_capacity = 4;
    config.elasticsearch.bulk_max_docs = 8;
    config.elasticsearch.max_in_flight = 1;
    let (app, _tasks) = start(config).await;

    let all = names("burst", 400);
    let reqs: Vec<ScoreRequest> = all.iter().map(|n| req(n, None)).collect();
    app.scorer.score(reqs).await.unwrap();
    assert!(
        app.metrics.sink.spooled.get() > 0,
        "a 4-document queue must overflow to the spool"
    );
    wait_stored(&es, 400).await;
    assert_exactly_once(&es, &all).await;
    assert_nothing_dropped(&app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_documents_already_stored_is_harmless() {
    // A crash after Elasticsearch stored a spooled segment but before the segment was
    // deleted: at the next start the segment is replayed, and `create` answers 409.
    let spool = tempfile::tempdir().unwrap();
    let seed_dir = tempfile::tempdir().unwrap();
    let docs: Vec<Doc> = (0..20)
        .map(|i| {
            dohguard_scorer::sink::VerdictEvent {
                timestamp: std::time::SystemTime::now(),
                name: format!("r{i}.replay.example"),
                qtype: "A".into(),
                client: None,
                registered_domain: Some("replay.example".into()),
                subdomain: Some(format!("r{i}")),
                top_level_domain: Some("example".into()),
                score: 0.5,
                verdict: dohguard_core::contract::Verdict::Monitor,
                reason: dohguard_core::contract::Reason::Model,
                scope: dohguard_core::contract::Scope::Name,
                model_version: "test".into(),
                detector: None,
                latency_us: 1,
            }
            .to_doc(DEFAULT_INDEX)
        })
        .collect();
    // The first 12 are already in Elasticsearch; all 20 wait in the spool.
    let mut seed = String::new();
    for d in &docs[..12] {
        let mut lines = Vec::new();
        d.write_bulk_lines(&mut lines);
        seed.push_str(std::str::from_utf8(&lines).unwrap());
    }
    let seed_path = seed_dir.path().join("seed.ndjson");
    std::fs::write(&seed_path, seed).unwrap();
    {
        let s = Spool::open(
            spool.path(),
            dohguard_scorer::config::FsyncPolicy::Always,
            Duration::from_secs(1),
            1 << 20,
            1 << 30,
        )
        .unwrap();
        s.append(&docs, dohguard_scorer::sink::spool::Track::Replay)
            .unwrap();
    }
    let osmem = Osmem::start_on(0, Some(&seed_path));
    let es = Es::new(&osmem.url);
    assert_eq!(es.count(DEFAULT_INDEX).await, 12);

    let (app, _tasks) = start(test_config(Some(&osmem.url), spool.path())).await;
    wait_stored(&es, 20).await;
    let m = app.metrics.sink.clone();
    eventually("replay counted", SETTLE, || {
        let done = m.replayed.get() == 8 && m.duplicates.get() == 12;
        async move { done }
    })
    .await;
    let names: Vec<String> = (0..20).map(|i| format!("r{i}.replay.example")).collect();
    assert_exactly_once(&es, &names).await;
    let stored_ids: HashSet<String> = es
        .all(DEFAULT_INDEX)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let spooled_ids: HashSet<String> = docs.iter().map(|d| d.id.clone()).collect();
    assert_eq!(
        stored_ids, spooled_ids,
        "ids are the ones generated with the verdicts"
    );
    eventually("spool emptied", SETTLE, || {
        let empty = app.sink().spool().is_empty();
        async move { empty }
    })
    .await;
    assert_nothing_dropped(&app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_with_elasticsearch_down_spools_until_it_appears() {
    // A free port: nothing listens there at start.
    let port = dohguard_launcher::ports::free_port().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let spool = tempfile::tempdir().unwrap();
    let (app, _tasks) = start(test_config(Some(&url), spool.path())).await;
    assert_eq!(app.sink().state().as_str(), "spooling");
    let early = names("early", 50);
    score_names(&app, &early).await;

    let osmem = Osmem::start_on(port, None);
    let es = Es::new(&osmem.url);
    wait_stored(&es, 50).await;
    // The template went in before the first document.
    let mapping = es.get(&format!("/{DEFAULT_INDEX}/_mapping")).await;
    assert_eq!(
        mapping[DEFAULT_INDEX]["mappings"]["dynamic"], "strict",
        "{mapping}"
    );
    assert_exactly_once(&es, &early).await;
    assert_nothing_dropped(&app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_delivers_what_is_queued() {
    let osmem = Osmem::start();
    let es = Es::new(&osmem.url);
    let spool = tempfile::tempdir().unwrap();
    let mut config = test_config(Some(&osmem.url), spool.path());
    // A long flush interval: without the shutdown flush nothing would be sent yet.
    config.elasticsearch.flush_interval_ms = 60_000;
    let (app, tasks) = start(config).await;
    let all = names("shutdown", 50);
    score_names(&app, &all).await;
    // Nothing stored yet: the index does not exist, or is empty.
    assert!(matches!(
        es.count_if_exists(DEFAULT_INDEX).await,
        None | Some(0)
    ));
    drop(app);
    tasks.shutdown().await;
    assert_exactly_once(&es, &all).await;
}

/// osmem-server never answers 429 or 5xx, so this one test uses a tiny scripted stand-in for
/// the bulk endpoint: a 503 for the whole request, then per-item 429/201/400 answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_retries_throttled_items_and_dead_letters_invalid_ones() {
    use axum::{routing::post, Json, Router};
    use std::sync::atomic::{AtomicUsize, Ordering};

    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let app = Router::new().route(
        "/_bulk",
        post(move |body: String| {
            let call = seen.fetch_add(1, Ordering::SeqCst);
            async move {
                let ids: Vec<String> = body
                    .lines()
                    .step_by(2)
                    .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["create"]["_id"].as_str().unwrap().to_owned())
                    .collect();
                if call == 0 {
                    return (axum::http::StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": "busy"})));
                }
                // Second call: item 1 throttled, item 2 invalid; third call: whatever is left is stored.
                let items: Vec<_> = ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| {
                        let status = match (call, i) {
                            (1, 1) => 429,
                            (1, 2) => 400,
                            _ => 201,
                        };
                        json!({"create": {"_id": id, "status": status, "error": if status >= 400 { json!({"type": "x"}) } else { json!(null) }}})
                    })
                    .collect();
                (axum::http::StatusCode::OK, Json(json!({"errors": true, "items": items})))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let spool = tempfile::tempdir().unwrap();
    let config = test_config(Some(&url), spool.path());
    let client = dohguard_scorer::sink::EsClient::new(&url, &config.elasticsearch).unwrap();
    let counters = dohguard_scorer::metrics::SinkCounters::default();
    let docs: Vec<Doc> = (0..4)
        .map(|i| {
            serde_json::from_value(
                json!({"_index": DEFAULT_INDEX, "_id": format!("d{i}"), "source": {"n": i}}),
            )
            .unwrap()
        })
        .collect();
    let d = client.deliver(docs, &counters).await;
    assert_eq!(
        d.stored, 3,
        "3 stored: two on the second call, the throttled one on the third"
    );
    assert_eq!(d.rejected.len(), 1);
    assert_eq!(d.rejected[0].0.id, "d2");
    assert!(d.undelivered.is_empty());
    assert_eq!(counters.retried.get(), 2);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // Every bulk request, the refused first one included, is in the latency histogram.
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register("bulk", "bulk", counters.bulk_seconds.0.clone());
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.lines().any(|l| l == "bulk_count 3"),
        "three bulk requests timed:\n{text}"
    );
    server.abort();
}

/// The filter's decision events through `POST /v1/events`: one document per event, with the
/// event id as `_id` (a batch sent twice is stored once), a gap marker for reported drops,
/// and no second document for a verdict whose caller records the query itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decision_events_become_one_document_each() {
    use tower::ServiceExt;
    let osmem = Osmem::start();
    let es = Es::new(&osmem.url);
    let spool = tempfile::tempdir().unwrap();
    let (app, _tasks) = start(test_config(Some(&osmem.url), spool.path())).await;

    // A verdict the filter asked for while recording the query itself: no document here.
    let mut filtered = req("xjw3kq9z.com", Some("192.0.2.7"));
    filtered.caller_records = true;
    app.scorer.score(vec![filtered]).await.unwrap();

    let batch = json!({
        "source": "vm1", "seq": 0, "dropped": 3,
        "events": [
            {"id": "vm1-1", "ts_ms": 1764633600000u64, "client": "192.0.2.7", "request_id": "r1",
             "name": "x.blocked.test", "qtype": "A", "verdict": "block", "layer": "deny_list",
             "rule": ".blocked.test", "cached": false, "enforced": true,
             "answer": {"kind": "blocked", "mode": "nxdomain", "rcode": 3}, "latency_us": 40},
            {"id": "vm1-2", "ts_ms": 1764633600001u64, "client": "192.0.2.7",
             "name": "www.nx.example.com", "qtype": "AAAA", "verdict": "allow", "layer": "model",
             "score": 0.01, "model_version": "m1", "cached": false, "enforced": true,
             "answer": {"kind": "forwarded", "rcode": 3, "answers": 0}, "latency_us": 900},
            {"id": "vm1-3", "ts_ms": 1764633600002u64, "layer": "malformed", "cached": false,
             "enforced": true, "answer": {"kind": "rejected", "http_status": 400, "reason": "bad"},
             "latency_us": 5}
        ]
    });
    let router = dohguard_scorer::router(app.clone());
    for _ in 0..2 {
        let response = router
            .clone()
            .oneshot(
                axum::http::Request::post("/v1/events")
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(batch.to_string()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
    }
    wait_stored(&es, 4).await; // three events and one gap marker, each once
    let docs = es.all(DEFAULT_INDEX).await;
    let by_id = |id: &str| {
        docs.iter()
            .find(|(i, _)| i == id)
            .unwrap_or_else(|| panic!("no document {id}: {docs:?}"))
            .1
            .clone()
    };
    let blocked = by_id("vm1-1");
    assert_eq!(blocked["dohguard"]["reason"], "deny_list");
    assert_eq!(blocked["rule"]["name"], ".blocked.test");
    assert_eq!(blocked["dns"]["response_code"], "NXDOMAIN");
    assert_eq!(blocked["client"]["ip"], "192.0.2.7");
    assert_eq!(blocked["http"]["request"]["id"], "r1");
    assert_eq!(blocked["@timestamp"], "2025-12-02T00:00:00Z");
    let nx = by_id("vm1-2");
    assert_eq!(
        nx["dns"]["response_code"], "NXDOMAIN",
        "the upstream's RCODE"
    );
    assert_eq!(nx["dohguard"]["answer"]["kind"], "forwarded");
    assert_eq!(nx["dns"]["question"]["registered_domain"], "example.com");
    let malformed = by_id("vm1-3");
    assert_eq!(malformed["event"]["action"], "dns-malformed");
    assert_eq!(malformed["http"], serde_json::Value::Null);
    let gap = by_id("gap-vm1-0");
    assert_eq!(gap["dohguard"]["gap"]["dropped"], 3);
    assert!(
        docs.iter()
            .all(|(_, d)| d["dns"]["question"]["name"] != "xjw3kq9z.com"),
        "the caller-recorded verdict has no document of its own"
    );
    assert_nothing_dropped(&app);
}

/// A `cname` decision event (the filter blocked an allowed name on its upstream answer) is
/// stored under the strict template with its target and the deny rule the target matched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cname_decision_event_is_stored_with_its_target() {
    use tower::ServiceExt;
    let osmem = Osmem::start();
    let es = Es::new(&osmem.url);
    let spool = tempfile::tempdir().unwrap();
    let (app, _tasks) = start(test_config(Some(&osmem.url), spool.path())).await;
    let batch = json!({
        "source": "vm9", "seq": 0,
        "events": [
            {"id": "vm9-1", "ts_ms": 1764633600000u64, "name": "cdn.cloak.test", "qtype": "A",
             "verdict": "block", "layer": "cname", "rule": ".evil.test",
             "cname_target": "tracker.evil.test", "cached": false, "enforced": true,
             "answer": {"kind": "blocked", "mode": "nxdomain", "rcode": 3}, "latency_us": 70}
        ]
    });
    let response = dohguard_scorer::router(app.clone())
        .oneshot(
            axum::http::Request::post("/v1/events")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(batch.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    wait_stored(&es, 1).await;
    let docs = es.all(DEFAULT_INDEX).await;
    let (_, doc) = docs
        .iter()
        .find(|(id, _)| id == "vm9-1")
        .unwrap_or_else(|| panic!("no cname document: {docs:?}"));
    assert_eq!(doc["dohguard"]["reason"], "cname");
    assert_eq!(doc["dohguard"]["cname_target"], "tracker.evil.test");
    assert_eq!(doc["rule"]["name"], ".evil.test");
    assert_eq!(doc["rule"]["ruleset"], "deny_list");
    assert_eq!(doc["event"]["action"], "dns-block");
    assert_nothing_dropped(&app);
}
