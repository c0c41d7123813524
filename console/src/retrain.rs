//! From labels to a better model (docs/contracts.md, "Retraining"): the label CSV, the
//! retrain job, candidates, promote and roll back.
//!
//! - [`export_labels`]: every labelled domain's current label as the CSV the training
//!   pipeline takes (`name,label,family,labelled_by,labelled_at,reason`; `models/` reads
//!   the first three columns).
//! - [`start`]: the retrain job (admin). It fine-tunes the model the scorer serves (asked
//!   from `GET /v1/model`: its card path and thresholds in force) on the labels plus a sample
//!   of recent verdicts (and the `.csv` files of `retrain.data_dir` when set), by running `python -m dohguard_models finetune` in the background:
//!   one job at a time, cancellable ([`cancel`]), its JSON progress lines shown by
//!   [`status`]. The candidate (model.onnx, card, report.json, report.md) lands in
//!   `<retrain.dir>/candidates/<id>/`, with the job's inputs under `input/` and its log in
//!   `job.log`. A user's installation needs only what it has: the serving model, the labels
//!   and the verdicts in the store.
//! - [`promote`] / [`rollback`] (admin): check the candidate again, then make the scorer load
//!   it (`POST /admin/reload` with `{"card_path"}` and the admin token), or the previous
//!   model; both audited; `<retrain.dir>/serving.json` keeps the history.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{
    app::AppState,
    auth::{Role, Session},
    error::ApiError,
    query_log::csv_field,
    time_range::rfc3339,
};

/// Header of the label CSV (the pipeline reads `name,label[,family]`; the rest is context).
pub const LABELS_CSV_HEADER: &str = "name,label,family,labelled_by,labelled_at,reason\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

/// What [`status`] shows of a job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub state: JobState,
    pub stage: String,
    pub progress: f64,
    pub message: String,
    pub started_by: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// What the job trains on, in words (shown in the console).
    pub source: String,
    pub serving_version: String,
}

/// The one job slot, and how to cancel the running job.
#[derive(Debug, Default, Clone)]
pub struct Jobs {
    inner: Arc<Mutex<Slot>>,
}

#[derive(Debug, Default)]
struct Slot {
    job: Option<Job>,
    cancel: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Jobs {
    fn current(&self) -> Option<Job> {
        self.inner.lock().expect("jobs lock").job.clone()
    }

    fn update(&self, f: impl FnOnce(&mut Job)) {
        if let Some(job) = self.inner.lock().expect("jobs lock").job.as_mut() {
            f(job);
        }
    }
}

/// Options of one retrain (body of `POST /api/retrain`; all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrainRequest {
    pub epochs: Option<u32>,
    pub max_seconds: Option<u64>,
    pub sample: Option<usize>,
}

fn now() -> String {
    rfc3339(OffsetDateTime::now_utc())
}

fn candidates_dir(state: &AppState) -> PathBuf {
    state.config.retrain.dir.join("candidates")
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}

// --- labels ---------------------------------------------------------------------------

