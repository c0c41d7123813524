//! The retraining loop on the router as a value, against a real osmem-server, the real
//! scorer (in process, on a socket, with an admin token, serving the shipped model) and the
//! real Python pipeline (`$DOHGUARD_PYTHON -m dohguard_models finetune`, tiny settings):
//! roles, one job at a time, cancel, the label CSV, a candidate with its shadow comparison,
//! promote (the scorer serves it), a tampered candidate refused, roll back, the audit trail.

mod common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::{
    event,
    scorer::{real_scorer, repo, RealScorer},
    Fixture, Login,
};
use dohguard_core::contract::Verdict;
use dohguard_schema::Layer;
use serde_json::{json, Value};

async fn serving_version(scorer: &RealScorer) -> String {
    let v: Value = reqwest::get(format!("{}/v1/model", scorer.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["model_version"].as_str().unwrap().to_owned()
}

/// Polls `GET /api/retrain` until the job is no longer running; returns the job.
async fn finished(f: &Fixture, admin: &Login, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let s = f.get("/api/retrain", Some(admin)).await.json();
        if s["job"]["state"] != "running" {
            return s["job"].clone();
        }
        assert!(Instant::now() < deadline, "the job did not finish: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrain_promote_and_roll_back() {
    let python = std::env::var("DOHGUARD_PYTHON")
        .expect("DOHGUARD_PYTHON (source scripts/env.sh after scripts/setup.sh)");
    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("scorer-admin-token");
    std::fs::write(&token_file, "test-admin-token").unwrap();
    let scorer = real_scorer(&token_file).await;
    let shipped = serving_version(&scorer).await;
    let models = tempfile::tempdir().unwrap();
    let (url, tf, dir) = (
        scorer.url.clone(),
        token_file.clone(),
        models.path().to_owned(),
    );
    let f = Fixture::start_with(move |c| {
        c.scorer_url = url;
        c.retrain.python = python;
        c.retrain.models_dir = repo().join("models");
        c.retrain.scorer_token_file = tf;
        c.retrain.dir = dir;
        c.retrain.epochs = 2;
        c.retrain.sample = 100;
    })
    .await;
    // Recent verdicts: allowed names far below the thresholds, and model blocks.
    let mut events = Vec::new();
    for (i, name) in ["www.example.com", "docs.wikipedia.org", "mail.example.net"]
        .iter()
        .enumerate()
    {
        let mut e = event(
            &format!("ok-{i}"),
            60,
            name,
            "10.0.0.1",
            Verdict::Allow,
            Layer::Model,
        );
        e.score = Some(0.001);
        events.push(e);
    }
    let mut e = event(
        "dga-1",
        60,
        "zzqxkjw.info",
        "10.0.0.2",
        Verdict::Block,
        Layer::Model,
    );
    e.score = Some(0.99999);
    events.push(e);
    f.insert(&events).await;

    let admin = f.admin().await;
    let analyst = f.user("ana", "analyst").await;
    let viewer = f.user("vic", "viewer").await;

    // Roles: only admins retrain, promote, roll back.
    for who in [&viewer, &analyst] {
        f.post("/api/retrain", Some(who), true, json!({}))
            .await
            .problem(403, "forbidden");
        f.post("/api/candidates/c1/promote", Some(who), true, json!({}))
            .await
            .problem(403, "forbidden");
        f.post("/api/models/rollback", Some(who), true, json!({}))
            .await
            .problem(403, "forbidden");
    }
    f.post("/api/retrain", Some(&admin), false, json!({}))
        .await
        .problem(403, "csrf");
    // No labels: nothing to learn from, said so.
    let p = f
        .post("/api/retrain", Some(&admin), true, json!({}))
        .await
        .problem(422, "refused");
    assert!(p["detail"].as_str().unwrap().contains("no labels"), "{p}");
    f.post("/api/retrain", Some(&admin), true, json!({"epochs": 0}))
        .await
        .problem(400, "bad-input");

    // Analysts label; the export is the pipeline's CSV.
    for (domain, label) in [
        ("zzqxkjw.info", "benign"),
        ("mybank-example.com", "malicious"),
    ] {
        let r = f
            .post(
                "/api/labels",
                Some(&analyst),
                true,
                json!({"domain": domain, "label": label, "reason": "vetted, by hand"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    let csv = f.get("/api/labels/export", Some(&viewer)).await;
    assert_eq!(csv.status, StatusCode::OK);
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(
        lines,
        [
            "name,label,family,labelled_by,labelled_at,reason",
            lines[1],
            lines[2]
        ]
    );
    assert!(
        lines[1].starts_with("mybank-example.com,malicious,,ana,"),
        "{lines:?}"
    );
    assert!(
        lines[2].starts_with("zzqxkjw.info,benign,,ana,"),
        "{lines:?}"
    );
    assert!(lines[2].ends_with(",\"vetted, by hand\""), "{lines:?}");

    // One job at a time, and cancel.
    let r = f
        .post("/api/retrain", Some(&admin), true, json!({"epochs": 50}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let first = r.json();
    assert_eq!(first["state"], "running");
    assert!(
        first["source"].as_str().unwrap().starts_with(&format!(
            "fine-tune of the serving model {shipped} on 2 analyst labels"
        )),
        "{first}"
    );
    f.post("/api/retrain", Some(&admin), true, json!({}))
        .await
        .problem(409, "conflict");
    let r = f
        .post("/api/retrain/cancel", Some(&admin), true, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let job = finished(&f, &admin, Duration::from_secs(30)).await;
    assert_eq!(job["state"], "cancelled", "{job}");
    assert!(
        !models
            .path()
            .join("candidates")
            .join(first["id"].as_str().unwrap())
            .exists(),
        "a cancelled job leaves no candidate"
    );
    f.post("/api/retrain/cancel", Some(&admin), true, json!({}))
        .await
        .problem(409, "conflict");

    // A real run: a candidate with its checks and shadow comparison.
    let r = f.post("/api/retrain", Some(&admin), true, json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let job = finished(&f, &admin, Duration::from_secs(180)).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let c = f
        .get(&format!("/api/candidates/{id}"), Some(&viewer))
        .await
        .json();
    assert_eq!(c["passed"], true, "{c}");
    let report = &c["report"];
    assert_eq!(report["source"]["labels"], 2);
    assert_eq!(
        report["shadow"]["names"], 4,
        "the distinct recent domains: {report}"
    );
    let candidate_version = c["model_version"].as_str().unwrap().to_owned();
    assert!(candidate_version.starts_with(&format!("{shipped}-ft.")));
    for side in ["serving", "candidate"] {
        assert!(
            report["on_labels"]["monitor"][side]["tp"].is_u64(),
            "{report}"
        );
    }
    let page = f
        .get(&format!("/models?candidate={id}"), Some(&viewer))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Shadow comparison"), "{}", page.body);
    assert!(
        !page.body.contains("class=\"promote\""),
        "a viewer gets no promote button"
    );
    f.get("/api/candidates/..%2Fx", Some(&admin))
        .await
        .problem(400, "bad-input");

    // Promote: the scorer serves the candidate; again is a conflict.
    f.post(
        &format!("/api/candidates/{id}/promote"),
        Some(&analyst),
        true,
        json!({}),
    )
    .await
    .problem(403, "forbidden");
    let r = f
        .post(
            &format!("/api/candidates/{id}/promote"),
            Some(&admin),
            true,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["model_version"], candidate_version);
    assert_eq!(serving_version(&scorer).await, candidate_version);
    f.post(
        &format!("/api/candidates/{id}/promote"),
        Some(&admin),
        true,
        json!({}),
    )
    .await
    .problem(409, "conflict");

    // Roll back: the shipped model again; nothing further to roll back to.
    let r = f
        .post("/api/models/rollback", Some(&admin), true, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(serving_version(&scorer).await, shipped);
    f.post("/api/models/rollback", Some(&admin), true, json!({}))
        .await
        .problem(409, "conflict");

    // A candidate whose file no longer matches its card cannot be promoted.
    let onnx = models
        .path()
        .join("candidates")
        .join(&id)
        .join("model.onnx");
    let mut bytes = std::fs::read(&onnx).unwrap();
    bytes.push(0);
    std::fs::write(&onnx, bytes).unwrap();
    let p = f
        .post(
            &format!("/api/candidates/{id}/promote"),
            Some(&admin),
            true,
            json!({}),
        )
        .await
        .problem(422, "refused");
    assert!(p["detail"].as_str().unwrap().contains("sha256"), "{p}");
    assert_eq!(serving_version(&scorer).await, shipped);

    let audit = f.get("/api/audit", Some(&admin)).await.json();
    let actions: Vec<(String, String)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for expected in [
        ("retrain.start", "success"),
        ("retrain.cancel", "success"),
        ("model.promote", "success"),
        ("model.promote", "failure"),
        ("model.rollback", "success"),
    ] {
        assert!(
            actions.contains(&(expected.0.into(), expected.1.into())),
            "{expected:?} not in {actions:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_scorer_retraining_says_why() {
    let f = Fixture::start().await; // scorer_url is empty
    let admin = f.admin().await;
    let r = f
        .post(
            "/api/labels",
            Some(&admin),
            true,
            json!({"domain": "example.com", "label": "benign", "reason": "ok"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let p = f
        .post("/api/retrain", Some(&admin), true, json!({}))
        .await
        .problem(503, "unavailable");
    assert!(p["detail"].as_str().unwrap().contains("scorer_url"), "{p}");
    f.post("/api/models/rollback", Some(&admin), true, json!({}))
        .await
        .problem(409, "conflict");
    let page = f.get("/models", Some(&admin)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("no scorer_url configured"),
        "{}",
        page.body
    );
}
