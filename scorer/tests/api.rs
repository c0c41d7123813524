//! The HTTP API as a router value (`oneshot`), every endpoint and every error status, plus
//! one test over a real socket. The sink runs spool-only here (no Elasticsearch needed);
//! the Elasticsearch path is in `sink.rs`.

mod common;

use std::sync::Arc;

use axum::{
    body::{to_bytes, Body},
    http::{header, Request, StatusCode},
    Router,
};
use common::*;
use dohguard_scorer::{router, App, Config};
use serde_json::{json, Value};
use tower::ServiceExt;

struct TestApp {
    app: Arc<App>,
    router: Router,
    _spool: tempfile::TempDir,
}

async fn app_with(edit: impl FnOnce(&mut Config)) -> TestApp {
    let spool = tempfile::tempdir().unwrap();
    let mut config = test_config(None, spool.path());
    edit(&mut config);
    config.validate().unwrap();
    let (app, _tasks) = start(config).await;
    TestApp {
        router: router(app.clone()),
        app,
        _spool: spool,
    }
}

async fn app() -> TestApp {
    app_with(|_| {}).await
}

async fn call(router: &Router, req: Request<Body>) -> (StatusCode, Option<String>, Value) {
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let ctype = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, ctype, body)
}

fn post_json(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap()
}

fn score_req(body: Value) -> Request<Body> {
    post_json("/v1/score", body.to_string())
}