/// Every labelled domain's newest label document, sorted by domain.
pub async fn current_labels(state: &AppState) -> Result<Vec<Value>, ApiError> {
    let mut newest: std::collections::BTreeMap<String, Value> = Default::default();
    let mut after: Option<Value> = None;
    loop {
        let mut body = json!({
            "size": 1000,
            "sort": [{"@timestamp": "asc"}, {"registered_domain": "asc"}],
            "query": {"match_all": {}}
        });
        if let Some(a) = &after {
            body["search_after"] = a.clone();
        }
        let reply = state
            .store
            .search(&state.store.indices.labels, body)
            .await?;
        let hits = reply["hits"]["hits"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for h in &hits {
            if let Some(d) = h["_source"]["registered_domain"].as_str() {
                newest.insert(d.to_owned(), h["_source"].clone());
            }
        }
        if hits.len() < 1000 {
            break;
        }
        after = hits.last().map(|h| h["sort"].clone());
    }
    Ok(newest.into_values().collect())
}

/// The label CSV (see [`LABELS_CSV_HEADER`]): one row per labelled domain, its newest label.
pub fn labels_csv(labels: &[Value]) -> String {
    let mut out = String::from(LABELS_CSV_HEADER);
    for l in labels {
        let s = |k: &str| l[k].as_str().unwrap_or_default().to_owned();
        out.push_str(&format!(
            "{},{},,{},{},{}\n",
            s("registered_domain"),
            s("label"),
            csv_field(&s("labelled_by")),
            csv_field(&s("@timestamp")),
            csv_field(&s("reason")),
        ));
    }
    out
}

pub async fn export_labels(state: &AppState) -> Result<String, ApiError> {
    Ok(labels_csv(&current_labels(state).await?))
}

// --- the scorer -----------------------------------------------------------------------

/// What the scorer serves (`GET /v1/model`).
#[derive(Debug, Clone, Serialize)]
pub struct Serving {
    pub model_version: String,
    pub card_path: String,
    pub monitor: f64,
    pub block: f64,
}

pub async fn serving(state: &AppState) -> Result<Serving, ApiError> {
    let base = state.config.scorer_url.trim_end_matches('/');
    if base.is_empty() {
        return Err(ApiError::Unavailable(
            "no scorer_url configured: the console cannot tell which model is serving".into(),
        ));
    }
    let url = format!("{base}/v1/model");
    let upstream = |e: reqwest::Error| ApiError::Upstream(format!("{url}: {e}"));
    let reply: Value = state
        .http
        .get(&url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(upstream)?
        .json()
        .await
        .map_err(upstream)?;
    let field = |v: &Value, what: &str| {
        v.as_f64()
            .ok_or_else(|| ApiError::Upstream(format!("{url}: no {what} in the reply")))
    };
    Ok(Serving {
        model_version: reply["model_version"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        card_path: reply["card_path"].as_str().unwrap_or_default().to_owned(),
        monitor: field(
            &reply["thresholds_in_force"]["monitor"],
            "monitor threshold",
        )?,
        block: field(&reply["thresholds_in_force"]["block"], "block threshold")?,
    })
}

/// `POST /admin/reload {"card_path"}` with the admin token; the scorer's answer.
async fn reload_scorer(state: &AppState, card: &Path) -> Result<Value, ApiError> {
    let token_file = &state.config.retrain.scorer_token_file;
    if token_file.as_os_str().is_empty() {
        return Err(ApiError::Unavailable(
            "retrain.scorer_token_file is not set: the console cannot ask the scorer to load a model"
                .into(),
        ));
    }
    let token = std::fs::read_to_string(token_file).map_err(|e| {
        ApiError::Unavailable(format!(
            "the scorer admin token file {}: {e}",
            token_file.display()
        ))
    })?;
    let url = format!(
        "{}/admin/reload",
        state.config.scorer_url.trim_end_matches('/')
    );
    let r = state
        .http
        .post(&url)
        .bearer_auth(token.trim())
        .timeout(std::time::Duration::from_secs(60))
        .json(&json!({"card_path": absolute(card)}))
        .send()
        .await
        .map_err(|e| ApiError::Upstream(format!("{url}: {e}")))?;
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        Ok(body)
    } else if status.as_u16() == 422 {
        Err(ApiError::Refused(format!(
            "the scorer refused the model (the previous one keeps serving): {}",
            body["detail"].as_str().unwrap_or("no detail")
        )))
    } else {
        Err(ApiError::Upstream(format!(
            "{url} answered {status}: {}",
            body["detail"].as_str().unwrap_or("no detail")
        )))
    }
}

// --- the job --------------------------------------------------------------------------

/// Benign and malicious sample rows and the shadow names, from the last
/// `retrain.shadow_days` of verdicts (docs/contracts.md, "Retraining").
async fn recent(
    state: &AppState,
    serving: &Serving,
    sample: usize,
) -> Result<(String, String, usize, usize), ApiError> {
    let cfg = &state.config.retrain;
    let since = format!("now-{}d", cfg.shadow_days);
    let terms = |size: usize| json!({"terms": {"field": "dns.question.registered_domain", "size": size.max(1)}});
    let body = json!({
        "size": 0,
        "query": {"range": {"@timestamp": {"gte": since}}},
        "aggs": {
            "shadow": terms(cfg.shadow_max_names),
            "benign": {"filter": {"bool": {"filter": [
                {"term": {"dohguard.verdict": "allow"}},
                {"term": {"dohguard.reason": "model"}},
                {"range": {"dohguard.score": {"lt": serving.monitor * 0.5}}}
            ]}}, "aggs": {"d": terms(sample / 2)}},
            "malicious": {"filter": {"bool": {"filter": [
                {"term": {"dohguard.verdict": "block"}},
                {"term": {"dohguard.reason": "model"}}
            ]}}, "aggs": {"d": terms(sample / 2)}}
        }
    });
    let reply = state
        .store
        .search(&state.store.indices.verdicts, body)
        .await?;
    let keys = |v: &Value| -> Vec<String> {
        v["buckets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| b["key"].as_str().map(str::to_owned))
            .collect()
    };
    let aggs = &reply["aggregations"];
    let mut sample_csv = String::from("name,label\n");
    let benign = keys(&aggs["benign"]["d"]);
    let malicious = keys(&aggs["malicious"]["d"]);
    for d in &benign {
        sample_csv.push_str(&format!("{d},benign\n"));
    }
    for d in &malicious {
        sample_csv.push_str(&format!("{d},malicious\n"));
    }
    let mut shadow_csv = String::from("name\n");
    for d in keys(&aggs["shadow"]) {
        shadow_csv.push_str(&d);
        shadow_csv.push('\n');
    }
    Ok((sample_csv, shadow_csv, benign.len(), malicious.len()))
}

/// The `.csv` files directly in `retrain.data_dir` (sorted), or why there are none to use.
/// `Ok(None)` when no folder is configured. Rows are read (and checked) by the job.
pub fn data_dir_files(state: &AppState) -> Result<Option<Vec<String>>, String> {
    let dir = &state.config.retrain.data_dir;
    if dir.as_os_str().is_empty() {
        return Ok(None);
    }
    let entries = std::fs::read_dir(dir).map_err(|e| {
        format!(
            "retrain.data_dir {}: cannot be read ({e}): create it or fix the setting",
            dir.display()
        )
    })?;
    let mut files: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.to_ascii_lowercase().ends_with(".csv"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!(
            "retrain.data_dir {}: no .csv files (each needs the header name,label[,family])",
            dir.display()
        ));
    }
    Ok(Some(files))
}

fn new_id() -> String {
    let t = OffsetDateTime::now_utc();
    format!(
        "c{:04}{:02}{:02}{:02}{:02}{:02}-{}",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        &crate::auth::random_token(4)[..4].to_lowercase()
    )
}

/// Starts the retrain job; 409 while one runs.
pub async fn start(
    state: &AppState,
    session: &Session,
    req: RetrainRequest,
) -> Result<Job, ApiError> {
    session.require(Role::Admin)?;
    let cfg = &state.config.retrain;
    let epochs = req.epochs.unwrap_or(cfg.epochs);
    if !(1..=50).contains(&epochs) {
        return Err(ApiError::bad("epochs", "1 to 50"));
    }
    let max_seconds = req.max_seconds.unwrap_or(cfg.max_seconds);
    if !(1..=3600).contains(&max_seconds) {
        return Err(ApiError::bad("max_seconds", "1 to 3600"));
    }
    let sample = req.sample.unwrap_or(cfg.sample);
    if sample > 100_000 {
        return Err(ApiError::bad("sample", "at most 100000"));
    }
    if matches!(state.retrain.current(), Some(j) if j.state == JobState::Running) {
        return Err(ApiError::Conflict(
            "a retrain is running; wait for it or cancel it".into(),
        ));
    }
    let serving = serving(state).await?;
    if serving.card_path.is_empty() || !Path::new(&serving.card_path).is_file() {
        return Err(ApiError::Unavailable(format!(
            "the serving model's card {:?} is not readable here: fine-tuning starts from it",
            serving.card_path
        )));
    }
    let labels = current_labels(state).await?;
    if labels.is_empty() {
        return Err(ApiError::Refused(
            "no labels yet: label domains in the vetting queue first".into(),
        ));
    }
    let data_files = data_dir_files(state).map_err(ApiError::Refused)?;
    let (sample_csv, shadow_csv, n_benign, n_malicious) = recent(state, &serving, sample).await?;

    let id = new_id();
    let dir = candidates_dir(state).join(&id);
    let input = dir.join("input");
    let write = |name: &str, text: &str| -> Result<PathBuf, ApiError> {
        let p = input.join(name);
        std::fs::create_dir_all(&input)
            .and_then(|_| std::fs::write(&p, text))
            .map_err(|e| ApiError::Unavailable(format!("writing {}: {e}", p.display())))?;
        Ok(p)
    };
    let labels_path = write("labels.csv", &labels_csv(&labels))?;
    let sample_path = write("sample.csv", &sample_csv)?;
    let shadow_path = write("shadow.csv", &shadow_csv)?;
    let log_path = dir.join("job.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|e| ApiError::Unavailable(format!("creating {}: {e}", log_path.display())))?;

    let mut command = tokio::process::Command::new(&cfg.python);
    command
        .args(["-m", "dohguard_models", "finetune", "--progress-json"])
        .arg("--base")
        .arg(&serving.card_path)
        .arg("--labels")
        .arg(absolute(&labels_path))
        .arg("--sample")
        .arg(absolute(&sample_path))
        .arg("--shadow")
        .arg(absolute(&shadow_path))
        .arg("--out")
        .arg(absolute(&dir))
        .args(["--epochs", &epochs.to_string()])
        .args(["--max-seconds", &max_seconds.to_string()])
        .args(["--monitor", &serving.monitor.to_string()])
        .args(["--block", &serving.block.to_string()])
        .args(["--max-regression", &cfg.max_regression.to_string()])
        .args(["--threads", "2"])
        .current_dir(&cfg.models_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true);
    if data_files.is_some() {
        command.arg("--data-dir").arg(absolute(&cfg.data_dir));
    }
    let mut child = command.spawn().map_err(|e| {
        ApiError::Unavailable(format!(
            "cannot run {:?} (retrain.python) in {} (retrain.models_dir): {e}",
            cfg.python,
            cfg.models_dir.display()
        ))
    })?;
    let data = match &data_files {
        Some(files) => format!(
            ", plus the rows of the operator's data folder {} ({})",
            absolute(&cfg.data_dir).display(),
            files.join(", ")
        ),
        None => String::new(),
    };
    let source = format!(
        "fine-tune of the serving model {} on {} analyst labels and {} recent verdicts ({} allowed well below the monitor threshold as benign, {} model blocks as malicious) from the last {} days{data}; shadow comparison on {} recent registered domains",
        serving.model_version,
        labels.len(),
        n_benign + n_malicious,
        n_benign,
        n_malicious,
        cfg.shadow_days,
        shadow_csv.lines().count() - 1
    );
    let job = Job {
        id: id.clone(),
        state: JobState::Running,
        stage: "starting".into(),
        progress: 0.0,
        message: String::new(),
        started_by: session.username.clone(),
        started_at: now(),
        finished_at: None,
        source,
        serving_version: serving.model_version.clone(),
    };
    let (cancel_tx, cancel_rx) = tokio::sync::oneshot::channel();
    {
        let mut slot = state.retrain.inner.lock().expect("jobs lock");
        if matches!(&slot.job, Some(j) if j.state == JobState::Running) {
            return Err(ApiError::Conflict(
                "a retrain is running; wait for it or cancel it".into(),
            ));
        }
        slot.job = Some(job.clone());
        slot.cancel = Some(cancel_tx);
    }
    crate::audit::record(
        state,
        &session.username,
        "retrain.start",
        "success",
        &id,
        None,
        json!({"serving": serving.model_version, "labels": labels.len(), "epochs": epochs}),
    )
    .await?;
    let stdout = child.stdout.take().expect("stdout is piped");
    tokio::spawn(watch(
        state.retrain.clone(),
        child,
        stdout,
        cancel_rx,
        dir,
        log_path,
    ));
    Ok(job)
}

/// Follows the job's progress lines until it ends, is cancelled, or fails.
async fn watch(
    jobs: Jobs,
    mut child: tokio::process::Child,
    stdout: tokio::process::ChildStdout,
    mut cancel: tokio::sync::oneshot::Receiver<()>,
    dir: PathBuf,
    log_path: PathBuf,
) {
    let mut lines = BufReader::new(stdout).lines();
    let mut stdout_open = true;
    let outcome = loop {
        tokio::select! {
            _ = &mut cancel => {
                let _ = child.kill().await;
                break (JobState::Cancelled, "cancelled".to_owned());
            }
            line = lines.next_line(), if stdout_open => match line {
                Ok(Some(line)) => {
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        if let Some(stage) = v["stage"].as_str() {
                            jobs.update(|j| {
                                j.stage = stage.to_owned();
                                j.progress = v["progress"].as_f64().unwrap_or(j.progress);
                                j.message = v["message"].as_str().unwrap_or_default().to_owned();
                            });
                        }
                    }
                }
                _ => stdout_open = false,
            },
            status = child.wait(), if !stdout_open => {
                break match status {
                    Ok(s) if s.success() => (JobState::Succeeded, "candidate ready".to_owned()),
                    Ok(s) => (JobState::Failed, format!("the training job failed ({s}): {}", last_error(&log_path))),
                    Err(e) => (JobState::Failed, format!("waiting for the training job: {e}")),
                };
            }
        }
    };
    if outcome.0 == JobState::Cancelled {
        // Nothing half-written stays behind as a candidate.
        let _ = std::fs::remove_dir_all(&dir);
    }
    jobs.update(|j| {
        j.state = outcome.0;
        j.message = outcome.1.clone();
        j.finished_at = Some(now());
        if outcome.0 == JobState::Succeeded {
            j.progress = 1.0;
        }
    });
    if outcome.0 != JobState::Cancelled {
        if let Some(job) = jobs.current() {
            let _ = std::fs::write(
                dir.join("status.json"),
                serde_json::to_vec_pretty(&job).expect("serialises"),
            );
        }
    }
}

/// The last `error:` line of the job's log (the pipeline's one-line message), else its tail.
fn last_error(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .or_else(|| text.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("no output")
        .to_owned()
}

pub async fn cancel(state: &AppState, session: &Session) -> Result<Job, ApiError> {
    session.require(Role::Admin)?;
    let job = {
        let mut slot = state.retrain.inner.lock().expect("jobs lock");
        let sender = slot.cancel.take();
        match (&slot.job, sender) {
            (Some(j), Some(tx)) if j.state == JobState::Running => {
                let _ = tx.send(());
                j.clone()
            }
            _ => return Err(ApiError::Conflict("no retrain is running".into())),
        }
    };
    crate::audit::record(
        state,
        &session.username,
        "retrain.cancel",
        "success",
        &job.id,
        None,
        json!({}),
    )
    .await?;
    Ok(job)
}

// --- candidates -----------------------------------------------------------------------

/// One candidate folder as the console shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub id: String,
    pub status: Option<Job>,
    pub report: Option<Value>,
    pub card_path: String,
    pub model_version: Option<String>,
    pub passed: bool,
}

fn valid_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ApiError::bad("id", format!("{id:?} is not a candidate id")));
    }
    Ok(())
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

