//! Shared test support: a real osmem-server (the Elasticsearch-API store, started per test
//! on an ephemeral port and stopped by PID), the scorer's verdict index template, verdict
//! documents built through `dohguard-schema`, and the console's router as a value.
#![allow(dead_code)]

pub mod scorer;

use std::time::{SystemTime, UNIX_EPOCH};

use axum::{
    body::Body,
    http::{header, Request, StatusCode},
    Router,
};
use dohguard_console::{app, AppState, Config};
use dohguard_core::{contract::Verdict, name::split};
use dohguard_launcher::osmem::Osmem;
use dohguard_schema::{Answer, DecisionEvent, Layer, VerdictDocument};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

pub const INDEX: &str = "logs-dohguard.verdicts-default";

pub struct Fixture {
    pub osmem: Osmem,
    pub dir: tempfile::TempDir,
    pub state: AppState,
    pub router: Router,
    pub admin_password: String,
    http: reqwest::Client,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A decision event `age_s` seconds old.
pub fn event(
    id: &str,
    age_s: u64,
    name: &str,
    client: &str,
    verdict: Verdict,
    layer: Layer,
) -> DecisionEvent {
    DecisionEvent {
        id: id.into(),
        ts_ms: now_ms() - age_s * 1000,
        client: Some(client.into()),
        principal: None,
        request_id: Some(format!("req-{id}")),
        name: Some(name.into()),
        qtype: Some("A".into()),
        verdict: Some(verdict),
        layer,
        cached_layer: None,
        rule: None,
        cname_target: None,
        score: None,
        model_version: None,
        detector: None,
        cached: layer == Layer::Cache,
        enforced: true,
        answer: match verdict {
            Verdict::Block => Answer::Blocked {
                mode: "nxdomain".into(),
                rcode: 3,
            },
            _ => Answer::Forwarded {
                rcode: Some(0),
                answers: Some(1),
                http_status: None,
            },
        },
        latency_us: 500,
    }
}

/// The document the scorer writes for `event` (same conversion, same timestamp format).
pub fn document(event: &DecisionEvent) -> VerdictDocument {
    let ts =
        time::OffsetDateTime::from_unix_timestamp_nanos(event.ts_ms as i128 * 1_000_000).unwrap();
    let ts = ts
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let name = event.name.clone().unwrap_or_default();
    VerdictDocument::from_event(event, ts, split(&name))
}

impl Fixture {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let osmem = tokio::task::block_in_place(|| Osmem::start(dir.path(), None))
            .expect("osmem-server starts (source scripts/env.sh first)");
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        // The scorer's template, so fields get the mappings real verdicts get (ip, keyword).
        let template = dohguard_scorer::sink::template::template_body(INDEX, false);
        let r = http
            .put(format!("{}/_index_template/dohguard-verdicts", osmem.url()))
            .json(&template)
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "template: {}",
            r.text().await.unwrap()
        );
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            scorer_url: String::new(),
            ..Config::default()
        };
        config.elasticsearch.url = osmem.url();
        config.admin.password_file = dir.path().join("console/initial-admin-password");
        tune(&mut config);
        config.validate().unwrap();
        let state = AppState::new(config).unwrap();
        let admin_password = state
            .prepare()
            .await
            .unwrap()
            .expect("first start creates the admin");
        let router = app(state.clone());
        Fixture {
            osmem,
            dir,
            state,
            router,
            admin_password,
            http,
        }
    }

    /// Stores the documents of `events` (refreshed: searchable on return).
    pub async fn insert(&self, events: &[DecisionEvent]) {
        let mut body = String::new();
        for e in events {
            body.push_str(&json!({"create": {"_index": INDEX, "_id": e.id}}).to_string());
            body.push('\n');
            body.push_str(&serde_json::to_string(&document(e)).unwrap());
            body.push('\n');
        }
        self.bulk(body).await;
    }

    pub async fn bulk(&self, body: String) {
        let r = self
            .http
            .post(format!("{}/_bulk?refresh=true", self.osmem.url()))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        let reply: Value = r.json().await.unwrap();
        assert_eq!(reply["errors"], false, "bulk: {reply}");
    }

    pub async fn call(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    pub async fn get(&self, uri: &str, who: Option<&Login>) -> Reply {
        let mut req = Request::get(uri);
        if let Some(l) = who {
            req = req.header(header::COOKIE, &l.cookie);
        }
        self.call(req.body(Body::empty()).unwrap()).await
    }

    /// POSTs JSON with the session's cookie and, when `csrf`, its CSRF token.
    pub async fn post(&self, uri: &str, who: Option<&Login>, csrf: bool, body: Value) -> Reply {
        let mut req = Request::post(uri).header(header::CONTENT_TYPE, "application/json");
        if let Some(l) = who {
            req = req.header(header::COOKIE, &l.cookie);
            if csrf {
                req = req.header("x-csrf-token", &l.csrf);
            }
        }
        self.call(req.body(Body::from(body.to_string())).unwrap())
            .await
    }

    pub async fn login(&self, username: &str, password: &str) -> Login {
        let r = self
            .post(
                "/api/login",
                None,
                false,
                json!({"username": username, "password": password}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let set_cookie = r.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
        let cookie = set_cookie.split(';').next().unwrap().to_owned();
        Login {
            cookie,
            csrf: r.json()["csrf_token"].as_str().unwrap().to_owned(),
            set_cookie,
        }
    }

    pub async fn admin(&self) -> Login {
        self.login("admin", &self.admin_password).await
    }

    /// Creates a user through the API (as admin) and logs them in.
    pub async fn user(&self, name: &str, role: &str) -> Login {
        let admin = self.admin().await;
        let password = format!("{name}-password-123");
        let r = self
            .post(
                "/api/users",
                Some(&admin),
                true,
                json!({"username": name, "role": role, "password": password}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        self.login(name, &password).await
    }
}

#[derive(Debug, Clone)]
pub struct Login {
    pub cookie: String,
    pub csrf: String,
    pub set_cookie: String,
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// Asserts a problem+json reply with this status and type slug; returns it.
    pub fn problem(&self, status: u16, kind: &str) -> Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        assert_eq!(
            self.headers[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let p = self.json();
        assert_eq!(p["type"], format!("urn:dohguard:console:{kind}"), "{p}");
        assert_eq!(p["status"], status);
        p
    }
}
