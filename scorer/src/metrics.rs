//! Prometheus metrics of the whole service, in one registry served at `GET /metrics`.
//!
//! [`Metrics`] is cheap to clone (every metric is an `Arc` inside) and is handed to each part
//! at start; the sink counters are also read back by tests and benchmarks.

use dohguard_serving::metrics::Exposition;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    pub verdict: &'static str,
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

/// Why names left the inference queue uncomputed.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabel {
    /// `caller_gone` (the request was abandoned) or `too_old` (waited past `max_queue_age_ms`).
    pub reason: &'static str,
}

impl DropLabel {
    pub fn of(fate: crate::model::batcher::Fate) -> Self {
        use crate::model::batcher::Fate;
        Self {
            reason: match fate {
                Fate::CallerGone => "caller_gone",
                Fate::TooOld => "too_old",
                Fate::Run => "run",
            },
        }
    }
}

impl OutcomeLabel {
    pub fn ok() -> Self {
        Self { outcome: "ok" }
    }
    pub fn failed() -> Self {
        Self { outcome: "failed" }
    }
}

/// Counters of the Elasticsearch sink (documents, not requests, unless named so).
#[derive(Debug, Clone, Default)]
pub struct SinkCounters {
    /// Accepted into the in-memory queue.
    pub queued: Counter,
    /// Confirmed stored by Elasticsearch (201), live path.
    pub sent: Counter,
    /// Bulk requests (or item subsets) sent again after a 429/5xx/connection error.
    pub retried: Counter,
    /// Written to the on-disk spool.
    pub spooled: Counter,
    /// Confirmed stored from the spool.
    pub replayed: Counter,
    /// Answered 409 on `create`: the document was already stored (a replay after an ambiguous failure).
    pub duplicates: Counter,
    /// Refused by Elasticsearch as invalid (4xx other than 409/429); kept in the spool's dead-letter file.
    pub rejected: Counter,
    /// Lost: could not be queued, stored or spooled (direct verdicts at the spool's bound or on
    /// a disk error; a scorer gap marker reports them). 0 unless the spool is full or failing.
    pub dropped: Counter,
    /// Written to the write-ahead journal before being acknowledged.
    pub journaled: Counter,
    /// Filter events refused with 503 (spool full or unwritable); the filter keeps and resends them.
    pub refused: Counter,
    /// Spool segments moved to quarantine (unreadable, or lines that do not parse).
    pub quarantined: Counter,
    /// Time per bulk request to Elasticsearch, answered or failed.
    pub bulk_seconds: BulkLatency,
    /// Requests (not documents) Elasticsearch refused as a whole with 401/403.
    pub auth_failures: Counter,
    /// Index template installs refused (e.g. 403 for a least-privilege key); delivery goes on.
    pub template_failures: Counter,
}

/// The bulk request latency histogram (1 ms to about 65 s), a newtype so that
/// [`SinkCounters`] keeps its `Default`.
#[derive(Debug, Clone)]
pub struct BulkLatency(pub Histogram);

impl Default for BulkLatency {
    fn default() -> Self {
        BulkLatency(Histogram::new(exponential_buckets(0.001, 2.0, 17)))
    }
}

