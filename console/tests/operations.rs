//! API tests on the router as a value (against a real osmem-server) for the overview's minute
//! cache, password change and reset, the client's risk trend, bad input on pages, and one
//! real-socket test of the console over TLS with a rustls client and a generated certificate.

mod common;

use std::{collections::BTreeMap, sync::Arc};

use axum::http::{header, StatusCode};
use common::{event, Fixture};
use dohguard_console::{overview, query_log::LogFilter};
use dohguard_core::contract::Verdict;
use dohguard_schema::{DecisionEvent, Layer};
use serde_json::{json, Value};

/// 120 queries over the last three hours, some inside the cache's grace period: domain `dK`
/// gets K+1 queries (so no two domains tie), verdict by K, six clients, two models.
fn spread() -> Vec<DecisionEvent> {
    let mut out = Vec::new();
    let mut i = 0u64;
    for k in 0..15u64 {
        for j in 0..=k {
            let verdict = [Verdict::Allow, Verdict::Monitor, Verdict::Block][(k % 3) as usize];
            let mut e = event(
                &format!("s-{i:04}"),
                3 + (i * 89) % 10_800,
                &format!("h{j}.d{k}.example"),
                &format!("10.0.0.{}", j % 6),
                verdict,
                Layer::Model,
            );
            e.model_version = Some(if i.is_multiple_of(4) { "m2" } else { "m1" }.into());
            e.score = Some(0.1 + (k as f32) / 20.0);
            out.push(e);
            i += 1;
        }
    }
    out
}

/// Bucket lists in one order (count, then key) so equal tops compare equal.
fn normalised(mut v: Value) -> Value {
    for (k, x) in v.as_object_mut().unwrap().iter_mut() {
        if let Some(list) = x.as_array_mut() {
            if k != "timeline" {
                list.sort_by(|a, b| {
                    b["count"]
                        .as_u64()
                        .cmp(&a["count"].as_u64())
                        .then_with(|| a["key"].as_str().cmp(&b["key"].as_str()))
                });
            }
        }
    }
    v
}

