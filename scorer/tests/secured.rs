//! The sink against a secured Elasticsearch: real Envoy terminating TLS with a test CA in front
//! of a real osmem-server and checking the credential (`common::front`). A wrong key is refused
//! and every document is kept until the key file is fixed; a key that may not install the
//! template still delivers; certificates are verified by default; no secret is ever printed.
//! Also the dead-letter replay command, end to end against osmem.

mod common;

use std::{
    collections::HashSet,
    io::Write,
    process::Command,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use common::{front::*, *};
use dohguard_core::contract::ScoreRequest;
use dohguard_scorer::{
    config::{Config, DEFAULT_INDEX},
    metrics::SinkCounters,
    sink::{bulk::Probe, dead_letter, Doc, EsClient},
    App,
};
use serde_json::{json, Value};

const SETTLE: Duration = Duration::from_secs(30);

// ---- log capture: one global subscriber for this test binary; tests tell their lines apart
// by the front's URL (a unique port) that the sink's log lines carry.

#[derive(Clone)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        std::io::stderr().write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> &'static LogBuffer {
    static LOGS: OnceLock<LogBuffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = LogBuffer(Arc::new(Mutex::new(Vec::new())));
        let writer = buf.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("dohguard_scorer=info"))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        buf
    })
}

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Log lines containing every one of `parts`.
    fn lines(&self, parts: &[&str]) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .map(str::to_owned)
            .collect()
    }
}

// ---- helpers

fn api_key(id: &str, secret: &str) -> String {
    format!("ApiKey {}", STANDARD.encode(format!("{id}:{secret}")))
}

/// A metric's value from the Prometheus text; a missing metric fails the test.
fn metric(app: &App, name: &str) -> f64 {
    let text = app.metrics.encode();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing from:\n{text}"))
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{prefix}{i}.secured-test.example"))
        .collect()
}

async fn score_names(app: &Arc<App>, names: &[String]) {
    for chunk in names.chunks(16) {
        let reqs = chunk
            .iter()
            .map(|n| ScoreRequest {
                name: n.clone(),
                qtype: "A".to_owned(),
                client: Some("198.51.100.9".to_owned()),
                caller_records: false,
            })
            .collect();
        let replies = app.scorer.score(reqs).await.expect("scoring never waits");
        assert_eq!(replies.len(), chunk.len());
    }
}

async fn wait_stored(es: &Es, n: u64) {
    eventually(&format!("{n} documents stored"), SETTLE, || async move {
        es.count_if_exists(DEFAULT_INDEX).await == Some(n)
    })
    .await;
}

/// Every name stored exactly once, under distinct ids.
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

