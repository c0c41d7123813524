//! API tests on the router as a value, against a real osmem-server holding verdict documents
//! built through `dohguard-schema` (the same conversion the scorer uses).

mod common;

use std::collections::HashSet;

use axum::http::{header, StatusCode};
use common::{event, Fixture};
use dohguard_core::contract::Verdict;
use dohguard_schema::{Answer, DecisionEvent, Layer};
use serde_json::{json, Value};

/// 22 queries (and one gap marker, which is not a query):
/// - 5 deny-list blocks of `x0..x4.ads.test` from 10.0.0.1;
/// - 3 model blocks of `qwxzkjh.com` from 10.0.0.2 (score 0.97, model m1);
/// - 2 model monitors of `maybe-odd.net` from 10.0.0.2 (score 0.6, model m1);
/// - 10 model allows of `www.example.com` from 192.168.1.5 (5 A, 5 AAAA; model m1);
/// - 1 cache allow of `api.example.com` from 192.168.1.5;
/// - 1 malformed request from 10.0.0.1.
fn dataset() -> Vec<DecisionEvent> {
    let mut out = Vec::new();
    for i in 0..5 {
        let mut e = event(
            &format!("deny-{i}"),
            60 + i,
            &format!("x{i}.ads.test"),
            "10.0.0.1",
            Verdict::Block,
            Layer::DenyList,
        );
        e.rule = Some(".ads.test".into());
        out.push(e);
    }
    for i in 0..3 {
        let mut e = event(
            &format!("dga-{i}"),
            120 + i,
            "qwxzkjh.com",
            "10.0.0.2",
            Verdict::Block,
            Layer::Model,
        );
        e.score = Some(0.97);
        e.model_version = Some("m1".into());
        out.push(e);
    }
    for i in 0..2 {
        let mut e = event(
            &format!("mon-{i}"),
            180 + i,
            "maybe-odd.net",
            "10.0.0.2",
            Verdict::Monitor,
            Layer::Model,
        );
        e.score = Some(0.6);
        e.model_version = Some("m1".into());
        out.push(e);
    }
    for i in 0..10 {
        let mut e = event(
            &format!("ok-{i}"),
            240 + i,
            "www.example.com",
            "192.168.1.5",
            Verdict::Allow,
            Layer::Model,
        );
        e.score = Some(0.01);
        e.model_version = Some("m1".into());
        if i % 2 == 1 {
            e.qtype = Some("AAAA".into());
        }
        out.push(e);
    }
    let mut cached = event(
        "cache-0",
        300,
        "api.example.com",
        "192.168.1.5",
        Verdict::Allow,
        Layer::Cache,
    );
    cached.cached_layer = Some(Layer::Model);
    out.push(cached);
    let mut bad = event(
        "bad-0",
        30,
        "x",
        "10.0.0.1",
        Verdict::Allow,
        Layer::Malformed,
    );
    bad.name = None;
    bad.qtype = None;
    bad.verdict = None;
    bad.answer = Answer::Rejected {
        http_status: 400,
        reason: "bad base64".into(),
    };
    out.push(bad);
    out
}

async fn loaded() -> Fixture {
    let f = Fixture::start().await;
    f.insert(&dataset()).await;
    // A gap marker: not a query, so in no count and no log row.
    let gap = dohguard_schema::VerdictDocument::gap(
        time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap(),
        "vm1",
        7,
    );
    f.bulk(format!(
        "{}\n{}\n",
        json!({"create": {"_index": common::INDEX, "_id": "gap-vm1-1"}}),
        serde_json::to_string(&gap).unwrap()
    ))
    .await;
    f
}