pub fn candidate(state: &AppState, id: &str) -> Result<Candidate, ApiError> {
    valid_id(id)?;
    let dir = candidates_dir(state).join(id);
    if !dir.is_dir() {
        return Err(ApiError::NotFound(format!("candidate {id:?}")));
    }
    let report = read_json(&dir.join("report.json"));
    let status = read_json(&dir.join("status.json")).and_then(|v| serde_json::from_value(v).ok());
    Ok(Candidate {
        id: id.to_owned(),
        model_version: report
            .as_ref()
            .and_then(|r| r["candidate"]["model_version"].as_str().map(str::to_owned)),
        passed: report.as_ref().is_some_and(|r| r["passed"] == true),
        report,
        status,
        card_path: absolute(&dir.join("model.card.json")).display().to_string(),
    })
}

/// Every candidate, newest first (the running job's folder included).
pub fn candidates(state: &AppState) -> Vec<Candidate> {
    let mut ids: Vec<String> = std::fs::read_dir(candidates_dir(state))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids.iter()
        .filter_map(|id| candidate(state, id).ok())
        .collect()
}

/// The checks a candidate must pass to be promoted, done again now (files can change).
pub fn check(c: &Candidate) -> Result<(), ApiError> {
    let Some(report) = &c.report else {
        return Err(ApiError::Refused(format!(
            "candidate {} has no report: its job did not finish",
            c.id
        )));
    };
    if report["passed"] != true {
        let failed: Vec<String> = report["checks"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, v)| v["ok"] != true)
            .map(|(k, v)| format!("{k}: {}", v["detail"].as_str().unwrap_or("failed")))
            .collect();
        return Err(ApiError::Refused(format!(
            "candidate {} failed its checks: {}",
            c.id,
            failed.join("; ")
        )));
    }
    let card_path = Path::new(&c.card_path);
    let card = read_json(card_path).ok_or_else(|| {
        ApiError::Refused(format!(
            "candidate {}: the model card is missing or not JSON",
            c.id
        ))
    })?;
    let onnx = card_path.with_file_name(card["onnx_file"].as_str().unwrap_or("model.onnx"));
    let bytes = std::fs::read(&onnx)
        .map_err(|e| ApiError::Refused(format!("candidate {}: {}: {e}", c.id, onnx.display())))?;
    let actual = hex::encode(Sha256::digest(&bytes));
    if card["sha256"].as_str() != Some(actual.as_str()) {
        return Err(ApiError::Refused(format!(
            "candidate {}: model.onnx has sha256 {actual}, its card says {}",
            c.id, card["sha256"]
        )));
    }
    Ok(())
}

