//! Retraining with an operator's data folder (`retrain.data_dir`), on the router as a value
//! against a real osmem-server, the real scorer and the real Python job: a missing folder and
//! one with no `.csv` file are refused with the reason (on the page too), and a folder with a
//! CSV makes a job that says it used the folder and whose candidate's report counts its rows.

mod common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::{
    scorer::{real_scorer, repo},
    Fixture,
};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrain_uses_the_operators_data_folder_or_says_why_not() {
    let python = std::env::var("DOHGUARD_PYTHON")
        .expect("DOHGUARD_PYTHON (source scripts/env.sh after scripts/setup.sh)");
    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("scorer-admin-token");
    std::fs::write(&token_file, "test-admin-token").unwrap();
    let scorer = real_scorer(&token_file).await;
    let models = tempfile::tempdir().unwrap();
    let data = secrets.path().join("ops-data");
    let (url, tf, dir, dd) = (
        scorer.url.clone(),
        token_file.clone(),
        models.path().to_owned(),
        data.clone(),
    );
    let f = Fixture::start_with(move |c| {
        c.scorer_url = url;
        c.retrain.python = python;
        c.retrain.models_dir = repo().join("models");
        c.retrain.scorer_token_file = tf;
        c.retrain.dir = dir;
        c.retrain.sample = 10;
        c.retrain.data_dir = dd;
    })
    .await;
    let admin = f.admin().await;
    let r = f
        .post(
            "/api/labels",
            Some(&admin),
            true,
            json!({"domain": "zzqxkjw.info", "label": "benign", "reason": "our host"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);

    // The folder does not exist: refused, the reason on the page and in the answer.
    let p = f
        .post("/api/retrain", Some(&admin), true, json!({"epochs": 1}))
        .await
        .problem(422, "refused");
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("retrain.data_dir") && detail.contains("ops-data"),
        "{p}"
    );
    let page = f.get("/models", Some(&admin)).await;
    assert!(
        page.body.contains(r#"id="data-dir""#) && page.body.contains("cannot be read"),
        "{}",
        page.body
    );

    // A folder with no CSV in it.
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("README.txt"), "our lists\n").unwrap();
    let p = f
        .post("/api/retrain", Some(&admin), true, json!({"epochs": 1}))
        .await
        .problem(422, "refused");
    assert!(
        p["detail"].as_str().unwrap().contains("no .csv files"),
        "{p}"
    );
    assert_eq!(
        f.get("/api/retrain", Some(&admin)).await.json()["job"],
        Value::Null
    );

    // With a CSV: the job runs on it and says so.
    std::fs::write(
        data.join("known-bad.csv"),
        "name,label,family\nmybank-example.com,malicious,phishing\nxkqzjwpv.biz,malicious,\n",
    )
    .unwrap();
    let page = f.get("/models", Some(&admin)).await;
    assert!(
        page.body.contains("1 .csv file(s) (known-bad.csv)"),
        "{}",
        page.body
    );
    let r = f
        .post(
            "/api/retrain",
            Some(&admin),
            true,
            json!({"epochs": 1, "max_seconds": 60}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let job = r.json();
    let source = job["source"].as_str().unwrap();
    assert!(
        source.contains("operator's data folder") && source.contains("known-bad.csv"),
        "{job}"
    );
    let deadline = Instant::now() + Duration::from_secs(240);
    let job = loop {
        let s = f.get("/api/retrain", Some(&admin)).await.json();
        if s["job"]["state"] != "running" {
            break s["job"].clone();
        }
        assert!(Instant::now() < deadline, "the job did not finish: {s}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(job["state"], "succeeded", "{job}");
    let c = f
        .get(
            &format!("/api/candidates/{}", job["id"].as_str().unwrap()),
            Some(&admin),
        )
        .await
        .json();
    let src = &c["report"]["source"];
    assert_eq!(src["data_files"], json!(["known-bad.csv"]), "{src}");
    assert_eq!(src["data_rows"], 2, "{src}");
    assert_eq!(src["labels"], 1, "{src}");
}