fn count_of(buckets: &Value, key: &str) -> u64 {
    buckets
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["key"] == key)
        .unwrap_or_else(|| panic!("{key} not in {buckets}"))["count"]
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_creates_an_admin_whose_password_is_in_a_private_file() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::start().await;
    let path = &f.state.config.admin.password_file;
    let meta = std::fs::metadata(path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::read_to_string(path).unwrap().trim(),
        f.admin_password
    );
    assert!(f.admin_password.len() >= 20);
    // A second start finds the admin and creates nothing.
    assert_eq!(f.state.prepare().await.unwrap(), None);
    f.admin().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_sets_a_strict_http_only_cookie_and_bad_passwords_are_refused() {
    let f = Fixture::start().await;
    let admin = f.admin().await;
    assert!(
        admin.set_cookie.contains("HttpOnly"),
        "{}",
        admin.set_cookie
    );
    assert!(
        admin.set_cookie.contains("SameSite=Strict"),
        "{}",
        admin.set_cookie
    );
    let me = f.get("/api/me", Some(&admin)).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json()["role"], "admin");

    let bad = f
        .post(
            "/api/login",
            None,
            false,
            json!({"username": "admin", "password": "wrong-password"}),
        )
        .await;
    bad.problem(401, "login-failed");
    let nobody = f
        .post(
            "/api/login",
            None,
            false,
            json!({"username": "nobody", "password": "wrong-password"}),
        )
        .await;
    nobody.problem(401, "login-failed");
    // A form post (what a cross-site page could send) is not a login.
    let form = f
        .call(
            axum::http::Request::post("/api/login")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(axum::body::Body::from("username=admin&password=x"))
                .unwrap(),
        )
        .await;
    form.problem(400, "bad-request");
    f.get("/api/overview", None)
        .await
        .problem(401, "not-logged-in");

    // Logins, good and bad, are in the audit trail.
    let audit = f.get("/api/audit", Some(&admin)).await.json();
    let logins: Vec<&Value> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "login")
        .collect();
    assert!(
        logins
            .iter()
            .any(|e| e["outcome"] == "success" && e["actor"] == "admin"),
        "{audit}"
    );
    assert!(
        logins
            .iter()
            .any(|e| e["outcome"] == "failure" && e["actor"] == "nobody"),
        "{audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changes_need_the_csrf_token_and_the_role() {
    let f = Fixture::start().await;
    let analyst = f.user("ana", "analyst").await;
    let viewer = f.user("vic", "viewer").await;
    let label = json!({"domain": "qwxzkjh.com", "label": "malicious", "reason": "DGA-looking, seen from one host"});

    f.post("/api/labels", Some(&analyst), false, label.clone())
        .await
        .problem(403, "csrf");
    let mut wrong = analyst.clone();
    wrong.csrf = viewer.csrf.clone();
    f.post("/api/labels", Some(&wrong), true, label.clone())
        .await
        .problem(403, "csrf");
    let p = f
        .post("/api/labels", Some(&viewer), true, label.clone())
        .await
        .problem(403, "forbidden");
    assert!(p["detail"].as_str().unwrap().contains("analyst"), "{p}");
    f.post(
        "/api/users",
        Some(&analyst),
        true,
        json!({"username": "x", "role": "admin", "password": "long-enough-password"}),
    )
    .await
    .problem(403, "forbidden");

    let stored = f.post("/api/labels", Some(&analyst), true, label).await;
    assert_eq!(stored.status, StatusCode::CREATED, "{}", stored.body);
    let history = f
        .get("/api/labels?domain=qwxzkjh.com", Some(&viewer))
        .await
        .json();
    let labels = history["labels"].as_array().unwrap();
    assert_eq!(labels.len(), 1, "{history}");
    assert_eq!(labels[0]["label"], "malicious");
    assert_eq!(labels[0]["labelled_by"], "ana");
    assert_eq!(labels[0]["reason"], "DGA-looking, seen from one host");

    // Bad labels: a public suffix, no reason.
    f.post(
        "/api/labels",
        Some(&analyst),
        true,
        json!({"domain": "com", "label": "malicious", "reason": "x"}),
    )
    .await
    .problem(400, "bad-input");
    let p = f
        .post(
            "/api/labels",
            Some(&analyst),
            true,
            json!({"domain": "qwxzkjh.com", "label": "benign", "reason": "  "}),
        )
        .await
        .problem(400, "bad-input");
    assert_eq!(p["field"], "reason");

    let admin = f.admin().await;
    let audit = f.get("/api/audit", Some(&admin)).await.json();
    let entry = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "label")
        .expect("a label entry");
    assert_eq!(entry["actor"], "ana");
    assert_eq!(entry["target"], "qwxzkjh.com");
    f.get("/api/audit", Some(&analyst))
        .await
        .problem(403, "forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_refused_and_removed() {
    let f = Fixture::start().await;
    let token = "expired-token-for-the-test";
    let past = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    let past = past
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let doc = json!({"username": "admin", "role": "admin", "csrf_token": "c", "created_at": past, "expires_at": past});
    let sessions = &f.state.store.indices.sessions;
    let id = dohguard_console::auth::token_id(token);
    assert!(f.state.store.create(sessions, &id, &doc).await.unwrap());
    let login = common::Login {
        cookie: format!("dohguard_session={token}"),
        csrf: "c".into(),
        set_cookie: String::new(),
    };
    f.get("/api/overview", Some(&login))
        .await
        .problem(401, "session-expired");
    assert_eq!(f.state.store.get(sessions, &id).await.unwrap(), None);
    // A page sends the browser to the login form instead.
    let page = f.get("/overview", None).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.headers[header::LOCATION], "/login");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overview_numbers_match_the_documents() {
    let f = loaded().await;
    let viewer = f.user("vic", "viewer").await;
    let r = f.get("/api/overview?range=1h", Some(&viewer)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let o = r.json();
    assert_eq!(o["total"], 22, "{o}");
    assert_eq!(count_of(&o["by_verdict"], "block"), 8);
    assert_eq!(count_of(&o["by_verdict"], "monitor"), 2);
    assert_eq!(count_of(&o["by_verdict"], "allow"), 11);
    assert_eq!(count_of(&o["top_blocked_domains"], "ads.test"), 5);
    assert_eq!(count_of(&o["top_blocked_domains"], "qwxzkjh.com"), 3);
    assert_eq!(count_of(&o["top_monitored_domains"], "maybe-odd.net"), 2);
    assert_eq!(count_of(&o["top_allowed_domains"], "example.com"), 11);
    assert_eq!(count_of(&o["top_clients_blocked"], "10.0.0.1"), 5);
    assert_eq!(count_of(&o["top_clients_blocked"], "10.0.0.2"), 3);
    assert_eq!(count_of(&o["top_clients_monitored"], "10.0.0.2"), 2);
    assert_eq!(o["unique_domains"], 4);
    assert_eq!(o["unique_clients"], 3);
    assert_eq!(count_of(&o["models"], "m1"), 15);
    let timeline = o["timeline"].as_array().unwrap();
    let sum = |k: &str| timeline.iter().map(|p| p[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!(
        (sum("block"), sum("monitor"), sum("allow")),
        (8, 2, 11),
        "{o}"
    );

    // Every number links to the log, and the log agrees with it.
    let href = o["top_blocked_domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["key"] == "ads.test")
        .unwrap()["href"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(href.starts_with("/log?range=1h&"), "{href}");
    let page = f
        .get(&href.replacen("/log", "/api/log", 1), Some(&viewer))
        .await
        .json();
    assert_eq!(page["total"], 5, "{href}: {page}");

    // An older range holds none of them.
    let old = f
        .get(
            "/api/overview?from=2020-01-01T00:00:00Z&to=2020-01-02T00:00:00Z",
            Some(&viewer),
        )
        .await
        .json();
    assert_eq!(old["total"], 0);
    // The page renders the same numbers.
    let html = f.get("/overview?range=1h", Some(&viewer)).await;
    assert_eq!(html.status, StatusCode::OK);
    assert!(
        html.body.contains(r#"data-testid="total">22<"#),
        "{}",
        html.body
    );
}

async fn total(f: &Fixture, who: &common::Login, query: &str) -> u64 {
    let r = f
        .get(&format!("/api/log?range=1h&{query}"), Some(who))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.body);
    let page = r.json();
    let rows = page["rows"].as_array().unwrap().len() as u64;
    let total = page["total"].as_u64().unwrap();
    assert_eq!(rows, total.min(50), "{query}");
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_filters_and_negation() {
    let f = loaded().await;
    let v = f.user("vic", "viewer").await;
    assert_eq!(total(&f, &v, "").await, 22);
    assert_eq!(total(&f, &v, "verdict=block").await, 8);
    assert_eq!(total(&f, &v, "verdict=block,monitor").await, 10);
    assert_eq!(
        total(&f, &v, "verdict=!allow").await,
        11,
        "negation keeps the malformed request"
    );
    assert_eq!(total(&f, &v, "client=10.0.0.0/24").await, 11);
    assert_eq!(total(&f, &v, "client=!10.0.0.0/24").await, 11);
    assert_eq!(total(&f, &v, "client=10.0.0.2").await, 5);
    assert_eq!(total(&f, &v, "name=ads").await, 5);
    assert_eq!(total(&f, &v, "name_suffix=example.com").await, 11);
    assert_eq!(total(&f, &v, "name_suffix=!example.com").await, 11);
    assert_eq!(
        total(&f, &v, "name_regex=x%5B0-2%5D%5C.ads%5C.test").await,
        3
    ); // x[0-2]\.ads\.test
    assert_eq!(total(&f, &v, "domain=example.com&qtype=aaaa").await, 5);
    assert_eq!(total(&f, &v, "layer=deny_list").await, 5);
    assert_eq!(total(&f, &v, "layer=cache").await, 1);
    assert_eq!(total(&f, &v, "rcode=NXDOMAIN").await, 8);
    assert_eq!(total(&f, &v, "model=m1&score_min=0.5").await, 5);
    assert_eq!(total(&f, &v, "score_max=0.1").await, 10);
    // Rows carry what the table shows.
    let page = f
        .get("/api/log?range=1h&layer=deny_list&size=1", Some(&v))
        .await
        .json();
    let row = &page["rows"][0];
    assert_eq!(row["rule"], ".ads.test");
    assert_eq!(row["registered_domain"], "ads.test");
    assert_eq!(row["rcode"], "NXDOMAIN");
    assert_eq!(row["client"], "10.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_filters_are_problems_naming_the_parameter() {
    let f = loaded().await;
    let v = f.user("vic", "viewer").await;
    for (query, field) in [
        ("name_regex=a%5B1", "name_regex"),
        ("name_regex=%5Eabc", "name_regex"),
        ("client=10.0.0.0%2F33", "client"),
        ("client=not-an-ip", "client"),
        ("range=2w", "range"),
        ("from=yesterday", "from"),
        ("from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z", "to"),
        ("verdict=evil", "verdict"),
        ("verdikt=block", "verdikt"),
        ("size=0", "size"),
        ("after=garbage", "after"),
    ] {
        let p = f
            .get(&format!("/api/log?{query}"), Some(&v))
            .await
            .problem(400, "bad-input");
        assert_eq!(p["field"], field, "{query}: {p}");
    }
    let p = f
        .get("/api/overview?client=300.1.1.1", Some(&v))
        .await
        .problem(400, "bad-input");
    assert_eq!(p["field"], "client");
    f.get("/api/log/export?format=xml", Some(&v))
        .await
        .problem(400, "bad-input");
}

fn allows(n: u64) -> Vec<DecisionEvent> {
    (0..n)
        .map(|i| {
            event(
                &format!("p-{i:04}"),
                10 + i,
                &format!("h{i}.example.org"),
                "10.9.0.1",
                Verdict::Allow,
                Layer::Model,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_paging_with_search_after_visits_every_row_once() {
    let f = Fixture::start().await;
    f.insert(&allows(130)).await;
    let v = f.user("vic", "viewer").await;
    let mut seen = HashSet::new();
    let mut sizes = Vec::new();
    let mut uri = "/api/log?range=1h&size=50".to_owned();
    let mut last_ts = String::from("9999");
    loop {
        let page = f.get(&uri, Some(&v)).await.json();
        assert_eq!(page["total"], 130);
        let rows = page["rows"].as_array().unwrap();
        sizes.push(rows.len());
        for r in rows {
            let ts = r["timestamp"].as_str().unwrap().to_owned();
            assert!(ts <= last_ts, "newest first");
            last_ts = ts;
            assert!(
                seen.insert(r["id"].as_str().unwrap().to_owned()),
                "row {} twice",
                r["id"]
            );
        }
        match page["next_href"].as_str() {
            Some(next) => uri = next.replacen("/log", "/api/log", 1),
            None => break,
        }
    }
    assert_eq!(sizes, vec![50, 50, 30]);
    assert_eq!(seen.len(), 130);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_streams_every_filtered_row() {
    let f = Fixture::start_with(|c| c.log.export_batch = 40).await;
    let mut events = allows(130);
    events.push(event(
        "blocked-1",
        5,
        "evil.example.net",
        "10.9.0.2",
        Verdict::Block,
        Layer::DenyList,
    ));
    f.insert(&events).await;
    let v = f.user("vic", "viewer").await;
    let csv = f
        .get(
            "/api/log/export?format=csv&range=1h&verdict=allow",
            Some(&v),
        )
        .await;
    assert_eq!(csv.status, StatusCode::OK, "{}", csv.body);
    assert_eq!(csv.headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(
        lines.len(),
        1 + 130,
        "header + one line per row across 4 store pages"
    );
    assert!(lines[0].starts_with("timestamp,id,client,name"));
    assert!(!csv.body.contains("evil.example.net"));
    let nd = f
        .get("/api/log/export?format=ndjson&range=1h", Some(&v))
        .await;
    let docs: Vec<Value> = nd
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), 131);
    let ids: HashSet<&str> = docs
        .iter()
        .map(|d| d["event"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 131);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_verdict_explained() {
    let f = loaded().await;
    let v = f.user("vic", "viewer").await;
    let r = f.get("/api/verdicts/dga-0", Some(&v)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let d = r.json();
    assert_eq!(d["why"]["verdict"], "block");
    assert_eq!(d["why"]["layer"], "model");
    assert_eq!(d["why"]["model_version"], "m1");
    assert!((d["why"]["score"].as_f64().unwrap() - 0.97).abs() < 1e-6);
    assert_eq!(d["why"]["answer"]["kind"], "blocked");
    assert_eq!(d["why"]["response_code"], "NXDOMAIN");
    assert!(
        d["why"]["thresholds"]["unavailable"].is_string(),
        "no scorer configured: {d}"
    );
    assert_eq!(d["domain"]["registered_domain"], "qwxzkjh.com");
    assert_eq!(d["domain"]["queries"], 3);
    assert_eq!(d["domain"]["clients"], 1);
    let deny = f.get("/api/verdicts/deny-0", Some(&v)).await.json();
    assert_eq!(deny["why"]["rule"], ".ads.test");
    assert_eq!(deny["why"]["ruleset"], "deny_list");
    f.get("/api/verdicts/no-such-id", Some(&v))
        .await
        .problem(404, "not-found");
    let page = f.get("/verdicts/dga-0", Some(&v)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("qwxzkjh.com") && page.body.contains("0.97"),
        "{}",
        page.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_page_shows_clients_subdomains_verdicts_and_labels() {
    let f = loaded().await;
    let analyst = f.user("ana", "analyst").await;
    let r = f
        .get("/api/domains/example.com?range=1h", Some(&analyst))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let d = r.json();
    assert_eq!(d["total"], 11, "{d}");
    assert_eq!(d["unique_clients"], 1);
    assert_eq!(count_of(&d["clients"], "192.168.1.5"), 11);
    assert_eq!(d["unique_subdomains"], 2);
    assert_eq!(count_of(&d["subdomains"], "www"), 10);
    assert_eq!(count_of(&d["subdomains"], "api"), 1);
    assert_eq!(count_of(&d["verdicts"], "allow"), 11);
    let timeline = d["timeline"].as_array().unwrap();
    assert_eq!(
        timeline
            .iter()
            .map(|p| p["allow"].as_u64().unwrap())
            .sum::<u64>(),
        11
    );
    assert!(
        d["first_seen"].is_string() && d["last_seen"].is_string(),
        "{d}"
    );
    // The client link lists that client's queries of this domain.
    let href = d["clients"][0]["href"]
        .as_str()
        .unwrap()
        .replacen("/log", "/api/log", 1);
    assert_eq!(
        f.get(&href, Some(&analyst)).await.json()["total"],
        11,
        "{href}"
    );

    let labelled = f
        .post(
            "/api/labels",
            Some(&analyst),
            true,
            json!({"domain": "example.com", "label": "benign", "reason": "our own"}),
        )
        .await;
    assert_eq!(labelled.status, StatusCode::CREATED);
    let d = f
        .get("/api/domains/example.com?range=1h", Some(&analyst))
        .await
        .json();
    assert_eq!(d["labels"][0]["label"], "benign", "{d}");

    let page = f.get("/domains/example.com?range=1h", Some(&analyst)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains(r#"data-testid="unique-subdomains">2<"#),
        "{}",
        page.body
    );
    f.get("/api/domains/com", Some(&analyst))
        .await
        .problem(400, "bad-input");
    f.get("/api/domains/www.example.com", Some(&analyst))
        .await
        .problem(400, "bad-input");
    // A page with bad input shows the same message, with the same status.
    let bad = f.get("/log?client=10.0.0.0%2F33", Some(&analyst)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.body.contains("neither an IP address nor a CIDR block"),
        "{}",
        bad.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_page_shows_its_domains_and_the_new_domains_it_found_first() {
    let f = loaded().await;
    // 10.0.0.9 asks for a name nobody asked for before (the upstream says NXDOMAIN) and for
    // example.com, which 192.168.1.5 asked for minutes earlier.
    let mut nx = event(
        "nx-0",
        5,
        "nx1.gibberish-a.com",
        "10.0.0.9",
        Verdict::Allow,
        Layer::Model,
    );
    nx.answer = Answer::Forwarded {
        rcode: Some(3),
        answers: Some(0),
        http_status: None,
    };
    let known = event(
        "known-0",
        5,
        "www.example.com",
        "10.0.0.9",
        Verdict::Allow,
        Layer::Cache,
    );
    f.insert(&[nx, known]).await;
    let v = f.user("vic", "viewer").await;

    let c = f
        .get("/api/clients/10.0.0.9?range=1h", Some(&v))
        .await
        .json();
    assert_eq!(c["total"], 2, "{c}");
    assert_eq!(c["unique_domains"], 2);
    let first: Vec<&str> = c["first_seen_domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["key"].as_str().unwrap())
        .collect();
    assert_eq!(first, ["gibberish-a.com"], "{c}");
    assert_eq!(c["first_seen_nxdomain"], 1);
    assert_eq!(c["first_seen_nxdomain_rate"], 1.0);

    let c = f
        .get("/api/clients/10.0.0.2?range=1h", Some(&v))
        .await
        .json();
    assert_eq!(c["total"], 5, "{c}");
    assert_eq!(count_of(&c["blocked_domains"], "qwxzkjh.com"), 3);
    assert_eq!(count_of(&c["monitored_domains"], "maybe-odd.net"), 2);
    assert_eq!(
        c["first_seen_domains"].as_array().unwrap().len(),
        2,
        "nobody else asked for them: {c}"
    );
    assert_eq!(
        c["first_seen_nxdomain"], 0,
        "a block answer's NXDOMAIN is not the upstream's"
    );

    let page = f.get("/clients/10.0.0.9?range=1h", Some(&v)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("gibberish-a.com") && page.body.contains("100%"),
        "{}",
        page.body
    );
    let p = f
        .get("/api/clients/10.0.0.0%2F8", Some(&v))
        .await
        .problem(400, "bad-input");
    assert_eq!(p["field"], "client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vetting_queue_ranks_uncertain_domains_and_bulk_labels_empty_it() {
    let f = loaded().await;
    // A suspicious allow: score over vetting.suspicious_allow (0.3), two clients.
    let mut odd = event(
        "sus-0",
        50,
        "a.suspicious-ok.org",
        "10.0.0.5",
        Verdict::Allow,
        Layer::Model,
    );
    odd.score = Some(0.45);
    let mut odd2 = event(
        "sus-1",
        51,
        "b.suspicious-ok.org",
        "10.0.0.6",
        Verdict::Allow,
        Layer::Model,
    );
    odd2.score = Some(0.45);
    // A confident block (over vetting.confident_block): not in the queue.
    let mut sure = event(
        "sure-0",
        52,
        "zzqxjv.net",
        "10.0.0.5",
        Verdict::Block,
        Layer::Model,
    );
    sure.score = Some(0.9999);
    f.insert(&[odd, odd2, sure]).await;
    let analyst = f.user("ana", "analyst").await;
    let viewer = f.user("vic", "viewer").await;

    let queue = f.get("/api/vetting?range=1h", Some(&viewer)).await.json();
    let order: Vec<&str> = queue["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["domain"].as_str().unwrap())
        .collect();
    // suspicious-ok.org: 0.9 x 2 x 2 = 3.6; maybe-odd.net: 0.8 x 2 x 1 = 1.6;
    // qwxzkjh.com: 0.06 x 3 x 1 = 0.18. Allowed example.com (score 0.01) and the confident
    // block are not candidates; deny-list blocks are not the model's.
    assert_eq!(
        order,
        ["suspicious-ok.org", "maybe-odd.net", "qwxzkjh.com"],
        "{queue}"
    );
    assert_eq!(queue["items"][0]["clients"], 2);
    assert_eq!(queue["items"][1]["monitor"], 2);

    let bulk = json!({"domains": ["maybe-odd.net", "qwxzkjh.com"], "label": "malicious", "reason": "DGA family X"});
    f.post("/api/labels/bulk", Some(&viewer), true, bulk.clone())
        .await
        .problem(403, "forbidden");
    // One bad domain: nothing is stored.
    let bad = json!({"domains": ["maybe-odd.net", "com"], "label": "malicious", "reason": "x"});
    f.post("/api/labels/bulk", Some(&analyst), true, bad)
        .await
        .problem(400, "bad-input");
    assert_eq!(
        f.get("/api/vetting?range=1h", Some(&viewer)).await.json()["items"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    let r = f.post("/api/labels/bulk", Some(&analyst), true, bulk).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.json()["labelled"], 2);
    let queue = f.get("/api/vetting?range=1h", Some(&viewer)).await.json();
    let order: Vec<&str> = queue["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["domain"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        ["suspicious-ok.org"],
        "labelled domains leave the queue"
    );
    let labels = f
        .get("/api/labels?domain=qwxzkjh.com", Some(&viewer))
        .await
        .json();
    assert_eq!(labels["labels"][0]["labelled_by"], "ana");
    assert_eq!(labels["labels"][0]["reason"], "DGA family X");

    let page = f.get("/vetting?range=1h", Some(&analyst)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains(r#"data-domain="suspicious-ok.org""#),
        "{}",
        page.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_cut_off_by_the_store_is_a_failed_transfer_not_a_short_file() {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let mut f = Fixture::start_with(|c| c.log.export_batch = 40).await;
    f.insert(&allows(130)).await;
    let v = f.user("vic", "viewer").await;
    let request = axum::http::Request::get("/api/log/export?format=ndjson&range=1h")
        .header(header::COOKIE, &v.cookie)
        .body(axum::body::Body::empty())
        .unwrap();
    let response = f.router.clone().oneshot(request).await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the query was checked before the 200"
    );
    // The store goes away before the first page is read.
    tokio::task::block_in_place(|| f.osmem.process().stop());
    let body = response.into_body().collect().await;
    assert!(
        body.is_err(),
        "the transfer must fail, not end as if complete"
    );
    // And the API says so plainly afterwards.
    f.get("/api/log?range=1h", Some(&v))
        .await
        .problem(502, "store-unavailable");
}