// --- promote and roll back ------------------------------------------------------------

/// `<retrain.dir>/serving.json`: the card paths served before each promotion (a stack).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct History {
    pub previous: Vec<PreviousModel>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreviousModel {
    pub card_path: String,
    pub model_version: String,
    pub replaced_at: String,
    pub replaced_by: String,
}

fn history_path(state: &AppState) -> PathBuf {
    state.config.retrain.dir.join("serving.json")
}

pub fn history(state: &AppState) -> History {
    read_json(&history_path(state))
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

fn save_history(state: &AppState, h: &History) -> Result<(), ApiError> {
    let path = history_path(state);
    let tmp = path.with_extension("json.tmp");
    std::fs::create_dir_all(&state.config.retrain.dir)
        .and_then(|_| std::fs::write(&tmp, serde_json::to_vec_pretty(h).expect("serialises")))
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| ApiError::Unavailable(format!("writing {}: {e}", path.display())))
}

/// Serialises promote and roll back (each reads, reloads, then writes the history).
static SWITCH: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub async fn promote(state: &AppState, session: &Session, id: &str) -> Result<Value, ApiError> {
    session.require(Role::Admin)?;
    let _guard = SWITCH.lock().await;
    let outcome = switch_to_candidate(state, session, id).await;
    audit_switch(state, session, "model.promote", id, &outcome).await?;
    outcome
}

