//! The decision event: one per DoH query the filter answers or forwards (malformed requests
//! included), made by the filter when the stream ends and sent in batches.

use dohguard_core::contract::{Detector, Verdict};
use serde::{Deserialize, Serialize};

/// Which layer decided a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    AllowList,
    DenyList,
    /// The verdict cache answered (the cached verdict's own layer is in `cached_layer`).
    Cache,
    Model,
    /// The scorer could not be asked or failed; `failure_mode` decided.
    FailureMode,
    /// No scorer is configured: unlisted names are allowed.
    NoScorer,
    /// A name the model does not judge (the root, `.arpa`).
    Unscored,
    /// The name was allowed, but its upstream answer pointed (CNAME, HTTPS/SVCB target) to a
    /// blocked name; `cname_target` names it, `rule` the deny rule it matched.
    Cname,
    /// An analyst's override decided (checked before the lists and the cache); `rule` is
    /// the override's id.
    Override,
    /// The request was refused with a 4xx before any decision.
    Malformed,
}

impl Layer {
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::AllowList => "allow_list",
            Layer::DenyList => "deny_list",
            Layer::Cache => "cache",
            Layer::Model => "model",
            Layer::FailureMode => "failure_mode",
            Layer::NoScorer => "no_scorer",
            Layer::Unscored => "unscored",
            Layer::Cname => "cname",
            Layer::Override => "override",
            Layer::Malformed => "malformed",
        }
    }
}

/// What the client got back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Answer {
    /// The filter answered with its block answer (`mode`: `nxdomain`, `refused`, `nodata`,
    /// `sinkhole`, `addresses`) and this RCODE.
    Blocked { mode: String, rcode: u16 },
    /// Forwarded upstream; RCODE and answer count read from the DNS header of the upstream's
    /// reply (`None` when the reply was not a DNS message, e.g. an HTTP error).
    Forwarded {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rcode: Option<u16>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        answers: Option<u16>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        http_status: Option<u16>,
    },
    /// Refused with an HTTP 4xx (malformed request) and this one-line reason.
    Rejected { http_status: u16, reason: String },
    /// The filter could not build an answer (HTTP 500).
    Failed { http_status: u16 },
}

/// One DoH query, as the filter saw and decided it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionEvent {
    /// Unique per query and fixed when the event is made: the document `_id`, so retries and
    /// replays store it once.
    pub id: String,
    /// Request start, milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// Client IP address without port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The downstream's mesh identity (SPIFFE ID from its certificate), when Envoy knows one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// Envoy's request id (`x-request-id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Normalised query name (`.` for the root); `None` when the request was malformed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// RR type mnemonic (`A`, `TYPE65`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qtype: Option<String>,
    /// `None` for malformed requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    pub layer: Layer,
    /// For cache hits, the layer of the cached verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_layer: Option<Layer>,
    /// The list rule that matched, in list syntax (`*.ads.test`, `.evil.test`, `one.test`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// For layer `cname`: the CNAME or HTTPS/SVCB target that was blocked (absent when an
    /// over-size answer was blocked uninspected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cname_target: Option<String>,
    /// Model score, when the model decided in this request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    /// For a model verdict (layer `model`, or a cached one), the detector that decided:
    /// `dga`, `tunnel` or `lookalike`; absent when the scorer named none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector: Option<Detector>,
    /// Whether the verdict came from the verdict cache.
    pub cached: bool,
    /// False for a `block` verdict forwarded because the filter runs in monitor mode.
    pub enforced: bool,
    pub answer: Answer,
    /// Gateway-side time from request headers to the end of the stream, microseconds.
    pub latency_us: u64,
}

/// What one filter VM sends per `POST /v1/events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventBatch {
    /// Identifies the sending VM (random per VM start); with `seq` it names the batch.
    pub source: String,
    pub seq: u64,
    pub events: Vec<DecisionEvent>,
    /// Events this VM dropped (its buffer was full) since its previous batch; more than 0
    /// makes the scorer write a gap marker document.
    #[serde(default)]
    pub dropped: u64,
}
