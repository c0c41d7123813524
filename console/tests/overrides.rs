//! Overrides on the router as a value, against a real osmem-server: analysts create and
//! remove them (who, when, why, audited), viewers are refused, bad input stores nothing, and
//! the filter's feed answers with the token only, with a version that changes on every
//! change and 304 when current.

mod common;

use axum::{
    body::Body,
    http::{header, Request, StatusCode},
};
use common::{Fixture, Login};
use serde_json::json;

const TOKEN: &str = "feed-token-0123456789abcdef";

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.keep().join("feed-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    Fixture::start_with(|c| c.overrides.feed_token_file = token_file).await
}

async fn feed(f: &Fixture, since: Option<u64>, token: Option<&str>) -> common::Reply {
    let uri = match since {
        Some(v) => format!("/v1/overrides?since={v}"),
        None => "/v1/overrides".to_owned(),
    };
    let mut req = Request::get(uri);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    f.call(req.body(Body::empty()).unwrap()).await
}

async fn delete(f: &Fixture, id: &str, who: &Login) -> common::Reply {
    let req = Request::delete(format!("/api/overrides/{id}"))
        .header(header::COOKIE, &who.cookie)
        .header("x-csrf-token", &who.csrf);
    f.call(req.body(Body::empty()).unwrap()).await
}