/// Replaces a file the way an operator or a secret manager would: write aside, rename.
fn rewrite(path: &std::path::Path, contents: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn secured_config(front: &Front, ca: &TestCa, spool: &std::path::Path) -> Config {
    let mut c = test_config(Some(&front.url), spool);
    c.elasticsearch.tls_ca_file = Some(ca.ca_cert.clone());
    c
}

// ---- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_refused_everything_is_kept_and_fixing_the_key_file_resumes_delivery() {
    const GOOD: &str = "good-secret-7Qk2";
    const WRONG: &str = "wrong-secret-Vx31";
    let logs = logs();
    let osmem = Osmem::start();
    let es = Es::new(&osmem.url);
    let ca = TestCa::generate();
    let front = Front::start(
        &ca,
        osmem.port,
        &[FrontKey::admin(api_key("dohguard", GOOD))],
    );
    let secrets = tempfile::tempdir().unwrap();
    let key_file = secrets.path().join("es-api-key");
    std::fs::write(&key_file, format!("dohguard:{WRONG}\n")).unwrap();
    let spool = tempfile::tempdir().unwrap();
    let mut config = secured_config(&front, &ca, spool.path());
    config.elasticsearch.api_key_file = Some(key_file.clone());
    let (app, _tasks) = start(config).await;
    // The template install at start was answered 401.
    assert_eq!(app.sink().state().as_str(), "auth_failed");

    let refused = names("refused", 200);
    score_names(&app, &refused).await;
    let m: SinkCounters = app.metrics.sink.clone();
    eventually("every verdict of the refusal spooled", SETTLE, || {
        let spooled = m.spooled.get();
        async move { spooled >= 200 }
    })
    .await;
    assert_eq!(m.sent.get(), 0, "nothing delivered with a wrong key");
    assert_eq!(m.rejected.get(), 0, "nothing dead-lettered for a 401");
    assert_eq!(m.dropped.get(), 0);
    assert!(
        !spool.path().join(dead_letter::FILE).exists(),
        "no dead-letter file"
    );
    assert_eq!(
        es.count_if_exists(DEFAULT_INDEX).await,
        None,
        "nothing reached Elasticsearch"
    );
    assert_eq!(app.sink().state().as_str(), "auth_failed");
    assert!(metric(&app, "dohguard_scorer_sink_auth_failures_total") >= 1.0);
    assert_eq!(metric(&app, "dohguard_scorer_sink_auth_failed"), 1.0);
    let why = logs.lines(&["refused the credential", &front.url]);
    assert_eq!(why.len(), 1, "one log line says why: {why:?}");
    assert!(why[0].contains("status=401"), "{}", why[0]);

    // The operator fixes the key file; the sink re-reads it on its next probe.
    rewrite(&key_file, &format!("dohguard:{GOOD}\n"));
    wait_stored(&es, 200).await;
    eventually("the sink is live again", SETTLE, || {
        let live = app.sink().state().as_str() == "live";
        async move { live }
    })
    .await;
    let after = names("fixed", 50);
    score_names(&app, &after).await;
    wait_stored(&es, 250).await;
    let all: Vec<String> = refused.iter().chain(&after).cloned().collect();
    assert_exactly_once(&es, &all).await;
    assert_eq!(metric(&app, "dohguard_scorer_sink_auth_failed"), 0.0);
    assert_eq!(
        logs.lines(&["accepts the credential again", &front.url])
            .len(),
        1
    );
    assert_eq!(m.rejected.get(), 0);
    assert_eq!(m.dropped.get(), 0);
    // The counters move just after Elasticsearch answers, so wait for them too.
    eventually("sent + replayed = 250 (stored once each)", SETTLE, || {
        let n = m.sent.get() + m.replayed.get();
        async move { n == 250 }
    })
    .await;
    eventually("spool drained", SETTLE, || {
        let empty = app.sink().spool().is_empty();
        async move { empty }
    })
    .await;
    // No form of either secret was ever logged.
    let text = logs.text();
    for secret in [GOOD, WRONG] {
        assert!(!text.contains(secret), "{secret} in the logs");
        assert!(
            !text.contains(&api_key("dohguard", secret)[7..]),
            "encoded key in the logs"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_while_live_stops_delivery_and_a_new_key_in_the_file_resumes_it() {
    let logs = logs();
    let osmem = Osmem::start();
    let es = Es::new(&osmem.url);
    let ca = TestCa::generate();
    let old_key = api_key("key-1", "first-secret-Ab3");
    let mut front = Front::start(&ca, osmem.port, &[FrontKey::admin(old_key)]);
    let secrets = tempfile::tempdir().unwrap();
    let key_file = secrets.path().join("key");
    std::fs::write(&key_file, "key-1:first-secret-Ab3\n").unwrap();
    let spool = tempfile::tempdir().unwrap();
    let mut config = secured_config(&front, &ca, spool.path());
    config.elasticsearch.api_key_file = Some(key_file.clone());
    let (app, _tasks) = start(config).await;
    assert_eq!(app.sink().state().as_str(), "live");
    let before = names("before-revocation", 50);
    score_names(&app, &before).await;
    wait_stored(&es, 50).await;
    let m = app.metrics.sink.clone();
    // The sink has its answers too (else the restart below would cut one off).
    eventually("50 confirmed sent", SETTLE, || {
        let sent = m.sent.get();
        async move { sent == 50 }
    })
    .await;

    // The key is revoked: the cluster (the front, restarted on its port) knows only key-2.
    // No verdicts are scored meanwhile, so the sink is still live and learns it from a bulk.
    front.stop();
    let port = front.port;
    let _front = Front::start_on(
        port,
        &ca,
        osmem.port,
        &[FrontKey::admin(api_key("key-2", "second-secret-Cd4"))],
    );
    let revoked = names("revoked", 200);
    score_names(&app, &revoked).await;
    eventually("every verdict after the revocation spooled", SETTLE, || {
        let done = m.spooled.get() >= 200 && app.sink().state().as_str() == "auth_failed";
        async move { done }
    })
    .await;
    assert_eq!(m.sent.get(), 50, "nothing delivered after the revocation");
    assert_eq!(
        (m.rejected.get(), m.dropped.get()),
        (0, 0),
        "nothing dead-lettered or lost"
    );
    assert!(!spool.path().join(dead_letter::FILE).exists());
    assert_eq!(es.count(DEFAULT_INDEX).await, 50);
    assert_eq!(metric(&app, "dohguard_scorer_sink_auth_failed"), 1.0);
    let url = format!("https://127.0.0.1:{port}");
    let why = logs.lines(&["refused the credential", &url]);
    assert_eq!(why.len(), 1, "{why:?}");
    assert!(why[0].contains("status=401"), "{}", why[0]);

    // The operator writes the new key into the file.
    rewrite(&key_file, "key-2:second-secret-Cd4\n");
    let after = names("new-key", 30);
    score_names(&app, &after).await;
    wait_stored(&es, 280).await;
    let all: Vec<String> = before
        .iter()
        .chain(&revoked)
        .chain(&after)
        .cloned()
        .collect();
    assert_exactly_once(&es, &all).await;
    eventually("live, the gauge back to 0", SETTLE, || {
        let done = app.sink().state().as_str() == "live"
            && app
                .metrics
                .encode()
                .contains("dohguard_scorer_sink_auth_failed 0");
        async move { done }
    })
    .await;
    assert_eq!((m.rejected.get(), m.dropped.get()), (0, 0));
    assert_eq!(logs.lines(&["accepts the credential again", &url]).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_may_not_install_the_template_still_delivers() {
    let logs = logs();
    let osmem = Osmem::start();
    let es = Es::new(&osmem.url);
    let ca = TestCa::generate();
    let front = Front::start(
        &ca,
        osmem.port,
        &[FrontKey::writer(api_key("writer", "writer-secret"))],
    );
    let secrets = tempfile::tempdir().unwrap();
    let key_file = secrets.path().join("key");
    std::fs::write(&key_file, "writer:writer-secret").unwrap();
    let spool = tempfile::tempdir().unwrap();
    let mut config = secured_config(&front, &ca, spool.path());
    config.elasticsearch.api_key_file = Some(key_file);
    let (app, _tasks) = start(config).await;
    assert_eq!(
        app.sink().state().as_str(),
        "live",
        "a refused template does not stop delivery"
    );

    let all = names("writer", 30);
    score_names(&app, &all).await;
    wait_stored(&es, 30).await;
    assert_exactly_once(&es, &all).await;
    assert!(metric(&app, "dohguard_scorer_sink_template_failures_total") >= 1.0);
    assert_eq!(
        metric(&app, "dohguard_scorer_sink_auth_failures_total"),
        0.0
    );
    let why = logs.lines(&["index template not installed", &front.url]);
    assert_eq!(why.len(), 1, "{why:?}");
    assert!(why[0].contains("403"), "{}", why[0]);
    // The front really refused it: the store has no template.
    let template = es.get("/_index_template/dohguard-verdicts").await;
    assert!(
        template["index_templates"]
            .as_array()
            .is_none_or(|t| t.is_empty()),
        "{template}"
    );
    assert_eq!(app.metrics.sink.rejected.get(), 0);
    assert_eq!(app.metrics.sink.dropped.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_write_privilege_403_keeps_everything_until_a_key_that_has_it() {
    let logs = logs();
    let osmem = Osmem::start();
    let es = Es::new(&osmem.url);
    let ca = TestCa::generate();
    let front = Front::start(
        &ca,
        osmem.port,
        &[
            FrontKey::reader(api_key("reader", "reader-secret")),
            FrontKey::writer(api_key("writer", "writer-secret")),
        ],
    );
    let secrets = tempfile::tempdir().unwrap();
    let key_file = secrets.path().join("key");
    std::fs::write(&key_file, "reader:reader-secret").unwrap();
    let spool = tempfile::tempdir().unwrap();
    let mut config = secured_config(&front, &ca, spool.path());
    config.elasticsearch.api_key_file = Some(key_file.clone());
    let (app, _tasks) = start(config).await;

    let first = names("forbidden", 100);
    score_names(&app, &first).await;
    let m = app.metrics.sink.clone();
    eventually(
        "every verdict of the 403 spooled, the sink auth_failed",
        SETTLE,
        || {
            let done = m.spooled.get() >= 100 && app.sink().state().as_str() == "auth_failed";
            async move { done }
        },
    )
    .await;
    assert_eq!((m.sent.get(), m.rejected.get(), m.dropped.get()), (0, 0, 0));
    assert!(!spool.path().join(dead_letter::FILE).exists());
    assert_eq!(metric(&app, "dohguard_scorer_sink_auth_failed"), 1.0);
    let why = logs.lines(&["refused the credential", &front.url]);
    assert_eq!(why.len(), 1, "{why:?}");
    assert!(why[0].contains("status=403"), "{}", why[0]);

    rewrite(&key_file, "writer:writer-secret");
    let second = names("allowed", 20);
    score_names(&app, &second).await;
    wait_stored(&es, 120).await;
    let all: Vec<String> = first.iter().chain(&second).cloned().collect();
    assert_exactly_once(&es, &all).await;
    eventually("live again", SETTLE, || {
        let live = app.sink().state().as_str() == "live";
        async move { live }
    })
    .await;
    assert_eq!(metric(&app, "dohguard_scorer_sink_auth_failed"), 0.0);
    assert_eq!((m.rejected.get(), m.dropped.get()), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_verified_and_basic_auth_works_through_the_front() {
    let osmem = Osmem::start();
    let es = Es::new(&osmem.url);
    let ca = TestCa::generate();
    let front = Front::start(
        &ca,
        osmem.port,
        &[FrontKey::admin(format!(
            "Basic {}",
            STANDARD.encode("dohguard:pa55-w0rd")
        ))],
    );
    let secrets = tempfile::tempdir().unwrap();
    let password_file = secrets.path().join("password");
    std::fs::write(&password_file, "pa55-w0rd\n").unwrap();
    let spool = tempfile::tempdir().unwrap();
    let mut config = secured_config(&front, &ca, spool.path()).elasticsearch;
    config.username = Some("dohguard".into());
    config.password_file = Some(password_file);

    // With the CA: verified, authenticated, delivered.
    let client = EsClient::new(&front.url, &config).unwrap();
    assert_eq!(client.probe().await, Probe::Up);
    client.install_template().await.unwrap();
    let docs: Vec<Doc> = (0..3)
        .map(|i| {
            serde_json::from_value(json!({
                "_index": DEFAULT_INDEX, "_id": format!("basic-{i}"),
                "source": {"@timestamp": "2026-12-02T00:00:00Z", "dohguard": {"verdict": "allow"}}
            }))
            .unwrap()
        })
        .collect();
    let d = client.deliver(docs, &SinkCounters::default()).await;
    assert_eq!((d.stored, d.rejected.len(), d.undelivered.len()), (3, 0, 0));
    assert_eq!(es.count(DEFAULT_INDEX).await, 3);

    // Without the CA (built-in roots only): the test CA is unknown, nothing is sent.
    config.tls_ca_file = None;
    let untrusting = EsClient::new(&front.url, &config).unwrap();
    match untrusting.probe().await {
        Probe::Down(e) => assert!(e.contains("UnknownIssuer"), "{e}"),
        other => panic!("an unknown CA must be refused, got {other:?}"),
    }
    // tls_verify = false accepts it (diagnosis only).
    config.tls_verify = false;
    let unverified = EsClient::new(&front.url, &config).unwrap();
    assert_eq!(unverified.probe().await, Probe::Up);
    config.tls_verify = true;
    // A certificate from the right CA for another name: the host name is checked too.
    let other = TestCa::generate_for("DNS:elsewhere.example");
    let other_front = Front::start(&other, osmem.port, &[]);
    config.tls_ca_file = Some(other.ca_cert.clone());
    let wrong_name = EsClient::new(&other_front.url, &config).unwrap();
    match wrong_name.probe().await {
        Probe::Down(e) => assert!(e.contains("not valid for name"), "{e}"),
        other => panic!("a certificate for another name must be refused, got {other:?}"),
    }
    // The wrong password: 401, reported as a refusal, not as "down".
    let wrong = secrets.path().join("wrong");
    std::fs::write(&wrong, "not-it").unwrap();
    config.tls_ca_file = Some(ca.ca_cert.clone());
    config.password_file = Some(wrong);
    let refused = EsClient::new(&front.url, &config).unwrap();
    assert!(matches!(refused.probe().await, Probe::Refused(r) if r.status == 401));
}

fn scorer_bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dohguard-scorer"));
    c.current_dir(repo_root())
        .env("RUST_LOG", "warn")
        .env_remove("DOHGUARD_SCORER_ELASTICSEARCH__API_KEY")
        .env_remove("DOHGUARD_SCORER_ELASTICSEARCH__PASSWORD");
    c
}

#[test]
fn no_secret_in_print_config_or_in_errors() {
    const ENV_KEY: &str = "env-secret-Zq81";
    const FILE_KEY: &str = "file-secret-Lm40";
    const TOML_KEY: &str = "toml-secret-Pw77";
    const URL_PASSWORD: &str = "url-secret-Hs95";
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not used").unwrap();

    // --print-config with secrets in the environment and a key file: neither is printed,
    // and the secret variables are not mistaken for unknown settings.
    std::fs::write(&key_file, format!("kid:{FILE_KEY}")).unwrap();
    let out = scorer_bin()
        .args([
            "--print-config",
            "--elasticsearch-url",
            "https://127.0.0.1:9200",
        ])
        .env("DOHGUARD_SCORER_ELASTICSEARCH__API_KEY", ENV_KEY)
        .env("DOHGUARD_SCORER_ELASTICSEARCH__PASSWORD", ENV_KEY)
        .env("DOHGUARD_SCORER_ELASTICSEARCH__API_KEY_FILE", &key_file)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(
        config["elasticsearch"]["api_key_file"],
        key_file.display().to_string()
    );
    assert_eq!(
        config["elasticsearch"]["tls_verify"], true,
        "verification on by default"
    );
    assert!(
        !printed.contains(ENV_KEY) && !printed.contains(FILE_KEY),
        "{printed}"
    );

    let check = |out: std::process::Output, key: &str, secrets: &[&str]| {
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(key), "names {key}: {err}");
        for s in secrets {
            assert!(!err.contains(s), "{s} printed: {err}");
        }
    };
    // Two sources for the key: refused, naming the setting, printing neither secret.
    check(
        scorer_bin()
            .args(["--elasticsearch-url", "https://127.0.0.1:9200"])
            .env("DOHGUARD_SCORER_ELASTICSEARCH__API_KEY", ENV_KEY)
            .env("DOHGUARD_SCORER_ELASTICSEARCH__API_KEY_FILE", &key_file)
            .output()
            .unwrap(),
        "elasticsearch.api_key_file",
        &[ENV_KEY, FILE_KEY],
    );
    // A key file that is not one clean line.
    std::fs::write(&key_file, format!("kid:{FILE_KEY}\u{7}\nsecond line")).unwrap();
    check(
        scorer_bin()
            .args(["--elasticsearch-url", "https://127.0.0.1:9200"])
            .env("DOHGUARD_SCORER_ELASTICSEARCH__API_KEY_FILE", &key_file)
            .output()
            .unwrap(),
        "elasticsearch.api_key_file",
        &[FILE_KEY],
    );
    // A password in the URL.
    check(
        scorer_bin()
            .args([
                "--elasticsearch-url",
                &format!("https://elastic:{URL_PASSWORD}@127.0.0.1:9200"),
            ])
            .output()
            .unwrap(),
        "elasticsearch.url",
        &[URL_PASSWORD],
    );
    // A key written into the configuration file: not a setting.
    let toml = dir.path().join("scorer.toml");
    std::fs::write(
        &toml,
        format!("[elasticsearch]\napi_key = \"{TOML_KEY}\"\n"),
    )
    .unwrap();
    check(
        scorer_bin().arg("--config").arg(&toml).output().unwrap(),
        "api_key",
        &[TOML_KEY],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_documents_are_dead_lettered_and_the_command_replays_them_after_the_fix() {
    let osmem = Osmem::start();
    let es = Es::new(&osmem.url);
    let spool = tempfile::tempdir().unwrap();
    let (app, _tasks) = start(test_config(Some(&osmem.url), spool.path())).await;

    let good = names("good", 5);
    score_names(&app, &good).await;
    wait_stored(&es, 5).await;
    // Three documents the strict mapping refuses (a field it does not know).
    let bad: Vec<Doc> = (0..3)
        .map(|i| {
            let mut source = json!({
                "@timestamp": "2026-12-02T00:00:00Z",
                "dns": {"question": {"name": format!("bad{i}.secured-test.example")}},
                "dohguard": {"verdict": "allow", "note": "a field the mapping lacks"}
            });
            source["dohguard"]["score"] = json!(0.5);
            serde_json::from_value(json!({
                "_index": DEFAULT_INDEX, "_id": format!("dead-{i}"), "source": source
            }))
            .unwrap()
        })
        .collect();
    app.sink().submit_docs(bad).expect("the spool takes them");
    let m = app.metrics.sink.clone();
    eventually("three documents refused", SETTLE, || {
        let n = m.rejected.get();
        async move { n == 3 }
    })
    .await;
    let file = spool.path().join(dead_letter::FILE);
    let (letters, unreadable) = dead_letter::read(&file).unwrap();
    assert_eq!(unreadable, 0);
    assert_eq!(letters.len(), 3);
    for l in &letters {
        assert!(
            l.error.contains("strict_dynamic_mapping_exception"),
            "{}",
            l.error
        );
        assert!(l.time.ends_with('Z'), "{}", l.time);
    }
    assert_eq!(m.dropped.get(), 0);

    let config_for = |url: &str| {
        let path = spool.path().join("replay.toml");
        std::fs::write(
            &path,
            format!(
                "[elasticsearch]\nurl = \"{url}\"\nretry_base_ms = 10\n[spool]\ndir = \"{}\"\n",
                spool.path().display()
            ),
        )
        .unwrap();
        path
    };
    let replay_to = |url: &str| {
        let out = scorer_bin()
            .args(["replay-dead-letters", "--config"])
            .arg(config_for(url))
            .output()
            .unwrap();
        let summary: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "summary line: {e}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code(), summary)
    };
    let replay = || replay_to(&osmem.url);

    // Elasticsearch away: every dead letter is kept as it was, exit status 1.
    let nobody = format!(
        "http://127.0.0.1:{}",
        dohguard_launcher::ports::free_port().unwrap()
    );
    let (code, summary) = replay_to(&nobody);
    assert_eq!(code, Some(1), "{summary}");
    assert_eq!(
        (summary["read"].as_u64(), summary["kept"].as_u64()),
        (Some(3), Some(3))
    );
    let (kept, _) = dead_letter::read(&file).unwrap();
    assert_eq!(kept.len(), 3);
    assert_eq!(kept[0].error, letters[0].error, "kept as it was");

    // Before the fix: refused again, kept, exit status 1.
    let (code, summary) = replay();
    assert_eq!(code, Some(1), "{summary}");
    assert_eq!(summary["read"], 3);
    assert_eq!(summary["rejected_again"], 3);
    assert_eq!(dead_letter::read(&file).unwrap().0.len(), 3, "kept");

    // The fix: the mapping learns the field.
    let fixed = es
        .put(
            &format!("/{DEFAULT_INDEX}/_mapping"),
            json!({"properties": {"dohguard": {"properties": {"note": {"type": "keyword"}}}}}),
        )
        .await;
    assert_eq!(fixed["acknowledged"], true, "{fixed}");

    let (code, summary) = replay();
    assert_eq!(code, Some(0), "{summary}");
    assert_eq!(summary["read"], 3);
    assert_eq!(summary["stored"], 3);
    assert_eq!(summary["rejected_again"], 0);
    assert_eq!(summary["kept"], 0);
    wait_stored(&es, 8).await;
    let ids: HashSet<String> = es
        .all(DEFAULT_INDEX)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .filter(|id| id.starts_with("dead-"))
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(dead_letter::read(&file).map_or(true, |(l, _)| l.is_empty()));

    // Nothing left: a second replay reads nothing and succeeds.
    let (code, summary) = replay();
    assert_eq!((code, summary["read"].as_u64()), (Some(0), Some(0)));
    assert_eq!(es.count(DEFAULT_INDEX).await, 8);
}
