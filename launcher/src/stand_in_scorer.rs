//! A minimal HTTP scorer speaking the callout contract (`POST /v1/score`, docs/contracts.md,
//! with the shared types of `dohguard_core::contract`) for tests that exercise the filter's callout without the real model: names equal to or
//! under `dga.test` are blocked, every other name is allowed. It counts the requests it
//! served and can be switched to answer 500 or garbage, to exercise the filter's failure modes.
//! It also takes the filter's decision-event batches (`POST /v1/events`, contract 3) and counts
//! the events and reported drops, storing nothing: the benchmarks measure the filter's side of
//! the record with it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use dohguard_core::contract::{
    BatchReply, BatchRequest, Reason, Scope, ScoreReply, ScoreRequest, Verdict,
};

use crate::background::BackgroundServer;
use crate::LaunchError;

/// The suffix the stand-in blocks.
pub const BLOCKED_SUFFIX: &str = "dga.test";

/// How the stand-in answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Behaviour {
    /// Per the contract.
    Contract = 0,
    /// HTTP 500 for everything.
    ServerError = 1,
    /// 200 with a body that is not the contract's JSON.
    Malformed = 2,
    /// Per the contract, after [`SLOW_REPLY`].
    Slow = 3,
}

/// How long [`Behaviour::Slow`] takes to answer.
pub const SLOW_REPLY: std::time::Duration = std::time::Duration::from_millis(800);

#[derive(Debug, Default)]
struct Shared {
    requests: AtomicU64,
    behaviour: AtomicU8,
    events: AtomicU64,
    events_dropped: AtomicU64,
}

#[derive(Debug)]
pub struct StandInScorer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    _server: BackgroundServer,
}

impl StandInScorer {
    /// Serves on 127.0.0.1 on an ephemeral port from a thread with its own Tokio runtime.
    pub fn start() -> Result<Self, LaunchError> {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/v1/score", post(score))
            .route("/v1/events", post(events))
            .with_state(shared.clone());
        let server = BackgroundServer::start("stand-in scorer", app)?;
        Ok(Self {
            addr: server.addr,
            shared,
            _server: server,
        })
    }

    /// Requests served so far (any behaviour).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Decision events received in batches so far, and the drops those batches reported.
    pub fn events(&self) -> (u64, u64) {
        (
            self.shared.events.load(Ordering::SeqCst),
            self.shared.events_dropped.load(Ordering::SeqCst),
        )
    }

    pub fn set_behaviour(&self, behaviour: Behaviour) {
        self.shared
            .behaviour
            .store(behaviour as u8, Ordering::SeqCst);
    }
}

async fn score(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    match shared.behaviour.load(Ordering::SeqCst) {
        1 => return (StatusCode::INTERNAL_SERVER_ERROR, "stand-in failure").into_response(),
        2 => return (StatusCode::OK, "{\"not\": \"a verdict\"").into_response(),
        3 => tokio::time::sleep(SLOW_REPLY).await,
        _ => {}
    }
    if let Ok(batch) = serde_json::from_slice::<BatchRequest>(&body) {
        let results = batch.names.iter().map(verdict_for).collect();
        return Json(BatchReply { results }).into_response();
    }
    match serde_json::from_slice::<ScoreRequest>(&body) {
        Ok(request) => Json(verdict_for(&request)).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, format!("not a score request: {e}")).into_response(),
    }
}

async fn events(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    match serde_json::from_slice::<dohguard_schema::EventBatch>(&body) {
        Ok(batch) => {
            shared
                .events
                .fetch_add(batch.events.len() as u64, Ordering::SeqCst);
            shared
                .events_dropped
                .fetch_add(batch.dropped, Ordering::SeqCst);
            StatusCode::ACCEPTED.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("not an event batch: {e}")).into_response(),
    }
}

/// The contract reply for one request: block at or under [`BLOCKED_SUFFIX`], allow the rest.
pub fn verdict_for(request: &ScoreRequest) -> ScoreReply {
    let name = request.name.trim_end_matches('.').to_ascii_lowercase();
    let blocked = name == BLOCKED_SUFFIX || name.ends_with(&format!(".{BLOCKED_SUFFIX}"));
    ScoreReply {
        registered_domain: Some(name.clone()),
        name,
        score: if blocked { 0.99 } else { 0.01 },
        verdict: if blocked {
            Verdict::Block
        } else {
            Verdict::Allow
        },
        reason: Reason::Model,
        scope: Scope::Name,
        model_version: "stand-in".to_owned(),
        ttl: 60,
        detector: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(name: &str) -> ScoreRequest {
        ScoreRequest {
            name: name.to_owned(),
            qtype: "A".to_owned(),
            client: None,
            caller_records: false,
        }
    }

    #[test]
    fn blocks_the_suffix_and_allows_the_rest() {
        assert_eq!(
            verdict_for(&request("x1y2.dga.test")).verdict,
            Verdict::Block
        );
        assert_eq!(verdict_for(&request("dga.test.")).verdict, Verdict::Block);
        assert_eq!(verdict_for(&request("notdga.test")).verdict, Verdict::Allow);
        assert_eq!(
            verdict_for(&request("www.example.test")).verdict,
            Verdict::Allow
        );
    }

    #[test]
    fn serves_the_contract_over_http() {
        let scorer = StandInScorer::start().unwrap();
        let url = format!("http://{}/v1/score", scorer.addr);
        let one = serde_json::json!({"name": "a.dga.test", "qtype": "A"});
        let (status, reply) = crate::http::post_json(&url, &one).unwrap();
        assert_eq!(status, 200);
        let reply: ScoreReply = serde_json::from_value(reply).unwrap();
        assert_eq!((reply.verdict, reply.ttl), (Verdict::Block, 60));

        let batch = serde_json::json!({"names": [{"name": "a.test", "qtype": "A"}, one]});
        let (status, reply) = crate::http::post_json(&url, &batch).unwrap();
        assert_eq!(status, 200);
        let reply: BatchReply = serde_json::from_value(reply).unwrap();
        let verdicts: Vec<Verdict> = reply.results.iter().map(|r| r.verdict).collect();
        assert_eq!(verdicts, [Verdict::Allow, Verdict::Block]);

        let (status, text) = crate::http::post_json(&url, &serde_json::json!({"nom": 1})).unwrap();
        assert_eq!(status, 400);
        assert!(
            text.as_str().unwrap().contains("not a score request"),
            "{text}"
        );
        assert_eq!(scorer.requests(), 3);
    }
}