async fn switch_to_candidate(
    state: &AppState,
    session: &Session,
    id: &str,
) -> Result<Value, ApiError> {
    let c = candidate(state, id)?;
    check(&c)?;
    let serving = serving(state).await?;
    if c.model_version.as_deref() == Some(serving.model_version.as_str()) {
        return Err(ApiError::Conflict(format!(
            "{} is already serving",
            serving.model_version
        )));
    }
    let reply = reload_scorer(state, Path::new(&c.card_path)).await?;
    let mut h = history(state);
    h.previous.push(PreviousModel {
        card_path: serving.card_path.clone(),
        model_version: serving.model_version.clone(),
        replaced_at: now(),
        replaced_by: session.username.clone(),
    });
    save_history(state, &h)?;
    Ok(
        json!({"promoted": id, "model_version": reply["model_version"],
              "previous": serving.model_version, "persisted": reply["persisted"]}),
    )
}

pub async fn rollback(state: &AppState, session: &Session) -> Result<Value, ApiError> {
    session.require(Role::Admin)?;
    let _guard = SWITCH.lock().await;
    let outcome = switch_back(state).await;
    let target = match &outcome {
        Ok(v) => v["model_version"].as_str().unwrap_or("-").to_owned(),
        Err(_) => "-".to_owned(),
    };
    audit_switch(state, session, "model.rollback", &target, &outcome).await?;
    outcome
}

