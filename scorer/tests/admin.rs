//! `POST /admin/reload` with `admin.token_file`: the bearer token is required, a card path
//! switches the serving model (what the console's promote and roll back do), and without a
//! token configured only the body-less reload is allowed.

mod common;

use axum::{
    body::{to_bytes, Body},
    http::{header, Request, StatusCode},
    Router,
};
use common::{start, test_config, test_model_card};
use dohguard_scorer::{router, Config};
use serde_json::{json, Value};
use tower::ServiceExt;

async fn call(router: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, body)
}

fn reload(token: Option<&str>, body: Option<Value>) -> Request<Body> {
    let mut r = Request::post("/admin/reload");
    if let Some(t) = token {
        r = r.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    match body {
        Some(b) => r
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b.to_string()))
            .unwrap(),
        None => r.body(Body::empty()).unwrap(),
    }
}

/// A copy of the test model whose card says another version.
fn other_version(dir: &std::path::Path, version: &str) -> std::path::PathBuf {
    let card = test_model_card();
    let mut json: Value = serde_json::from_str(&std::fs::read_to_string(&card).unwrap()).unwrap();
    let onnx = json["onnx_file"].as_str().unwrap().to_owned();
    std::fs::copy(card.parent().unwrap().join(&onnx), dir.join(&onnx)).unwrap();
    json["version"] = json!(version);
    let path = dir.join("model.card.json");
    std::fs::write(&path, json.to_string()).unwrap();
    path
}

async fn app(edit: impl FnOnce(&mut Config)) -> (Router, tempfile::TempDir) {
    let spool = tempfile::tempdir().unwrap();
    let mut config = test_config(None, spool.path());
    edit(&mut config);
    let (app, _tasks) = start(config).await;
    (router(app), spool)
}

#[tokio::test]
async fn the_admin_token_is_required_and_a_card_path_switches_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let models = tempfile::tempdir().unwrap();
    let candidate = other_version(models.path(), "9.9.9-candidate");
    let tf = token_file.clone();
    let (router, _spool) = app(|c| c.admin.token_file = Some(tf)).await;
    let original = call(
        &router,
        Request::get("/v1/model").body(Body::empty()).unwrap(),
    )
    .await
    .1["model_version"]
        .clone();

    let (status, body) = call(&router, reload(None, None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = call(&router, reload(Some("wrong"), None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["detail"], "wrong admin token");
    let switch = json!({"card_path": candidate});
    let (status, _) = call(&router, reload(Some("wrong"), Some(switch.clone()))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, body) = call(&router, reload(Some("s3cret-token"), Some(switch))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["model_version"],
        "dohguard-scorer-test-model-9.9.9-candidate"
    );
    let (_, model) = call(
        &router,
        Request::get("/v1/model").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(model["model_version"], body["model_version"]);
    assert_eq!(model["card_path"], candidate.display().to_string());

    // Relative paths and unknown fields are refused; a bad card keeps the candidate serving.
    let (status, _) = call(
        &router,
        reload(Some("s3cret-token"), Some(json!({"card_path": "x.json"}))),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call(
        &router,
        reload(Some("s3cret-token"), Some(json!({"card": "/x.json"}))),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let missing = models.path().join("missing.card.json");
    let (status, body) = call(
        &router,
        reload(Some("s3cret-token"), Some(json!({"card_path": missing}))),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // Roll back: the original card again.
    let (status, body) = call(
        &router,
        reload(
            Some("s3cret-token"),
            Some(json!({"card_path": test_model_card()})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["model_version"], original);
}

#[tokio::test]
async fn without_a_token_file_only_the_configured_model_reloads() {
    let models = tempfile::tempdir().unwrap();
    let candidate = other_version(models.path(), "9.9.9-candidate");
    let (router, _spool) = app(|_| {}).await;
    let (status, body) = call(&router, reload(None, None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = call(&router, reload(None, Some(json!({"card_path": candidate})))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (_, model) = call(
        &router,
        Request::get("/v1/model").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(model["model_version"], "dohguard-scorer-test-model-0.1.0");
}

#[tokio::test]
async fn an_unreadable_token_file_is_a_503_not_an_open_door() {
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("no-such-token");
    let (router, _spool) = app(|c| c.admin.token_file = Some(gone)).await;
    let (status, body) = call(&router, reload(Some("anything"), None)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
}