#[tokio::test]
async fn single_name_gets_every_contract_field() {
    let t = app().await;
    let version = t.app.model().info().model_version.clone();
    let (status, ctype, body) = call(
        &t.router,
        score_req(json!({"name": "xjw3kq9z.com", "qtype": "A", "client": "192.0.2.7"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ctype.as_deref(), Some("application/json"));
    assert_eq!(body["name"], "xjw3kq9z.com");
    assert_eq!(body["registered_domain"], "xjw3kq9z.com");
    assert_eq!(body["verdict"], "block", "{body}");
    assert_eq!(body["reason"], "model");
    assert_eq!(body["scope"], "registered_domain");
    assert_eq!(body["model_version"], version.as_str());
    assert_eq!(body["ttl"], 3600);
    let score = body["score"].as_f64().unwrap();
    assert!((0.9..=1.0).contains(&score), "{score}");
    // The reply parses as the contract type the filter uses.
    let _: dohguard_core::contract::ScoreReply = serde_json::from_value(body).unwrap();
}

#[tokio::test]
async fn names_are_normalised_and_split() {
    let t = app().await;
    let (status, _, body) = call(
        &t.router,
        score_req(json!({"name": "WWW.Example.CO.UK.", "qtype": "aaaa"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["name"], "www.example.co.uk");
    assert_eq!(body["registered_domain"], "example.co.uk");

    // A bare public suffix has no registered domain; the model reads the whole name.
    let (status, _, body) =
        call(&t.router, score_req(json!({"name": "co.uk", "qtype": "A"}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["registered_domain"], Value::Null);
    assert_eq!(body["scope"], "name");
}

#[tokio::test]
async fn batch_keeps_order_and_agrees_with_single_calls() {
    // The score cache is off: every single call below is computed again by the model, so the
    // comparison is between two model runs, not between a run and its cached copy.
    let t = app_with(|c| c.verdicts.max_entries = 0).await;
    let names = [
        "google.com",
        "xjw3kq9z.com",
        "www.wikipedia.org",
        "kq3jx9zv8w2m.ru",
    ];
    let batch = json!({"names": names.iter().map(|n| json!({"name": n, "qtype": "A"})).collect::<Vec<_>>()});
    let (status, _, body) = call(&t.router, score_req(batch)).await;
    assert_eq!(status, StatusCode::OK);
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), names.len());
    for (name, result) in names.iter().zip(results) {
        assert_eq!(result["name"], *name);
        let (_, _, single) = call(&t.router, score_req(json!({"name": name, "qtype": "A"}))).await;
        assert_eq!(
            single["score"], result["score"],
            "{name}: batch and single scores differ"
        );
        assert_eq!(single["verdict"], result["verdict"]);
    }
    assert_eq!(results[0]["verdict"], "allow");
    assert_eq!(results[1]["verdict"], "block");
    assert_eq!(t.app.metrics.cache_hits.get(), 0);
    assert_eq!(
        names_computed(&t.app),
        2.0 * names.len() as f64,
        "each name computed twice: in the batch and alone"
    );

    let (status, _, body) = call(&t.router, score_req(json!({"names": []}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["results"], json!([]));
}

#[tokio::test]
async fn allow_and_deny_lists_win_over_the_model() {
    let t = app_with(|c| {
        c.rules.allow = vec!["xjw3kq9z.com".into()];
        c.rules.deny = vec![".evil.example".into(), "www.google.com".into()];
    })
    .await;
    let (_, _, allowed) = call(
        &t.router,
        score_req(json!({"name": "xjw3kq9z.com", "qtype": "A"})),
    )
    .await;
    assert_eq!(allowed["verdict"], "allow");
    assert_eq!(allowed["reason"], "allow_list");
    assert_eq!(allowed["score"], 0.0);
    assert_eq!(allowed["scope"], "name");
    assert_eq!(allowed["ttl"], 300);

    let (_, _, denied) = call(
        &t.router,
        score_req(json!({"name": "a.b.evil.example", "qtype": "A"})),
    )
    .await;
    assert_eq!(denied["verdict"], "block");
    assert_eq!(denied["reason"], "deny_list");
    assert_eq!(denied["score"], 1.0);

    // google.com has a rule under it (www.google.com), so a model verdict for another name
    // there covers only that name: caching it for the whole domain would hide the rule.
    let (_, _, mail) = call(
        &t.router,
        score_req(json!({"name": "mail.google.com", "qtype": "A"})),
    )
    .await;
    assert_eq!(mail["reason"], "model");
    assert_eq!(mail["scope"], "name");
    let (_, _, other) = call(
        &t.router,
        score_req(json!({"name": "mail.wikipedia.org", "qtype": "A"})),
    )
    .await;
    assert_eq!(other["scope"], "registered_domain");
}

#[tokio::test]
async fn configured_thresholds_override_the_card() {
    // google.com scores about 0.07 with the test model: put it in the monitor band.
    let t = app_with(|c| {
        c.verdicts.block_threshold = Some(0.99);
        c.verdicts.monitor_threshold = Some(0.05);
    })
    .await;
    let (_, _, body) = call(
        &t.router,
        score_req(json!({"name": "google.com", "qtype": "A"})),
    )
    .await;
    let score = body["score"].as_f64().unwrap();
    assert!(
        (0.05..0.99).contains(&score),
        "test model score moved: {score}"
    );
    assert_eq!(body["verdict"], "monitor");
    let (_, _, model) = call(
        &t.router,
        Request::get("/v1/model").body(Body::empty()).unwrap(),
    )
    .await;
    assert!((model["thresholds_in_force"]["block"].as_f64().unwrap() - 0.99).abs() < 1e-6);
}

#[tokio::test]
async fn errors_are_problem_json_with_the_right_status() {
    let t = app_with(|c| {
        c.http.max_body_bytes = 2048;
        c.http.max_batch_names = 3;
    })
    .await;
    let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
        (
            post_json("/v1/score", "{not json"),
            StatusCode::BAD_REQUEST,
            "malformed-request",
        ),
        (
            score_req(json!({"qtype": "A"})),
            StatusCode::BAD_REQUEST,
            "malformed-request",
        ),
        (
            score_req(json!({"name": 5, "qtype": "A"})),
            StatusCode::BAD_REQUEST,
            "malformed-request",
        ),
        (
            score_req(json!({"names": "x"})),
            StatusCode::BAD_REQUEST,
            "malformed-request",
        ),
        (
            post_json("/v1/score", "x".repeat(4096)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
        ),
        (
            score_req(
                json!({"names": (0..4).map(|i| json!({"name": format!("n{i}.com"), "qtype": "A"})).collect::<Vec<_>>()}),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
        ),
        (
            Request::post("/v1/score")
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from("{}"))
                .unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        ),
        (
            Request::post("/v1/score").body(Body::from("{}")).unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        ),
        (
            score_req(json!({"name": "bad name.com", "qtype": "A"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-name",
        ),
        (
            score_req(json!({"name": "a..com", "qtype": "A"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-name",
        ),
        (
            score_req(json!({"name": "", "qtype": "A"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-name",
        ),
        (
            score_req(json!({"name": "a.com", "qtype": "A B"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-name",
        ),
        (
            score_req(json!({"name": "a.com", "qtype": "A", "client": "not-an-ip"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-name",
        ),
        (
            score_req(
                json!({"names": [{"name": "ok.com", "qtype": "A"}, {"name": "b\u{fc}.com", "qtype": "A"}]}),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-name",
        ),
        (
            Request::get("/nope").body(Body::empty()).unwrap(),
            StatusCode::NOT_FOUND,
            "not-found",
        ),
    ];
    for (req, want, slug) in cases {
        let what = format!("{} {}", req.method(), req.uri());
        let (status, ctype, body) = call(&t.router, req).await;
        assert_eq!(status, want, "{what}: {body}");
        assert_eq!(ctype.as_deref(), Some("application/problem+json"), "{what}");
        assert_eq!(body["status"], want.as_u16());
        assert_eq!(body["type"], format!("urn:dohguard:problem:{slug}"));
        assert!(!body["detail"].as_str().unwrap().is_empty());
    }
    // A batch with one bad name is refused as a whole and names the index: nothing logged.
    let (_, _, body) = call(
        &t.router,
        score_req(
            json!({"names": [{"name": "ok.com", "qtype": "A"}, {"name": "b b", "qtype": "A"}]}),
        ),
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("names[1]"),
        "{body}"
    );
    assert_eq!(
        t.app.metrics.sink.queued.get() + t.app.metrics.sink.spooled.get(),
        0
    );
}

#[tokio::test]
async fn health_ready_model_and_metrics() {
    let t = app().await;
    let get = |p: &str| Request::get(p).body(Body::empty()).unwrap();
    let (status, _, body) = call(&t.router, get("/healthz")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );

    let (status, _, body) = call(&t.router, get("/readyz")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["sink"], "spool_only");

    let card_text = std::fs::read_to_string(test_model_card()).unwrap();
    let card: Value = serde_json::from_str(&card_text).unwrap();
    let (status, _, body) = call(&t.router, get("/v1/model")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["card"]["sha256"], card["sha256"]);
    assert_eq!(body["card"]["name"], card["name"]);
    // The test configuration asks for `auto`: CUDA where the runtime offers it (and the GPU
    // works), else CPU.
    let device = body["device"].as_str().unwrap();
    if dohguard_scorer::model::runtime::cuda_available().unwrap() {
        assert!(matches!(device, "cuda" | "cpu"), "{body}");
    } else {
        assert_eq!(device, "cpu", "{body}");
    }

    call(
        &t.router,
        score_req(json!({"name": "xjw3kq9z.com", "qtype": "A"})),
    )
    .await;
    call(
        &t.router,
        score_req(json!({"name": "www.xjw3kq9z.com", "qtype": "A"})),
    )
    .await;
    // Spool-only mode: the writer spools both verdicts shortly after.
    let sink = t.app.metrics.sink.clone();
    eventually(
        "2 verdicts spooled",
        std::time::Duration::from_secs(10),
        || {
            let n = sink.spooled.get();
            async move { n == 2 }
        },
    )
    .await;
    let resp = t.router.clone().oneshot(get("/metrics")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = String::from_utf8(
        to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    for needle in [
        "dohguard_scorer_http_requests_total{route=\"/v1/score\",status=\"200\"} 2",
        "dohguard_scorer_http_request_duration_seconds_bucket",
        "dohguard_scorer_inference_batch_size_count",
        "dohguard_scorer_inference_queue_depth 0",
        "dohguard_scorer_inference_duration_seconds_bucket",
        // Spool-only mode: no bulk request was made, and the histogram says so.
        "dohguard_scorer_sink_bulk_duration_seconds_count 0",
        "dohguard_scorer_verdicts_total{verdict=\"block\",reason=\"model\"} 2",
        // Same registered domain twice: the second is a cache hit.
        "dohguard_scorer_verdict_cache_hits_total 1",
        "dohguard_scorer_verdict_cache_misses_total 1",
        "dohguard_scorer_inference_cpu_fallback 0",
        "dohguard_scorer_sink_spooled_total 2",
        "dohguard_scorer_sink_dropped_total 0",
    ] {
        assert!(text.contains(needle), "metrics lack {needle:?}:\n{text}");
    }
}

/// Names the model has computed so far (sum of the batch-size histogram).
fn names_computed(app: &App) -> f64 {
    let text = app.metrics.encode();
    text.lines()
        .find_map(|l| l.strip_prefix("dohguard_scorer_inference_batch_size_sum "))
        .unwrap_or_else(|| panic!("no batch size sum in:\n{text}"))
        .parse()
        .unwrap()
}

/// Names of the large job below: the test model computes them in a few hundred milliseconds.
const BUSY_NAMES: usize = 100_000;

/// Keeps the inference thread busy with a large job (outside HTTP, straight to the model)
/// and returns once the thread is computing it: requests sent now queue behind it.
async fn busy(t: &TestApp) -> tokio::task::JoinHandle<()> {
    let model = t.app.model().clone();
    let job = tokio::spawn(async move {
        let texts: Vec<String> = (0..BUSY_NAMES)
            .map(|i| format!("busy{i}q{i}.example"))
            .collect();
        model.score(texts).await.expect("the large job is computed");
    });
    let app = t.app.clone();
    eventually(
        "the inference thread starts the large job",
        std::time::Duration::from_secs(30),
        || {
            let started = names_computed(&app) > 0.0;
            async move { started }
        },
    )
    .await;
    job
}

fn unique_batch(prefix: &str, n: usize) -> Value {
    json!({"names": (0..n).map(|i| json!({"name": format!("{prefix}{i}.example"), "qtype": "A"})).collect::<Vec<_>>()})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_with_retry_after_at_once() {
    let t = app_with(|c| {
        c.inference.queue_capacity = 10;
        c.inference.max_queue_age_ms = 60_000; // this test waits behind the large job
        c.http.max_batch_names = 8;
    })
    .await;
    let busy = busy(&t).await;
    // 8 names fit in the empty queue and wait behind the large job ...
    let router = t.router.clone();
    let waiting =
        tokio::spawn(async move { call(&router, score_req(unique_batch("wait", 8))).await });
    let app = t.app.clone();
    eventually("8 names queued", std::time::Duration::from_secs(10), || {
        let n = app.model().queued_names();
        async move { n == 8 }
    })
    .await;
    // ... 8 more would make 16 > 10: refused at once, not after the queue drains.
    let resp = t
        .router
        .clone()
        .oneshot(score_req(unique_batch("over", 8)))
        .await
        .unwrap();
    assert!(!busy.is_finished(), "the 503 waited for the large job");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        resp.headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    assert_eq!(
        resp.headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap()),
        Some("application/problem+json")
    );
    let body: Value =
        serde_json::from_slice(&to_bytes(resp.into_body(), usize::MAX).await.unwrap()).unwrap();
    assert_eq!(body["type"], "urn:dohguard:problem:overloaded", "{body}");
    assert_eq!(body["status"], 503);

    let (status, _, body) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    busy.await.unwrap();
    assert_eq!(t.app.metrics.queue_rejected.get(), 8);
    assert_eq!(
        names_computed(&t.app),
        (BUSY_NAMES + 8) as f64,
        "the refused names were never computed"
    );
    // Refused requests are not verdicts: nothing was recorded for them.
    let (_, _, metrics) = call(
        &t.router,
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    let text = metrics.as_str().unwrap();
    assert!(
        text.contains("dohguard_scorer_inference_queue_rejected_total 8"),
        "{text}"
    );
    assert!(
        text.contains("dohguard_scorer_http_requests_total{route=\"/v1/score\",status=\"503\"} 1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_callers_deadline_is_dropped_uncomputed() {
    let t = app().await;
    let busy = busy(&t).await;
    // The filter's callouts carry Envoy's expected timeout: the caller stops waiting then.
    let req = Request::post("/v1/score")
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-envoy-expected-rq-timeout-ms", "50")
        .body(Body::from(
            json!({"name": "abandoned.example", "qtype": "A"}).to_string(),
        ))
        .unwrap();
    let (status, ctype, body) = call(&t.router, req).await;
    assert!(!busy.is_finished(), "the answer waited for the large job");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(ctype.as_deref(), Some("application/problem+json"));
    busy.await.unwrap();
    let (status, _, _) = call(
        &t.router,
        score_req(json!({"name": "after.example", "qtype": "A"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        names_computed(&t.app),
        (BUSY_NAMES + 1) as f64,
        "abandoned.example was dropped from the queue, not computed"
    );
    let (_, _, metrics) = call(
        &t.router,
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    let text = metrics.as_str().unwrap();
    assert!(
        text.contains("dohguard_scorer_inference_queue_dropped_total{reason=\"caller_gone\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn admin_reload_validates_and_keeps_the_old_model_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let card = test_model_card();
    let card_json: Value = serde_json::from_str(&std::fs::read_to_string(&card).unwrap()).unwrap();
    let onnx_name = card_json["onnx_file"].as_str().unwrap();
    std::fs::copy(&card, dir.path().join("model.card.json")).unwrap();
    std::fs::copy(
        card.parent().unwrap().join(onnx_name),
        dir.path().join(onnx_name),
    )
    .unwrap();
    let copied = dir.path().join("model.card.json");
    let t = app_with(|c| c.model.card = copied.clone()).await;
    let reload = || Request::post("/admin/reload").body(Body::empty()).unwrap();

    let (status, _, body) = call(&t.router, reload()).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Corrupt the ONNX file: the sha256 check refuses it, the old session keeps serving.
    std::fs::write(dir.path().join(onnx_name), b"not a model").unwrap();
    let (status, ctype, body) = call(&t.router, reload()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(ctype.as_deref(), Some("application/problem+json"));
    assert!(
        body["detail"].as_str().unwrap().contains("sha256"),
        "{body}"
    );
    let (status, _, scored) = call(
        &t.router,
        score_req(json!({"name": "xjw3kq9z.com", "qtype": "A"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(scored["verdict"], "block");
}

#[tokio::test]
async fn serves_over_a_real_socket() {
    let spool = tempfile::tempdir().unwrap();
    let (app, _tasks) = start(test_config(None, spool.path())).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, router(app)).await });
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("http://{addr}/v1/score"))
        .json(&json!({"names": [{"name": "xjw3kq9z.com", "qtype": "A"}, {"name": "google.com", "qtype": "A"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["results"][0]["verdict"], "block");
    assert_eq!(body["results"][1]["verdict"], "allow");
    let health = client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    server.abort();
}

#[test]
fn openapi_describes_every_route() {
    let spec = std::fs::read_to_string(repo_root().join("scorer/openapi.yaml")).unwrap();
    assert!(spec.starts_with("openapi: 3.1"));
    for route in [
        "/v1/score",
        "/v1/events",
        "/v1/model",
        "/admin/reload",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(
            spec.contains(&format!("\n  {route}:\n")),
            "openapi.yaml lacks {route}"
        );
    }
    for status in ["'400'", "'413'", "'415'", "'422'", "'503'"] {
        assert!(spec.contains(status), "openapi.yaml lacks status {status}");
    }
}