async fn switch_back(state: &AppState) -> Result<Value, ApiError> {
    let mut h = history(state);
    let Some(previous) = h.previous.last().cloned() else {
        return Err(ApiError::Conflict(
            "nothing to roll back to: no model was promoted from this console".into(),
        ));
    };
    let current = serving(state).await.ok();
    let reply = reload_scorer(state, Path::new(&previous.card_path)).await?;
    h.previous.pop();
    save_history(state, &h)?;
    Ok(json!({"model_version": reply["model_version"],
              "replaced": current.map(|s| s.model_version), "persisted": reply["persisted"]}))
}

/// One audit entry for a promotion or roll back, with its outcome (refusals included).
async fn audit_switch(
    state: &AppState,
    session: &Session,
    action: &str,
    target: &str,
    outcome: &Result<Value, ApiError>,
) -> Result<(), ApiError> {
    let (result, details) = match outcome {
        Ok(v) => ("success", v.clone()),
        Err(e) => ("failure", json!({"error": e.to_string()})),
    };
    crate::audit::record(
        state,
        &session.username,
        action,
        result,
        target,
        None,
        details,
    )
    .await?;
    Ok(())
}

/// Everything the models page and `GET /api/retrain` show.
pub async fn overview(state: &AppState) -> Value {
    let serving = serving(state).await;
    json!({
        "job": state.retrain.current(),
        "serving": serving.as_ref().ok(),
        "serving_error": serving.as_ref().err().map(|e| e.to_string()),
        "candidates": candidates(state).iter().map(summary).collect::<Vec<_>>(),
        "previous": history(state).previous,
        "data_dir": data_dir_overview(state),
    })
}