async fn count(f: &Fixture) -> usize {
    let admin = f.admin().await;
    f.get("/api/overrides", Some(&admin)).await.json()["overrides"]
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analysts_create_and_remove_overrides_and_the_feed_follows() {
    let f = fixture().await;
    let analyst = f.user("ana", "analyst").await;
    let viewer = f.user("vic", "viewer").await;

    // Empty at first: version 0, and 304 for a filter that has it.
    feed(&f, None, None).await.problem(401, "feed-token");
    feed(&f, None, Some("wrong-token-0123456789"))
        .await
        .problem(401, "feed-token");
    let empty = feed(&f, Some(0), Some(TOKEN)).await;
    assert_eq!(empty.status, StatusCode::NOT_MODIFIED);

    let allow = json!({"action": "allow", "match": "exact", "name": "Ads.Example.TEST.",
        "reason": "the marketing site, checked by hand"});
    let p = f
        .post("/api/overrides", Some(&viewer), true, allow.clone())
        .await
        .problem(403, "forbidden");
    assert!(p["detail"].as_str().unwrap().contains("analyst"), "{p}");
    f.post("/api/overrides", Some(&analyst), false, allow.clone())
        .await
        .problem(403, "csrf");
    let made = f.post("/api/overrides", Some(&analyst), true, allow).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let made = made.json();
    assert_eq!(made["name"], "ads.example.test");
    assert_eq!(made["created_by"], "ana");
    let id = made["id"].as_str().unwrap().to_owned();

    let set = feed(&f, Some(0), Some(TOKEN)).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    let set = set.json();
    let v1 = set["version"].as_u64().unwrap();
    assert!(v1 > 0);
    assert_eq!(set["overrides"][0]["id"], id.as_str());
    assert_eq!(set["overrides"][0]["match"], "exact");
    assert_eq!(
        feed(&f, Some(v1), Some(TOKEN)).await.status,
        StatusCode::NOT_MODIFIED
    );

    // A scoped, expiring deny; then the allow is removed: each change is a new version.
    let deny = json!({"action": "deny", "match": "registered_domain", "name": "example.test",
        "clients": ["10.1.2.3/8", "spiffe://mesh/ns/ci/sa/runner"], "expires_in": "1h",
        "reason": "incident 42"});
    let r = f.post("/api/overrides", Some(&analyst), true, deny).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        r.json()["clients"],
        json!(["10.0.0.0/8", "spiffe://mesh/ns/ci/sa/runner"])
    );
    let set = feed(&f, Some(v1), Some(TOKEN)).await.json();
    let v2 = set["version"].as_u64().unwrap();
    assert!(v2 > v1);
    assert_eq!(set["overrides"].as_array().unwrap().len(), 2);

    delete(&f, &id, &viewer).await.problem(403, "forbidden");
    let removed = delete(&f, &id, &analyst).await;
    assert_eq!(removed.status, StatusCode::OK, "{}", removed.body);
    assert_eq!(removed.json()["removed_by"], "ana");
    delete(&f, &id, &analyst).await.problem(400, "bad-input");
    delete(&f, "no-such-id", &analyst)
        .await
        .problem(404, "not-found");
    let set = feed(&f, Some(v2), Some(TOKEN)).await.json();
    assert!(set["version"].as_u64().unwrap() > v2);
    let ids: Vec<&str> = set["overrides"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert!(!ids.contains(&id.as_str()), "{set}");

    // The list keeps the removed one (who removed it), and the audit trail has all three.
    let list = f.get("/api/overrides", Some(&viewer)).await.json();
    let statuses: Vec<&str> = list["overrides"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["active", "removed"]);
    let admin = f.admin().await;
    let audit = f.get("/api/audit", Some(&admin)).await.json();
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .filter(|a| a.starts_with("override"))
        .collect();
    assert_eq!(
        actions,
        ["override.remove", "override.create", "override.create"]
    );
    // The page: analysts get the form, viewers do not.
    let page = f.get("/overrides", Some(&analyst)).await;
    assert!(page.body.contains("id=\"override-new\""));
    let page = f.get("/overrides", Some(&viewer)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("id=\"override-new\""));
    assert!(page.body.contains("incident 42"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_overrides_are_refused_and_store_nothing() {
    let f = fixture().await;
    let analyst = f.user("ana", "analyst").await;
    let ok =
        json!({"action": "deny", "match": "suffix", "name": "cdn.example.test", "reason": "r"});
    for (change, field, needle) in [
        (json!({"name": "com"}), "name", "public suffix"),
        (json!({"name": "github.io"}), "name", "public suffix"),
        (
            json!({"match": "registered_domain", "name": "a.example.com"}),
            "name",
            "registered domain",
        ),
        (json!({"name": "bad..name"}), "name", ""),
        (json!({"reason": "  "}), "reason", "required"),
        (json!({"clients": ["10.0.0.0/33"]}), "clients", ""),
        (json!({"expires_in": "soon"}), "expires_in", ""),
        (
            json!({"expires_at": "2001-01-01T00:00:00Z"}),
            "expires_at",
            "past",
        ),
    ] {
        let mut body = ok.clone();
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        let p = f
            .post("/api/overrides", Some(&analyst), true, body.clone())
            .await
            .problem(400, "bad-input");
        assert_eq!(p["field"], field, "{body}: {p}");
        assert!(p["detail"].as_str().unwrap().contains(needle), "{p}");
    }
    let mut unknown = ok.clone();
    unknown["extra"] = json!(1);
    f.post("/api/overrides", Some(&analyst), true, unknown)
        .await
        .problem(400, "bad-request");
    assert_eq!(count(&f).await, 0, "nothing was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_file_the_feed_is_off() {
    let f = Fixture::start().await;
    feed(&f, Some(0), Some(TOKEN))
        .await
        .problem(404, "not-found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyst_flushes_the_verdict_cache_through_the_feed() {
    let f = fixture().await;
    let analyst = f.user("ana", "analyst").await;
    let viewer = f.user("vic", "viewer").await;
    let before = feed(&f, None, Some(TOKEN)).await.json();
    assert_eq!(before["cache_generation"], 0, "{before}");
    let v0 = before["version"].as_u64().unwrap();

    let why = json!({"reason": "a bad model version cached block verdicts"});
    f.post("/api/cache/flush", Some(&viewer), true, why.clone())
        .await
        .problem(403, "forbidden");
    f.post("/api/cache/flush", Some(&analyst), false, why.clone())
        .await
        .problem(403, "csrf");
    f.post(
        "/api/cache/flush",
        Some(&analyst),
        true,
        json!({"reason": "  "}),
    )
    .await
    .problem(400, "bad-input");
    let set = feed(&f, Some(v0), Some(TOKEN)).await;
    assert_eq!(
        set.status,
        StatusCode::NOT_MODIFIED,
        "a refused flush changes nothing"
    );

    let flushed = f.post("/api/cache/flush", Some(&analyst), true, why).await;
    assert_eq!(flushed.status, StatusCode::ACCEPTED, "{}", flushed.body);
    let generation = flushed.json()["cache_generation"].as_u64().unwrap();
    assert!(generation > v0);
    let set = feed(&f, Some(v0), Some(TOKEN)).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    let set = set.json();
    assert_eq!(set["cache_generation"], generation, "{set}");
    assert_eq!(set["version"], generation, "{set}");

    // An override made after the flush keeps it, at a newer version.
    let deny = json!({"action": "deny", "match": "exact", "name": "x.example.test", "reason": "r"});
    let r = f.post("/api/overrides", Some(&analyst), true, deny).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let set = feed(&f, Some(generation), Some(TOKEN)).await.json();
    assert!(set["version"].as_u64().unwrap() > generation, "{set}");
    assert_eq!(set["cache_generation"], generation, "{set}");

    // A second flush is a new generation; both are in the audit trail with who and why.
    let again = f
        .post(
            "/api/cache/flush",
            Some(&analyst),
            true,
            json!({"reason": "again"}),
        )
        .await
        .json();
    assert!(again["cache_generation"].as_u64().unwrap() > set["version"].as_u64().unwrap());
    let listed = f.get("/api/overrides", Some(&viewer)).await.json();
    assert_eq!(
        listed["cache_generation"], again["cache_generation"],
        "{listed}"
    );
    let admin = f.admin().await;
    let audit = f.get("/api/audit", Some(&admin)).await.json();
    let flushes: Vec<(&str, &str)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "cache.flush")
        .map(|e| (e["actor"].as_str().unwrap(), e["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        flushes,
        [
            ("ana", "again"),
            ("ana", "a bad model version cached block verdicts")
        ]
    );
    let page = f.get("/overrides", Some(&analyst)).await;
    assert!(
        page.body.contains("id=\"cache-flush\""),
        "analysts get the button"
    );
    assert!(page.body.contains("cache last flushed"), "{}", page.body);
    let page = f.get("/overrides", Some(&viewer)).await;
    assert!(!page.body.contains("id=\"cache-flush\""));
}