async fn live_and_cached(f: &Fixture, range: &str) -> (Value, Option<Value>) {
    let params: BTreeMap<String, String> = [("range".to_owned(), range.to_owned())].into();
    let filter = LogFilter::parse(&params, &[]).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let index = &f.state.store.indices.verdicts;
    let reply = f
        .state
        .store
        .search(index, overview::body(&filter, now))
        .await
        .unwrap();
    let live = overview::parse(&reply, &filter, now).unwrap();
    let cache = f.state.overview_cache.as_ref().expect("the cache is on");
    let cached = cache
        .overview(&f.state.store, index, &filter, now)
        .await
        .unwrap();
    (
        normalised(serde_json::to_value(live).unwrap()),
        cached.map(|c| normalised(serde_json::to_value(c).unwrap())),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cached_overview_equals_the_aggregated_one_and_catches_late_documents() {
    let f = Fixture::start().await;
    f.insert(&spread()).await;
    let cache = f.state.overview_cache.clone().unwrap();
    let index = f.state.store.indices.verdicts.clone();

    let (_, before) = live_and_cached(&f, "24h").await;
    assert!(before.is_none(), "an empty cache answers nothing");

    let report = cache
        .refresh(&f.state.store, &index, time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(report.filled_minutes, 25 * 60, "{report:?}");
    let (live, cached) = live_and_cached(&f, "24h").await;
    assert_eq!(live["total"], 120);
    assert_eq!(Some(&live), cached.as_ref(), "cached differs from live");

    // A document arriving late for a cached minute (as from the scorer's spool): the next
    // refresh finds the count changed and refills that minute.
    let mut late = event(
        "late-1",
        2 * 3600,
        "x.d14.example",
        "10.0.0.5",
        Verdict::Block,
        Layer::Model,
    );
    late.model_version = Some("m1".into());
    f.insert(&[late]).await;
    let (live, stale) = live_and_cached(&f, "24h").await;
    assert_eq!(live["total"], 121);
    assert_eq!(stale.unwrap()["total"], 120, "not refreshed yet");
    let report = cache
        .refresh(&f.state.store, &index, time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(report.refilled_minutes, 1, "{report:?}");
    let (live, cached) = live_and_cached(&f, "24h").await;
    assert_eq!(Some(&live), cached.as_ref(), "after the refill");

    // The 1 h preset has a sub-minute interval: aggregated from the documents.
    let (_, hour) = live_and_cached(&f, "1h").await;
    assert!(hour.is_none());
    // A filtered overview is never answered from the cache, and the API still answers it.
    let admin = f.admin().await;
    let r = f
        .get("/api/overview?range=24h&verdict=block", Some(&admin))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["total"], 46);
    // The API's 24 h overview (from the cache now) says the same.
    let r = f.get("/api/overview?range=24h", Some(&admin)).await.json();
    assert_eq!(r["total"], 121);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_needs_the_old_one_and_ends_the_other_sessions() {
    let f = Fixture::start().await;
    let alice = f.user("alice", "analyst").await;
    let other = f.login("alice", "alice-password-123").await;
    let change = |old: &str, new: &str| json!({"old_password": old, "new_password": new});

    f.post(
        "/api/me/password",
        Some(&alice),
        false,
        change("alice-password-123", "a-new-password-456"),
    )
    .await
    .problem(403, "csrf");
    let p = f
        .post(
            "/api/me/password",
            Some(&alice),
            true,
            change("wrong-password-000", "a-new-password-456"),
        )
        .await
        .problem(400, "bad-input");
    assert_eq!(p["field"], "old_password", "{p}");
    let p = f
        .post(
            "/api/me/password",
            Some(&alice),
            true,
            change("alice-password-123", "short"),
        )
        .await
        .problem(400, "bad-input");
    assert_eq!(p["field"], "new_password", "{p}");
    f.post("/api/me/password", None, true, change("x", "y"))
        .await
        .problem(401, "not-logged-in");

    let r = f
        .post(
            "/api/me/password",
            Some(&alice),
            true,
            change("alice-password-123", "a-new-password-456"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["other_sessions_ended"], 1);
    assert_eq!(f.get("/api/me", Some(&alice)).await.status, StatusCode::OK);
    f.get("/api/me", Some(&other))
        .await
        .problem(401, "not-logged-in");
    f.post(
        "/api/login",
        None,
        false,
        json!({"username": "alice", "password": "alice-password-123"}),
    )
    .await
    .problem(401, "login-failed");
    f.login("alice", "a-new-password-456").await;

    // The audit trail has the failure and the change, without any password.
    let admin = f.admin().await;
    let audit = f.get("/api/audit", Some(&admin)).await;
    let entries = audit.json()["entries"].as_array().unwrap().clone();
    let outcomes: Vec<&str> = entries
        .iter()
        .filter(|e| e["action"] == "password.change")
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["success", "failure"], "{entries:?}");
    assert!(!audit.body.contains("a-new-password-456"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_resets_a_password_and_lists_users() {
    let f = Fixture::start().await;
    let bob = f.user("bob", "viewer").await;
    let admin = f.admin().await;
    let reset = json!({"new_password": "reset-by-admin-789"});

    f.post("/api/users/bob/password", Some(&bob), true, reset.clone())
        .await
        .problem(403, "forbidden");
    f.get("/api/users", Some(&bob))
        .await
        .problem(403, "forbidden");
    f.post(
        "/api/users/nobody/password",
        Some(&admin),
        true,
        reset.clone(),
    )
    .await
    .problem(404, "not-found");
    let p = f
        .post(
            "/api/users/bob/password",
            Some(&admin),
            true,
            json!({"new_password": "short"}),
        )
        .await
        .problem(400, "bad-input");
    assert_eq!(p["field"], "new_password");

    let r = f
        .post("/api/users/bob/password", Some(&admin), true, reset)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["sessions_ended"], 1);
    f.get("/api/me", Some(&bob))
        .await
        .problem(401, "not-logged-in");
    f.login("bob", "reset-by-admin-789").await;

    let users = f.get("/api/users", Some(&admin)).await;
    assert_eq!(users.status, StatusCode::OK);
    let names: Vec<String> = users.json()["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["admin", "bob"]);
    assert!(!users.body.contains("argon2"), "no hashes: {}", users.body);
    let page = f.get("/account", Some(&admin)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(r#"id="reset-form""#), "{}", page.body);
    let audit = f.get("/api/audit", Some(&admin)).await.json();
    assert!(audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "password.reset" && e["target"] == "bob" && e["actor"] == "admin"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_page_has_a_risk_trend() {
    let f = Fixture::start().await;
    let mut events = Vec::new();
    for i in 0..8u64 {
        let verdict = if i < 2 {
            Verdict::Block
        } else {
            Verdict::Allow
        };
        let mut e = event(
            &format!("r-{i}"),
            30 + i,
            &format!("n{i}.risky.example"),
            "10.7.0.1",
            verdict,
            Layer::Model,
        );
        e.score = Some(if i < 2 { 0.9 } else { 0.1 });
        events.push(e);
    }
    f.insert(&events).await;
    let v = f.user("vic", "viewer").await;
    let c = f
        .get("/api/clients/10.7.0.1?range=1h", Some(&v))
        .await
        .json();
    let risk = c["risk"].as_array().unwrap();
    assert_eq!(risk.len(), c["timeline"].as_array().unwrap().len());
    let queries: u64 = risk.iter().map(|p| p["queries"].as_u64().unwrap()).sum();
    assert_eq!(queries, 8, "{c}");
    let busy: Vec<&Value> = risk.iter().filter(|p| p["queries"] != 0).collect();
    let flagged: f64 = busy
        .iter()
        .map(|p| p["flagged_share"].as_f64().unwrap() * p["queries"].as_f64().unwrap())
        .sum();
    assert!((flagged - 2.0).abs() < 1e-9, "{busy:?}");
    let max = busy
        .iter()
        .map(|p| p["max_score"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!((max - 0.9).abs() < 1e-6, "{busy:?}");
    assert!(risk
        .iter()
        .filter(|p| p["queries"] == 0)
        .all(|p| p["flagged_share"].is_null() && p["mean_score"].is_null()));
    let page = f.get("/clients/10.7.0.1?range=1h", Some(&v)).await;
    assert!(page.body.contains(r#"id="risk""#), "{}", page.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_pages_is_a_clear_message_and_expired_sessions_say_so() {
    let f = Fixture::start().await;
    let v = f.user("vic", "viewer").await;
    for (uri, says) in [
        ("/log?name_regex=a%5B1", "invalid regular expression"),
        (
            "/log?client=10.0.0.0%2F33",
            "neither an IP address nor a CIDR block",
        ),
        ("/overview?range=2w", "use 15m, 1h, 24h, 7d, or from"),
        (
            "/log?from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z",
            "must be after from",
        ),
    ] {
        let page = f.get(uri, Some(&v)).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(
            page.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{uri}"
        );
        assert!(page.body.contains(says), "{uri}: {}", page.body);
    }
    // An expired session: the page sends the browser to the login form, which says why.
    let past = (time::OffsetDateTime::now_utc() - time::Duration::minutes(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let token = "expired-page-token";
    let doc = json!({"username": "vic", "role": "viewer", "csrf_token": "c", "created_at": past, "expires_at": past});
    let id = dohguard_console::auth::token_id(token);
    let sessions = &f.state.store.indices.sessions;
    assert!(f.state.store.create(sessions, &id, &doc).await.unwrap());
    let expired = common::Login {
        cookie: format!("dohguard_session={token}"),
        csrf: "c".into(),
        set_cookie: String::new(),
    };
    let page = f.get("/log", Some(&expired)).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.headers[header::LOCATION], "/login?expired=1");
    let login = f.get("/login?expired=1", None).await;
    assert!(
        login.body.contains("Your session has expired"),
        "{}",
        login.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_serves_https_to_a_client_that_trusts_its_certificate() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let f = Fixture::start().await;
    // A self-signed end-entity certificate for localhost (CA:FALSE: rustls refuses a CA
    // certificate presented as the server's own).
    let (cert, key) = (f.dir.path().join("cert.pem"), f.dir.path().join("key.pem"));
    let openssl = dohguard_launcher::tools::find(dohguard_launcher::tools::Tool::Openssl).unwrap();
    let out = std::process::Command::new(openssl)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = dohguard_console::tls::TlsConfig {
        cert_file: cert.clone(),
        key_file: key.clone(),
    };
    let server = dohguard_console::tls::server_config(&config).unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listener = dohguard_console::tls::TlsListener::new(tcp, server).unwrap();
    let addr = axum::serve::Listener::local_addr(&listener).unwrap();
    let router = f.router.clone();
    let serving = tokio::spawn(async move { axum::serve(listener, router).await });

    // A client that does not trust the certificate fails the handshake...
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = |roots: rustls::RootCertStore| {
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    };
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let stranger = tokio_rustls::TlsConnector::from(client(rustls::RootCertStore::empty()));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let err = stranger.connect(name.clone(), tcp).await.unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");

    // ...one that does gets the console, and a plain-HTTP request gets no HTTP answer.
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(&cert).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let connector = tokio_rustls::TlsConnector::from(client(roots));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(b"GET /login HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    tls.read_to_string(&mut reply).await.unwrap_or_default();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("Log in"), "{reply}");

    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        plain.read_to_end(&mut buf),
    )
    .await;
    assert!(
        !String::from_utf8_lossy(&buf).contains("HTTP/1.1 200"),
        "plain HTTP must not be served on the TLS port"
    );
    serving.abort();
}