/// `retrain.data_dir` for the page: its path and `.csv` files, or why it cannot be used.
fn data_dir_overview(state: &AppState) -> Value {
    let dir = &state.config.retrain.data_dir;
    match data_dir_files(state) {
        Ok(None) => Value::Null,
        Ok(Some(files)) => json!({"path": absolute(dir), "files": files}),
        Err(problem) => json!({"path": absolute(dir), "error": problem}),
    }
}

/// A candidate without the long lists of its report.
pub fn summary(c: &Candidate) -> Value {
    let r = c.report.as_ref();
    json!({
        "id": c.id, "model_version": c.model_version, "passed": c.passed,
        "state": c.status.as_ref().map(|s| s.state),
        "message": c.status.as_ref().map(|s| s.message.clone()),
        "created_at": c.status.as_ref().map(|s| s.started_at.clone()),
        "changed": r.map(|r| r["shadow"]["changed"].clone()),
        "names": r.map(|r| r["shadow"]["names"].clone()),
        "checks": r.map(|r| r["checks"].clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_label_csv_has_the_pipelines_columns_first_and_quotes_the_rest() {
        let csv = labels_csv(&[json!({
            "registered_domain": "example.com", "label": "malicious",
            "labelled_by": "alice", "@timestamp": "2026-12-02T10:00:00Z",
            "reason": "=cmd, \"quoted\""
        })]);
        assert_eq!(
            csv,
            "name,label,family,labelled_by,labelled_at,reason\n\
             example.com,malicious,,alice,2026-12-02T10:00:00Z,\"'=cmd, \"\"quoted\"\"\"\n"
        );
    }

    #[test]
    fn candidate_ids_cannot_leave_the_candidates_folder() {
        assert!(valid_id("c20261202120000-ab12").is_ok());
        for bad in ["", "../x", "a/b", "a.b", &"x".repeat(65)] {
            assert!(valid_id(bad).is_err(), "{bad}");
        }
    }
}
