//! A promotion survives a restart: the real `dohguard-scorer` binary with `admin.token_file`
//! and `model.active_card_file` is told to load another card (`POST /admin/reload`, what the
//! console's promote does), stopped with SIGTERM and started again with the same settings:
//! it serves the promoted model. With that card gone, the next start serves the configured
//! model (and says so) instead of failing.

mod common;

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use common::*;
use serde_json::{json, Value};

/// A copy of the test model whose card says another version.
fn other_version(dir: &Path, version: &str) -> PathBuf {
    let card = test_model_card();
    let mut json: Value = serde_json::from_str(&std::fs::read_to_string(&card).unwrap()).unwrap();
    let onnx = json["onnx_file"].as_str().unwrap().to_owned();
    std::fs::copy(card.parent().unwrap().join(&onnx), dir.join(&onnx)).unwrap();
    json["version"] = json!(version);
    let path = dir.join("model.card.json");
    std::fs::write(&path, json.to_string()).unwrap();
    path
}

struct Running {
    child: Child,
    addr: String,
    log: PathBuf,
}

/// Starts the binary on the test model with the token and active-card files; waits for its
/// start line (printed once the model is loaded and the port bound).
fn start(state: &Path, n: u32) -> Running {
    require_env("ORT_DYLIB_PATH");
    let log = state.join(format!("scorer-{n}.log"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_dohguard-scorer"))
        .current_dir(repo_root())
        .env("RUST_LOG", "info")
        .env("DOHGUARD_SCORER_ADMIN__TOKEN_FILE", state.join("token"))
        .env(
            "DOHGUARD_SCORER_MODEL__ACTIVE_CARD_FILE",
            state.join("active-model"),
        )
        .args(["--listen", "127.0.0.1:0", "--no-elasticsearch", "--model"])
        .arg(test_model_card())
        .arg("--spool-dir")
        .arg(state.join(format!("spool-{n}")))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let start: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
        panic!(
            "start line {line:?}: {e}; log: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    Running {
        child,
        addr: start["listen"].as_str().unwrap().to_owned(),
        log,
    }
}

impl Running {
    async fn model(&self) -> Value {
        reqwest::get(format!("http://{}/v1/model", self.addr))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn reload(&self, card: &Path) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(format!("http://{}/admin/reload", self.addr))
            .bearer_auth("promote-token")
            .json(&json!({"card_path": card}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// The version `/v1/score` answers with (what verdict documents carry).
    async fn scored_version(&self) -> Value {
        let r: Value = reqwest::Client::new()
            .post(format!("http://{}/v1/score", self.addr))
            .json(&json!({"name": "restart-check.example.org", "qtype": "A"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["model_version"].clone()
    }

    fn stop(mut self) -> String {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        assert!(self.child.wait().unwrap().success());
        std::fs::read_to_string(&self.log).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_model_is_served_again_after_a_restart() {
    let state = tempfile::tempdir().unwrap();
    std::fs::write(state.path().join("token"), "promote-token\n").unwrap();
    let models = tempfile::tempdir().unwrap();
    let candidate = other_version(models.path(), "9.9.9-promoted");

    let first = start(state.path(), 1);
    let shipped = first.model().await["model_version"].clone();
    assert!(!shipped.as_str().unwrap().contains("9.9.9"), "{shipped}");
    let (status, reply) = first.reload(&candidate).await;
    assert_eq!(status, 200, "{reply}");
    let promoted = reply["model_version"].clone();
    assert!(
        promoted.as_str().unwrap().ends_with("9.9.9-promoted"),
        "{reply}"
    );
    assert_eq!(reply["persisted"], true, "{reply}");
    assert_eq!(
        std::fs::read_to_string(state.path().join("active-model"))
            .unwrap()
            .trim(),
        candidate.display().to_string()
    );
    first.stop();

    // Restarted with the same settings: the promoted model serves.
    let second = start(state.path(), 2);
    assert_eq!(second.model().await["model_version"], promoted);
    assert_eq!(second.scored_version().await, promoted);
    // Rolling back (a reload to the configured card) is recorded the same way.
    let (status, reply) = second.reload(&test_model_card()).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["model_version"], shipped);
    assert_eq!(reply["persisted"], true, "{reply}");
    second.stop();
    let third = start(state.path(), 3);
    assert_eq!(third.model().await["model_version"], shipped);
    assert_eq!(third.scored_version().await, shipped);
    let (status, reply) = third.reload(&candidate).await;
    assert_eq!(status, 200, "{reply}");
    third.stop();

    // The promoted card's folder is gone: the next start serves the configured model and
    // says why in its log.
    std::fs::remove_dir_all(models.path()).unwrap();
    let fourth = start(state.path(), 4);
    assert_eq!(fourth.model().await["model_version"], shipped);
    let log = fourth.stop();
    assert!(
        log.contains("model.active_card_file cannot be loaded"),
        "{log}"
    );
}
