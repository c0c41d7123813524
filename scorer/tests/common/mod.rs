//! Shared test support: the real `osmem-server` process (ephemeral port, stopped by PID),
//! a test configuration pointing at the default model, polling waits, and small
//! Elasticsearch-API queries. Missing tools fail loudly: `source scripts/env.sh` first.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use dohguard_scorer::{
    app::AppTasks,
    config::{Config, DEFAULT_MODEL_CARD},
    App,
};
use serde_json::{json, Value};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A tool path from the environment; panics with the fix when it is missing.
pub fn require_env(var: &str) -> PathBuf {
    let value = std::env::var_os(var).unwrap_or_else(|| {
        panic!(
            "{var} is not set: run `source scripts/env.sh` before `cargo test -p dohguard-scorer`"
        )
    });
    let path = PathBuf::from(value);
    assert!(
        path.exists(),
        "{var}={} does not exist: run scripts/setup.sh",
        path.display()
    );
    path
}

/// The model card the default configuration points to, as an absolute path.
pub fn default_card() -> PathBuf {
    repo_root().join(DEFAULT_MODEL_CARD)
}

/// The placeholder model: API and sink tests pin it, because they assert verdicts of
/// particular names and must not change when the default model is switched.
pub fn placeholder_card() -> PathBuf {
    repo_root().join("models/placeholder/model.card.json")
}

/// A configuration for tests: the placeholder model, ephemeral port, no file watching, a private
/// spool folder, short sink timers so tests settle fast.
pub fn test_config(es_url: Option<&str>, spool_dir: &Path) -> Config {
    require_env("ORT_DYLIB_PATH");
    let mut c = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    c.model.card = placeholder_card();
    c.model.watch = false;
    c.elasticsearch.url = es_url.map(str::to_owned);
    c.elasticsearch.flush_interval_ms = 20;
    c.elasticsearch.retry_base_ms = 20;
    c.elasticsearch.max_attempts = 3;
    c.elasticsearch.request_timeout_ms = 2000;
    c.spool.dir = spool_dir.to_owned();
    c.spool.replay_interval_ms = 100;
    c.validate().unwrap();
    c
}

pub async fn start(config: Config) -> (Arc<App>, AppTasks) {
    App::start(config).await.expect("scorer starts")
}

/// Polls `check` every 20 ms until it returns true; panics after `timeout` naming `what`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A running osmem-server (Elasticsearch-API test server), killed on drop.
pub struct Osmem {
    child: Option<Child>,
    pub url: String,
    pub port: u16,
}

impl Osmem {
    pub fn start() -> Self {
        Self::start_on(0, None)
    }

    /// Starts on `port` (0 = any free port), optionally seeded with a bulk NDJSON file.
    pub fn start_on(port: u16, seed: Option<&Path>) -> Self {
        let bin = require_env("OSMEM_BIN");
        let mut cmd = Command::new(bin);
        cmd.args([
            "-addr",
            &format!("127.0.0.1:{port}"),
            "-no-stdin-watch",
            "-no-ja",
        ])
        .args(["-parent-pid", &std::process::id().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        if let Some(seed) = seed {
            cmd.arg("-seed").arg(seed);
        }
        let mut child = cmd.spawn().expect("osmem-server starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("osmem-server prints its address");
        let info: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("osmem-server start line {line:?}: {e}"));
        let url = info["url"]
            .as_str()
            .expect("url in the start line")
            .to_owned();
        let port = url.rsplit(':').next().unwrap().parse().unwrap();
        Self {
            child: Some(child),
            url,
            port,
        }
    }

    /// Kills the server (by its PID) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Osmem {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A small client for assertions (plain HTTP, independent of the sink's client).
pub struct Es {
    http: reqwest::Client,
    pub url: String,
}

impl Es {
    pub fn new(url: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: url.to_owned(),
        }
    }

    pub async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn count(&self, index: &str) -> u64 {
        let _ = self
            .http
            .post(format!("{}/{index}/_refresh", self.url))
            .send()
            .await;
        let v = self.get(&format!("/{index}/_count")).await;
        v["count"].as_u64().unwrap_or(0)
    }

    /// Every document of `index` as (`_id`, `_source`).
    pub async fn all(&self, index: &str) -> Vec<(String, Value)> {
        let _ = self
            .http
            .post(format!("{}/{index}/_refresh", self.url))
            .send()
            .await;
        let v = self
            .post(
                &format!("/{index}/_search"),
                json!({"size": 10000, "query": {"match_all": {}}}),
            )
            .await;
        v["hits"]["hits"]
            .as_array()
            .unwrap_or_else(|| panic!("search answer {v}"))
            .iter()
            .map(|h| (h["_id"].as_str().unwrap().to_owned(), h["_source"].clone()))
            .collect()
    }
}
