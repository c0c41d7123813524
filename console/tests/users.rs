//! Disabling and enabling users, on the router as a value against a real osmem-server: roles
//! and CSRF, the disabled user's sessions ending at once and their login refused with a clear
//! message, the last enabled admin kept, re-enabling, the audit trail, the admin page; and an
//! existing users index (created before the field existed) getting the new fields at start.

mod common;

use axum::http::StatusCode;
use common::Fixture;
use dohguard_console::store::Store;
use serde_json::{json, Value};

fn audit_entries(audit: &Value, action: &str) -> Vec<(String, String, String)> {
    audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action)
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_owned(),
                e["target"].as_str().unwrap().to_owned(),
                e["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_user_cannot_log_in_and_their_sessions_end() {
    let f = Fixture::start().await;
    let bob = f.user("bob", "analyst").await;
    let bob_again = f.login("bob", "bob-password-123").await;
    let admin = f.admin().await;

    // Only admins, and only with the CSRF token.
    f.post("/api/users/bob/disable", Some(&bob), true, json!({}))
        .await
        .problem(403, "forbidden");
    f.post("/api/users/bob/disable", Some(&admin), false, json!({}))
        .await
        .problem(403, "csrf");
    f.post("/api/users/nobody/disable", Some(&admin), true, json!({}))
        .await
        .problem(404, "not-found");
    assert_eq!(f.get("/api/me", Some(&bob)).await.status, StatusCode::OK);

    let r = f
        .post("/api/users/bob/disable", Some(&admin), true, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["disabled"], true);
    assert_eq!(r.json()["sessions_ended"], 2);
    // Both of bob's sessions ended at once.
    for s in [&bob, &bob_again] {
        f.get("/api/me", Some(s))
            .await
            .problem(401, "not-logged-in");
    }
    // The right password gets a clear refusal; a wrong one the usual answer.
    let p = f
        .post(
            "/api/login",
            None,
            false,
            json!({"username": "bob", "password": "bob-password-123"}),
        )
        .await
        .problem(403, "account-disabled");
    assert!(p["detail"].as_str().unwrap().contains("disabled"), "{p}");
    f.post(
        "/api/login",
        None,
        false,
        json!({"username": "bob", "password": "wrong-password-123"}),
    )
    .await
    .problem(401, "login-failed");
    // Again: nothing changes.
    f.post("/api/users/bob/disable", Some(&admin), true, json!({}))
        .await
        .problem(409, "conflict");

    // The list and the admin page say so.
    let users = f.get("/api/users", Some(&admin)).await.json();
    let bob_row = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "bob")
        .cloned()
        .unwrap();
    assert_eq!(bob_row["disabled"], true, "{bob_row}");
    assert_eq!(bob_row["status_changed_by"], "admin", "{bob_row}");
    assert!(users.to_string().find("argon2").is_none());
    let page = f.get("/account", Some(&admin)).await;
    assert!(
        page.body
            .contains(r#"data-user-status="enable" data-username="bob""#),
        "{}",
        page.body
    );
    assert!(page
        .body
        .contains(r#"data-user-status="disable" data-username="admin""#));

    // Enabled again, bob logs in.
    let r = f
        .post("/api/users/bob/enable", Some(&admin), true, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["disabled"], false);
    let bob = f.login("bob", "bob-password-123").await;
    assert_eq!(f.get("/api/me", Some(&bob)).await.status, StatusCode::OK);
    f.post("/api/users/bob/enable", Some(&admin), true, json!({}))
        .await
        .problem(409, "conflict");

    let audit = f.get("/api/audit", Some(&admin)).await.json();
    let a = |actor: &str, target: &str, outcome: &str| {
        (actor.to_owned(), target.to_owned(), outcome.to_owned())
    };
    let mut disables = audit_entries(&audit, "user.disable");
    disables.sort();
    assert_eq!(
        disables,
        [a("admin", "bob", "failure"), a("admin", "bob", "success")]
    );
    let mut enables = audit_entries(&audit, "user.enable");
    enables.sort();
    assert_eq!(
        enables,
        [a("admin", "bob", "failure"), a("admin", "bob", "success")]
    );
    assert!(audit_entries(&audit, "login").contains(&a("bob", "bob", "failure")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_enabled_admin_cannot_be_disabled() {
    let f = Fixture::start().await;
    let admin = f.admin().await;
    let p = f
        .post("/api/users/admin/disable", Some(&admin), true, json!({}))
        .await
        .problem(409, "conflict");
    assert!(
        p["detail"].as_str().unwrap().contains("last enabled admin"),
        "{p}"
    );
    assert_eq!(f.get("/api/me", Some(&admin)).await.status, StatusCode::OK);

    // With a second admin, the first may go; then the second is the last one.
    let carol = f.user("carol", "admin").await;
    let r = f
        .post("/api/users/admin/disable", Some(&carol), true, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    f.get("/api/me", Some(&admin))
        .await
        .problem(401, "not-logged-in");
    f.post("/api/users/carol/disable", Some(&carol), true, json!({}))
        .await
        .problem(409, "conflict");
    // A disabled admin does not count: enabling one lets the other be disabled.
    let r = f
        .post("/api/users/admin/enable", Some(&carol), true, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = f
        .post("/api/users/carol/disable", Some(&carol), true, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    f.get("/api/me", Some(&carol))
        .await
        .problem(401, "not-logged-in");
    let admin = f.admin().await;
    let audit = f.get("/api/audit", Some(&admin)).await.json();
    let refused = audit_entries(&audit, "user.disable")
        .into_iter()
        .filter(|(_, _, outcome)| outcome == "failure")
        .count();
    assert_eq!(refused, 2, "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_users_index_gets_the_new_fields_at_start() {
    let f = Fixture::start().await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    // The users mapping as it was before users could be disabled.
    let old = json!({"mappings": {"dynamic": "strict", "properties": {
        "username": {"type": "keyword"}, "role": {"type": "keyword"},
        "password_hash": {"type": "keyword", "index": false},
        "created_at": {"type": "date"}, "created_by": {"type": "keyword"}}}});
    let url = format!("{}/old-users", f.osmem.url());
    let r = http.put(&url).json(&old).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let mut config = (*f.state.config).clone();
    config.elasticsearch.index_prefix = "old".into();
    let store = Store::new(&config.elasticsearch).unwrap();
    let doc = json!({"username": "dave", "role": "viewer", "password_hash": "x",
                     "created_at": "2026-12-01T00:00:00Z", "created_by": "admin",
                     "disabled": true});
    assert!(
        store.put("old-users", "dave", &doc).await.is_err(),
        "the strict old mapping refuses the new field"
    );
    store.ensure_indices().await.unwrap();
    store.put("old-users", "dave", &doc).await.unwrap();
    assert_eq!(
        store.get("old-users", "dave").await.unwrap().unwrap()["disabled"],
        true
    );
}
