//! The `dohguard-scorer` binary itself: flags and environment reach the configuration, a bad
//! value stops start-up naming the key, the start line reports the bound address, and SIGTERM
//! shuts down gracefully with every verdict delivered (here: to the spool).

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use common::*;
use serde_json::Value;

fn scorer() -> Command {
    require_env("ORT_DYLIB_PATH");
    let mut c = Command::new(env!("CARGO_BIN_EXE_dohguard-scorer"));
    c.current_dir(repo_root()).env("RUST_LOG", "warn");
    c
}

#[test]
fn a_bad_setting_stops_start_up_naming_the_key() {
    let out = scorer()
        .args(["--no-elasticsearch", "--listen", "127.0.0.1:0"])
        .env("DOHGUARD_SCORER_INFERENCE__MAX_BATCH", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    // The one shape of configuration errors (docs/contracts.md): `scorer: configuration <key>: <problem>`.
    assert_eq!(
        err.trim_end(),
        "scorer: configuration inference.max_batch: must be greater than 0"
    );

    let out = scorer()
        .args(["--elasticsearch-url", "not a url"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("scorer: configuration elasticsearch.url: "),
        "{err}"
    );

    // An unknown key, from the environment: the same shape, naming the key and the layer.
    let out = scorer()
        .args(["--no-elasticsearch"])
        .env("DOHGUARD_SCORER_VERDICTS__MAX_ENTRYS", "5")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("scorer: configuration verdicts")
            && err.contains("max_entrys")
            && err.contains("environment"),
        "{err}"
    );

    // A renamed key still works, with its old meaning and a warning naming the new key;
    // old and new together stop start-up.
    let out = scorer()
        .args(["--no-elasticsearch", "--print-config"])
        .env("DOHGUARD_SCORER_VERDICTS__CACHE_CAPACITY", "5")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["verdicts"]["max_entries"], 5);
    assert!(printed["verdicts"].get("cache_capacity").is_none());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("scorer: configuration verdicts.cache_capacity: deprecated, renamed to verdicts.max_entries"),
        "{err}"
    );
    let out = scorer()
        .args(["--no-elasticsearch", "--print-config"])
        .env("DOHGUARD_SCORER_VERDICTS__CACHE_CAPACITY", "5")
        .env("DOHGUARD_SCORER_VERDICTS__MAX_ENTRIES", "6")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("scorer: configuration verdicts.cache_capacity: "),
        "{err}"
    );

    let out = scorer()
        .args(["--model", "/nonexistent/card.json", "--no-elasticsearch"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/card.json"));
}

#[test]
fn prints_its_address_serves_and_flushes_on_sigterm() {
    let spool = tempfile::tempdir().unwrap();
    let mut child = scorer()
        .args([
            "--listen",
            "127.0.0.1:0",
            "--no-elasticsearch",
            "--spool-dir",
        ])
        .arg(spool.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let start: Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("start line {line:?}: {e}"));
    let addr = start["listen"].as_str().unwrap().to_owned();
    assert!(!addr.ends_with(":0"));

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        for i in 0..10 {
            let r = client
                .post(format!("http://{addr}/v1/score"))
                .json(&serde_json::json!({"name": format!("n{i}.example.org"), "qtype": "A"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    });
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    // All ten verdicts reached the spool before exit.
    let mut lines = 0;
    for entry in std::fs::read_dir(spool.path()).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with("segment-") {
            lines += std::fs::read_to_string(entry.path())
                .unwrap()
                .lines()
                .count();
        }
    }
    assert_eq!(lines, 10);
}