#[derive(Clone)]
pub struct Metrics {
    registry: Exposition,
    pub http_requests: Family<RouteLabels, Counter>,
    pub http_latency: Family<RouteLabel, Histogram>,
    pub batch_size: Histogram,
    pub inference_seconds: Histogram,
    pub queue_depth: Gauge,
    /// Names refused at once because the inference queue was full (answered 503).
    pub queue_rejected: Counter,
    /// Names taken off the inference queue and not computed, by reason.
    pub queue_dropped: Family<DropLabel, Counter>,
    pub verdicts: Family<VerdictLabels, Counter>,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    /// 1 while the session runs on CPU although CUDA was configured or detected.
    pub cpu_fallback: Gauge,
    pub model_reloads: Family<OutcomeLabel, Counter>,
    pub sink: SinkCounters,
    /// Documents waiting in the sink's memory queue.
    pub sink_queue_depth: Gauge,
    /// Bytes in the on-disk spool not yet replayed.
    pub spool_bytes: Gauge,
    /// The spool's bound (`spool.max_bytes`).
    pub spool_max_bytes: Gauge,
    /// 1 while Elasticsearch refuses the credential (401/403) and delivery waits for it.
    pub sink_auth_failed: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let http_requests = Family::<RouteLabels, Counter>::default();
        let http_latency = Family::<RouteLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
        });
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        let inference_seconds = Histogram::new(exponential_buckets(0.000_01, 2.0, 20));
        let m = Self {
            registry: Exposition::default(),
            http_requests,
            http_latency,
            batch_size,
            inference_seconds,
            queue_depth: Gauge::default(),
            queue_rejected: Counter::default(),
            queue_dropped: Family::default(),
            verdicts: Family::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            cpu_fallback: Gauge::default(),
            model_reloads: Family::default(),
            sink: SinkCounters::default(),
            sink_queue_depth: Gauge::default(),
            spool_bytes: Gauge::default(),
            spool_max_bytes: Gauge::default(),
            sink_auth_failed: Gauge::default(),
        };
        let mut r = Registry::with_prefix("dohguard_scorer");
        r.register(
            "http_requests",
            "HTTP requests by route and status",
            m.http_requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            m.http_latency.clone(),
        );
        r.register(
            "inference_batch_size",
            "Names per model call",
            m.batch_size.clone(),
        );
        r.register(
            "inference_duration_seconds",
            "Time per coalesced model call",
            m.inference_seconds.clone(),
        );
        r.register(
            "inference_queue_depth",
            "Names waiting for the inference thread",
            m.queue_depth.clone(),
        );
        r.register(
            "inference_queue_rejected",
            "Names refused because the inference queue was full (503)",
            m.queue_rejected.clone(),
        );
        r.register(
            "inference_queue_dropped",
            "Names dropped from the inference queue uncomputed, by reason",
            m.queue_dropped.clone(),
        );
        r.register(
            "verdicts",
            "Verdicts by verdict and reason",
            m.verdicts.clone(),
        );
        r.register(
            "verdict_cache_hits",
            "Verdict cache hits",
            m.cache_hits.clone(),
        );
        r.register(
            "verdict_cache_misses",
            "Verdict cache misses",
            m.cache_misses.clone(),
        );
        r.register(
            "inference_cpu_fallback",
            "1 when CUDA was wanted but inference runs on CPU",
            m.cpu_fallback.clone(),
        );
        r.register(
            "model_reloads",
            "Model reload attempts by outcome",
            m.model_reloads.clone(),
        );
        let s = &m.sink;
        r.register(
            "sink_queued",
            "Verdict documents queued for Elasticsearch",
            s.queued.clone(),
        );
        r.register(
            "sink_sent",
            "Documents stored by Elasticsearch",
            s.sent.clone(),
        );
        r.register("sink_retried", "Bulk requests retried", s.retried.clone());
        r.register(
            "sink_spooled",
            "Documents written to the disk spool",
            s.spooled.clone(),
        );
        r.register(
            "sink_replayed",
            "Documents replayed from the spool and stored",
            s.replayed.clone(),
        );
        r.register(
            "sink_duplicates",
            "Documents Elasticsearch already had (409 on create)",
            s.duplicates.clone(),
        );
        r.register(
            "sink_rejected",
            "Documents refused by Elasticsearch (dead-lettered)",
            s.rejected.clone(),
        );
        r.register(
            "sink_dropped",
            "Documents lost (spool full or failing; reported by a scorer gap marker)",
            s.dropped.clone(),
        );
        r.register(
            "sink_journaled",
            "Documents written to the journal before acknowledgement",
            s.journaled.clone(),
        );
        r.register(
            "sink_refused",
            "Filter events refused with 503 (spool full or unwritable); resent by the filter",
            s.refused.clone(),
        );
        r.register(
            "sink_spool_quarantined",
            "Spool segments moved to quarantine (unreadable or corrupt)",
            s.quarantined.clone(),
        );
        r.register(
            "sink_spool_max_bytes",
            "The spool's bound in bytes (spool.max_bytes)",
            m.spool_max_bytes.clone(),
        );
        r.register(
            "sink_auth_failures",
            "Requests Elasticsearch refused as a whole with 401/403 (documents kept in the spool)",
            s.auth_failures.clone(),
        );
        r.register(
            "sink_template_failures",
            "Index template installs refused (delivery goes on without it)",
            s.template_failures.clone(),
        );
        r.register(
            "sink_auth_failed",
            "1 while Elasticsearch refuses the credential and delivery waits",
            m.sink_auth_failed.clone(),
        );
        r.register(
            "sink_bulk_duration_seconds",
            "Time per Elasticsearch bulk request (answered or failed)",
            s.bulk_seconds.0.clone(),
        );
        r.register(
            "sink_queue_depth",
            "Documents in the sink memory queue",
            m.sink_queue_depth.clone(),
        );
        r.register(
            "sink_spool_bytes",
            "Bytes in the spool awaiting replay",
            m.spool_bytes.clone(),
        );
        // Every drop reason is exported from the start (0), so a dashboard or a test that
        // finds one missing knows it was renamed.
        for fate in [
            crate::model::batcher::Fate::CallerGone,
            crate::model::batcher::Fate::TooOld,
        ] {
            let _ = m.queue_dropped.get_or_create(&DropLabel::of(fate));
        }
        Self {
            registry: Exposition::new(r),
            ..m
        }
    }

    /// The registry in the Prometheus text exposition format.
    pub fn encode(&self) -> String {
        self.registry.encode()
    }
}
