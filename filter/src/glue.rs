//! proxy-wasm glue: the root context validates the configuration and defines the metrics;
//! each HTTP context reads the request, asks the pure modules what to do, and carries out the
//! answer (forward, block answer, 4xx, or a paused scorer callout). No policy lives here.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::{error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};

use crate::cache::{self, HashKey, SharedStore, StoreError, VerdictCache};
use crate::cname::{self, Inspection, TargetHit, Uninspected};
use crate::config::{Settings, MAX_DNS_MESSAGE};
use crate::decision::{self, callout_body, decide_locally, parse_reply, Decision, LocalOutcome};
use crate::dns::{DnsQuery, HEADER_LEN};
use crate::doh::{self, check_body_size, classify, is_doh_route, Rejection, RequestKind};
use crate::inflight::InFlight;
use crate::metrics::{self, Counter, Histogram};
use crate::overrides;
use crate::pending::{self, Claim, Marker, Outcome, Parked};
use crate::record::{self, Draft, EventBuffer, StreamFacts};
use crate::throttle::{held_note, Throttle};

thread_local! {
    /// This VM's finished decision events: HTTP contexts push at stream end, the root context
    /// drains on its tick. One VM runs on one worker thread, so no lock is needed.
    static EVENTS: RefCell<Option<EventBuffer>> = const { RefCell::new(None) };
    /// Callout failure warnings of this VM: the first, then one per interval with a count.
    static CALLOUT_WARNINGS: RefCell<Throttle> = RefCell::new(Throttle::default());
    /// This VM's scorer callouts by name, with the requests waiting for the same answer.
    static IN_FLIGHT: RefCell<InFlight<Waiter>> = RefCell::new(InFlight::default());
    /// Outcomes a leader carried out for waiting requests, picked up by each when it runs next.
    static SETTLED: RefCell<HashMap<u32, Settled>> = RefCell::new(HashMap::new());
    /// Requests parked for another worker's callout (see [`crate::pending`]).
    static PARKED: RefCell<Parked<Waiter>> = RefCell::new(Parked::default());
    /// This VM's random part of pending-marker nonces (set once configured).
    static NONCE_BASE: Cell<u64> = const { Cell::new(0) };
    /// The root context ticks every [`pending::POLL_MS`] while requests are parked.
    static FAST_TICK: Cell<bool> = const { Cell::new(false) };
}

/// Makes the root context tick fast while requests are parked, and back at the event flush
/// interval (or not at all) once none are.
fn set_fast_tick(settings: &Settings, fast: bool) {
    if FAST_TICK.replace(fast) == fast {
        return;
    }
    let period = if fast {
        pending::POLL_MS
    } else {
        base_tick_ms(settings)
    };
    let _ = hostcalls::set_tick_period(Duration::from_millis(period));
}

/// The root context's tick period when no request is parked: the event flush interval, or
/// with the record off the override check interval (0: no tick).
fn base_tick_ms(settings: &Settings) -> u64 {
    match (&settings.events, &settings.overrides) {
        (Some(events), _) => events.flush_interval_ms,
        (None, Some(_)) => overrides::CHECK_MS,
        (None, None) => 0,
    }
}

/// A request waiting for another request's callout about the same name.
struct Waiter {
    context_id: u32,
    query: DnsQuery,
}

/// What was done for a waiting request: its decision, the local reply's record (`None` when
/// forwarded) and the model's score and version.
struct Settled {
    decision: Decision,
    local: Option<dohguard_schema::Answer>,
    model: Option<(f32, String)>,
}

/// The verdict header for a local reply, when configured.
fn verdict_header(settings: &Settings, decision: Option<Decision>) -> Option<(&str, String)> {
    let header = settings.verdict_header.as_deref()?;
    let value = decision?.header_value(settings.mode, settings.verdict_header_detail);
    Some((header, value))
}

/// Logs a callout failure unless the throttle holds it back (the counters count them all).
fn warn_callout(now_ms: u64, message: impl FnOnce() -> String) {
    if let Some(held) = CALLOUT_WARNINGS.with_borrow_mut(|t| t.admit(now_ms)) {
        warn!("{}{}", message(), held_note(held));
    }
}

/// A random name for this VM's event stream (WASI `random_get` seeds `RandomState`).
fn random_source() -> String {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0x646f_6867_7561_7264);
    format!("{:016x}", hasher.finish())
}

fn ms_since_epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|id| -> Box<dyn RootContext> {
        Box::new(FilterRoot { id, ..FilterRoot::default() })
    });
}}

/// What every HTTP context of this VM reads: validated settings and metric ids.
struct Shared {
    settings: Settings,
    metric_ids: Vec<Option<u32>>,
    histogram_ids: Vec<Option<u32>>,
    /// The verdict cache's hash key, as stored in shared data (re-read before each insert).
    cache_key: Cell<HashKey>,
    /// The last key derived after a cache flush, with the stored key and the generation it
    /// was derived from: the request path reads it instead of hashing on every request.
    flushed_key: Cell<Option<(HashKey, u64, HashKey)>>,
}

impl Shared {
    /// The key the cache and the callout markers use now: the stored one, changed by the
    /// last cache flush in the adopted override set (`cache::effective_key`).
    fn hash_key(&self) -> HashKey {
        let stored = self.cache_key.get();
        let generation = overrides::cache_generation();
        if generation == 0 {
            return stored;
        }
        match self.flushed_key.get() {
            Some((from, of, derived)) if from == stored && of == generation => derived,
            _ => {
                let derived = cache::effective_key(stored, generation);
                self.flushed_key.set(Some((stored, generation, derived)));
                derived
            }
        }
    }

    fn cache<'s>(&self, store: &'s HostStore) -> VerdictCache<'s, HostStore> {
        let s = &self.settings;
        VerdictCache::new(store, s.cache_max_entries, s.cache_max_ttl, self.hash_key())
    }
}

impl Shared {
    fn bump(&self, counter: Counter) {
        if let Some(Some(id)) = self.metric_ids.get(counter.index()) {
            // A metric the host refused is not worth failing a request over.
            let _ = hostcalls::increment_metric(*id, 1);
        }
    }

    fn record(&self, histogram: Histogram, value: u64) {
        if let Some(Some(id)) = self.histogram_ids.get(histogram.index()) {
            let _ = hostcalls::record_metric(*id, value);
        }
    }
}

struct FilterRoot {
    id: u32,
    shared: Rc<Shared>,
    /// Fast ticks (see [`FAST_TICK`]) since the events were last flushed.
    fast_ticks: u64,
    /// Event batches that failed since the last warning (logged at most once per tick).
    failed_batches: u64,
    /// The override poll in flight (its callout token).
    override_poll: Option<u32>,
    /// When this VM next looks at the shared override set (Unix ms).
    next_override_check: u64,
    /// Override poll failure warnings: the first, then one per interval with a count.
    override_warnings: Throttle,
}

impl Default for FilterRoot {
    fn default() -> Self {
        FilterRoot {
            id: 0,
            fast_ticks: 0,
            shared: Rc::new(Shared {
                settings: Settings::default(),
                metric_ids: Vec::new(),
                histogram_ids: Vec::new(),
                cache_key: Cell::new([0; 16]),
                flushed_key: Cell::new(None),
            }),
            failed_batches: 0,
            override_poll: None,
            next_override_check: 0,
            override_warnings: Throttle::default(),
        }
    }
}

impl Context for FilterRoot {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body: usize, _t: usize) {
        if self.override_poll == Some(token) {
            self.override_poll = None;
            return self.override_answer(body);
        }
        let status = self.get_http_call_response_header(":status");
        let ok = status.as_deref().is_some_and(|s| s.starts_with('2'));
        let ours = EVENTS.with_borrow_mut(|b| b.as_mut().is_some_and(|b| b.answered(token, ok)));
        if ours && !ok {
            self.batch_failed(|| {
                format!(
                    "decision events not delivered (status {}); kept and retried",
                    status.as_deref().unwrap_or("none")
                )
            });
        }
    }
}

impl FilterRoot {
    /// Counts a failed event batch; only the first failure per tick is logged (the tick logs
    /// how many more followed), so an outage does not flood the log.
    fn batch_failed(&mut self, message: impl FnOnce() -> String) {
        self.shared.bump(Counter::EventsBatchFailed);
        self.failed_batches += 1;
        if self.failed_batches == 1 {
            warn!("{}", message());
        }
    }
}

impl FilterRoot {
    /// Decides the parked requests whose leader's verdict is cached, gives the failure mode to
    /// those whose marker is gone or expired, and leaves the rest parked.
    fn poll_parked(&mut self) {
        let shared = Rc::clone(&self.shared);
        let settings = &shared.settings;
        let Some(scorer) = settings.scorer.as_ref() else {
            return;
        };
        if let Some(key) = cache::stored_key(&HostStore) {
            shared.cache_key.set(key);
        }
        let now = ms_since_epoch(self.get_current_time());
        let cache = shared.cache(&HostStore);
        let key = shared.hash_key();
        let done = PARKED.with_borrow_mut(|p| {
            p.poll(
                now,
                |name| cache.lookup(name, now),
                |name| pending::is_live(&HostStore, &key, name, now),
            )
        });
        for (waiter, outcome) in done {
            let decision = match outcome {
                Outcome::Decided(hit) => Decision::from_cache(&hit),
                Outcome::Unanswered => Decision::from_failure(scorer.failure_mode),
            };
            settle(&shared, vec![waiter], decision, None, self.id);
        }
        if PARKED.with_borrow(|p| p.is_empty()) {
            set_fast_tick(settings, false);
        }
    }
}

impl FilterRoot {
    /// Adopts a newer override set from shared data, and polls the console when this worker
    /// holds the lease (see [`crate::overrides`]).
    fn override_tick(&mut self) {
        let shared = Rc::clone(&self.shared);
        let Some(feed) = shared.settings.overrides.as_ref() else {
            return;
        };
        let now = ms_since_epoch(self.get_current_time());
        if now < self.next_override_check {
            return;
        }
        self.next_override_check = now + overrides::CHECK_MS.min(feed.poll_interval_ms);
        match overrides::refresh(&HostStore) {
            overrides::Refresh::Current => {}
            overrides::Refresh::Adopted { version, overrides } => {
                info!("overrides: version {version} ({overrides} overrides) applied");
            }
            overrides::Refresh::Refused(why) => self.override_failed(now, why),
        }
        if self.override_poll.is_some()
            || !overrides::claim_poll(&HostStore, now, feed.poll_interval_ms)
        {
            return;
        }
        let path = overrides::poll_path(feed);
        let headers = vec![
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", feed.authority.as_str()),
            ("authorization", feed.authorization.as_str()),
        ];
        let timeout = Duration::from_millis(feed.timeout_ms);
        match hostcalls::dispatch_http_call(&feed.cluster, headers, None, vec![], timeout) {
            Ok(token) => self.override_poll = Some(token),
            Err(status) => {
                let cluster = feed.cluster.clone();
                self.override_failed(now, format!("dispatch to {cluster} failed: {status:?}"));
            }
        }
    }

    fn override_answer(&mut self, body_size: usize) {
        let status = self.get_http_call_response_header(":status");
        let body = (body_size > 0)
            .then(|| self.get_http_call_response_body(0, body_size))
            .flatten();
        match overrides::answered(&HostStore, status.as_deref(), body.as_deref()) {
            overrides::Polled::Unchanged => {}
            overrides::Polled::Adopted { version, overrides } => {
                self.shared.bump(Counter::OverridesUpdated);
                info!("overrides: version {version} ({overrides} overrides) fetched and applied");
            }
            overrides::Polled::Failed(why) => {
                let now = ms_since_epoch(self.get_current_time());
                self.override_failed(now, why);
            }
        }
    }

    fn override_failed(&mut self, now: u64, why: String) {
        self.shared.bump(Counter::OverridesPollFailed);
        if let Some(held) = self.override_warnings.admit(now) {
            warn!("overrides: {why}{}", held_note(held));
        }
    }
}

impl RootContext for FilterRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let settings = match Settings::from_json(&bytes) {
            Ok(settings) => settings,
            Err(err) => {
                error!("{err}");
                return false;
            }
        };
        for warning in &settings.warnings {
            warn!("{warning}");
        }
        let metric_ids = Counter::ALL
            .iter()
            .map(|c| hostcalls::define_metric(MetricType::Counter, c.name()).ok())
            .collect();
        let histogram_ids = Histogram::ALL
            .iter()
            .map(|h| hostcalls::define_metric(MetricType::Histogram, h.name()).ok())
            .collect();
        info!(
            "configured: {} allow + {} deny rules, scorer {}, mode {:?}",
            settings.policy.allow.len(),
            settings.policy.deny.len(),
            settings
                .scorer
                .as_ref()
                .map_or("none", |s| s.cluster.as_str()),
            settings.mode
        );
        let mut key = [0u8; 16];
        if settings.cache_max_entries > 0 {
            if let Err(err) = getrandom::fill(&mut key) {
                error!("cache: no random bytes for its hash key: {err}");
                return false;
            }
            key = cache::shared_key(&HostStore, || key);
        }
        let cache_key = Cell::new(key);
        let mut nonce = [0u8; 8];
        if getrandom::fill(&mut nonce).is_ok() {
            NONCE_BASE.set(u64::from_le_bytes(nonce));
        }
        if let Some(events) = &settings.events {
            EVENTS.set(Some(EventBuffer::new(random_source(), events.max_buffered)));
        }
        let tick = base_tick_ms(&settings);
        if tick > 0 {
            self.set_tick_period(Duration::from_millis(tick));
        }
        self.shared = Rc::new(Shared {
            settings,
            metric_ids,
            histogram_ids,
            cache_key,
            flushed_key: Cell::new(None),
        });
        true
    }

    /// Seals the buffered events into batches and sends what the in-flight bound allows.
    fn on_tick(&mut self) {
        let shared = Rc::clone(&self.shared);
        if FAST_TICK.get() {
            self.poll_parked();
        }
        self.override_tick();
        let Some(events) = shared.settings.events.as_ref() else {
            return;
        };
        if FAST_TICK.get() {
            // Polling for parked requests: flush the events at their own interval.
            self.fast_ticks += 1;
            if self.fast_ticks * pending::POLL_MS < events.flush_interval_ms {
                return;
            }
        }
        self.fast_ticks = 0;
        if self.failed_batches > 1 {
            warn!(
                "{} more decision-event batches failed since the last warning",
                self.failed_batches - 1
            );
        }
        self.failed_batches = 0;
        let headers = vec![
            (":method", "POST"),
            (":path", events.path.as_str()),
            (":authority", events.authority.as_str()),
            ("content-type", "application/json"),
        ];
        let timeout = Duration::from_millis(events.timeout_ms);
        let failure = EVENTS.with_borrow_mut(|buffer| {
            let buffer = buffer.as_mut()?;
            buffer.seal(events.max_batch);
            while let Some(batch) = buffer.next_to_send(events.max_in_flight) {
                let call = hostcalls::dispatch_http_call(
                    &events.cluster,
                    headers.clone(),
                    Some(&batch.body),
                    vec![],
                    timeout,
                );
                match call {
                    Ok(token) => buffer.sent(token, batch),
                    Err(status) => {
                        buffer.not_sent(batch);
                        return Some(status);
                    }
                }
            }
            None
        });
        if let Some(status) = failure {
            let cluster = &events.cluster;
            self.batch_failed(|| {
                format!("decision events: dispatch to {cluster} failed: {status:?}")
            });
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(DohContext {
            id: context_id,
            waiting: None,
            shared: Rc::clone(&self.shared),
            awaiting_body: false,
            body_size: 0,
            answered: false,
            pending: None,
            decision: None,
            started: None,
            draft: Draft::default(),
            upstream_status: None,
            rcode_counted: false,
            client: None,
            query_bytes: None,
            inspecting: false,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// A scorer callout in flight for this request.
struct Pending {
    token: u32,
    /// The pending marker this request wrote for other workers, released when it ends.
    marker: Option<Marker>,
    query: DnsQuery,
    name: String,
    started_ms: u64,
}

struct DohContext {
    id: u32,
    /// Waiting for another request's callout about this name (in this VM, or parked for
    /// another worker's).
    waiting: Option<String>,
    shared: Rc<Shared>,
    awaiting_body: bool,
    /// Bytes of POST body buffered so far (the trailers callback is not told).
    body_size: usize,
    /// A local reply (4xx or block answer) was sent: nothing of the request may move on.
    answered: bool,
    pending: Option<Pending>,
    /// Set once decided; labels the response.
    decision: Option<Decision>,
    /// When the DoH request arrived (read only when the record is on).
    started: Option<SystemTime>,
    /// What the decision record will say about this request.
    draft: Draft,
    /// HTTP status of a forwarded request's upstream reply.
    upstream_status: Option<u16>,
    /// The upstream answer's RCODE was counted (or the answer was found not to carry one).
    rcode_counted: bool,
    /// The client IP once read (`Some(None)`: read, but Envoy gave no IP address).
    client: Option<Option<String>>,
    /// The query as received, kept while answer inspection (`cname`) is on: a blocked
    /// CNAME/alias target rebuilds the block answer from it.
    query_bytes: Option<Vec<u8>>,
    /// The upstream answer is being buffered for inspection (response headers paused).
    inspecting: bool,
}

/// The requester of a query, asked about only by a client-scoped override.
struct Who<'a>(&'a mut DohContext);

impl dohguard_core::overrides::Requester for Who<'_> {
    fn ip(&mut self) -> Option<std::net::IpAddr> {
        self.0.client_ip().and_then(|ip| ip.parse().ok())
    }

    fn principal(&mut self) -> Option<String> {
        self.0
            .get_property(vec!["connection", "uri_san_peer_certificate"])
            .and_then(|b| String::from_utf8(b).ok())
    }
}

/// Shared data through the host.
struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        match hostcalls::get_shared_data(key).ok()? {
            (Some(value), cas) => Some((value, cas.unwrap_or(0))),
            (None, _) => None,
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        let cas = (cas != 0).then_some(cas);
        hostcalls::set_shared_data(key, Some(value), cas).map_err(|status| match status {
            proxy_wasm::types::Status::CasMismatch => StoreError::CasMismatch,
            other => StoreError::Host(format!("{other:?}")),
        })
    }
}

impl DohContext {
    fn now_ms(&self) -> u64 {
        self.get_current_time()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    /// The downstream's IP address, read from Envoy once per request (the callout and the
    /// decision event both need it).
    fn client_ip(&mut self) -> Option<String> {
        if self.client.is_none() {
            let ip = self
                .get_property(vec!["source", "address"])
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|addr| doh::client_ip(&addr));
            self.client = Some(ip);
        }
        self.client.clone().flatten()
    }

    fn recording(&self) -> bool {
        self.shared.settings.events.is_some()
    }

    fn reject(&mut self, rejection: Rejection) -> Action {
        self.shared.bump(Counter::MalformedRequests);
        self.answered = true;
        if self.recording() {
            self.draft.answer = Some(dohguard_schema::Answer::Rejected {
                http_status: rejection.status as u16,
                reason: rejection.message.clone(),
            });
        }
        let body = format!("{}\n", rejection.message);
        let mut headers = vec![("content-type", "text/plain; charset=utf-8")];
        if rejection.status == 405 {
            headers.push(("allow", "GET, POST"));
        }
        self.send_http_response(rejection.status, headers, Some(body.as_bytes()));
        Action::Pause
    }

    fn handle_query(&mut self, bytes: Vec<u8>) -> Action {
        let mut query = match DnsQuery::parse(&bytes) {
            Ok(query) => query,
            Err(rejection) => return self.reject(rejection),
        };
        if let Some(version) = query.unsupported_edns_version() {
            return self.answer_badvers(&query, version);
        }
        // The name moves out: later steps take it separately from the query.
        let name = std::mem::take(&mut query.name);
        let shared = Rc::clone(&self.shared);
        let settings = &shared.settings;
        shared.bump(Counter::for_qtype(query.qtype));
        let (name_length, longest_label) = metrics::name_lengths(&name);
        shared.record(Histogram::QnameLength, name_length);
        shared.record(Histogram::LabelLengthMax, longest_label);
        if settings.cname.is_some() {
            // Kept (moved, not copied) to rebuild a block answer if the upstream's answer
            // leads to a blocked name.
            self.query_bytes = Some(bytes);
        }
        if settings.events.is_some() {
            self.draft.name = Some(name.clone());
            self.draft.qtype = Some(query.qtype_mnemonic());
        }
        let store = HostStore;
        let cache = shared.cache(&store);
        let mut counters = Vec::new();
        if let Some((decision, id)) = self.overridden(&name) {
            if settings.events.is_some() {
                self.draft.rule = Some(id);
            }
            return self.carry_out(&query, decision);
        }
        // The clock (a host call) is read only if the lists leave the name to the cache.
        let outcome = decide_locally(settings, &cache, &name, || self.now_ms(), &mut counters);
        counters.into_iter().for_each(|c| shared.bump(c));
        match outcome {
            LocalOutcome::Decided(decision) => {
                if settings.events.is_some() && !decision.from_cache {
                    self.draft.rule = (decision.basis.list_reason())
                        .and_then(|r| settings.policy.rule_for(&name, r));
                }
                self.carry_out(&query, decision)
            }
            LocalOutcome::AskScorer => self.ask_scorer(query, name),
        }
    }

    /// The analysts' override deciding `name` for this client, with its id; checked before
    /// the lists and the verdict cache, so a cached verdict it contradicts is not served.
    /// With no override in force this is one thread-local read.
    fn overridden(&mut self, name: &str) -> Option<(Decision, String)> {
        if overrides::none() {
            return None;
        }
        let matcher = overrides::current();
        let mut now_ms = || {
            hostcalls::get_current_time()
                .map(ms_since_epoch)
                .unwrap_or(0)
        };
        let hit = matcher.decide(name, &mut Who(self), &mut now_ms)?;
        let decision = Decision::new(hit.action.verdict(), decision::Basis::Override);
        Some((decision, hit.id.to_owned()))
    }

    fn ask_scorer(&mut self, query: DnsQuery, name: String) -> Action {
        let shared = Rc::clone(&self.shared);
        let Some(scorer) = shared.settings.scorer.as_ref() else {
            return Action::Continue;
        };
        // A callout for this name is in flight in this VM: wait for its answer.
        if IN_FLIGHT.with_borrow(|f| f.is_flying(&name)) {
            let context_id = self.id;
            IN_FLIGHT.with_borrow_mut(|f| f.join(&name, Waiter { context_id, query }));
            shared.bump(Counter::CalloutJoined);
            self.waiting = Some(name);
            return Action::Pause;
        }
        let mut marker = None;
        if shared.cache(&HostStore).enabled() {
            let now = self.now_ms();
            let nonce = NONCE_BASE.get() ^ u64::from(self.id).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let key = shared.hash_key();
            let deadline = now + scorer.timeout_ms;
            match pending::claim(&HostStore, &key, &name, now, deadline, nonce) {
                Claim::Lead(m) => marker = Some(m),
                Claim::Alone => {}
                // Too many parked: this one makes its own callout.
                Claim::Wait { .. } if PARKED.with_borrow(|p| p.is_full()) => {}
                Claim::Wait { deadline_ms } => {
                    let context_id = self.id;
                    let waiter = Waiter { context_id, query };
                    PARKED.with_borrow_mut(|p| p.park(&name, deadline_ms, waiter));
                    shared.bump(Counter::CalloutJoined);
                    set_fast_tick(&shared.settings, true);
                    self.waiting = Some(name);
                    return Action::Pause;
                }
            }
        }
        self.call_out(query, name, marker)
    }

    /// Makes the scorer callout for `name` (this request leads; `marker` is its pending
    /// marker for other workers, if it wrote one).
    fn call_out(&mut self, query: DnsQuery, name: String, marker: Option<Marker>) -> Action {
        let shared = Rc::clone(&self.shared);
        let Some(scorer) = shared.settings.scorer.as_ref() else {
            return Action::Continue;
        };
        let client = self.client_ip();
        let body = callout_body(&name, &query, client, shared.settings.events.is_some());
        let headers = vec![
            (":method", "POST"),
            (":path", scorer.path.as_str()),
            (":authority", scorer.authority.as_str()),
            ("content-type", "application/json"),
        ];
        let timeout = Duration::from_millis(scorer.timeout_ms);
        match self.dispatch_http_call(&scorer.cluster, headers, Some(&body), vec![], timeout) {
            Ok(token) => {
                shared.bump(Counter::CalloutSent);
                IN_FLIGHT.with_borrow_mut(|f| f.lead(&name));
                let started_ms = self.now_ms();
                self.pending = Some(Pending {
                    token,
                    marker,
                    query,
                    name,
                    started_ms,
                });
                Action::Pause
            }
            Err(status) => {
                if let Some(marker) = &marker {
                    pending::release(&HostStore, marker);
                }
                let failure = decision::CalloutFailure::Dispatch(format!("{status:?}"));
                warn_callout(self.now_ms(), || {
                    format!("scorer callout for {name}: {failure}")
                });
                shared.bump(failure.counter());
                self.carry_out(&query, Decision::from_failure(scorer.failure_mode))
            }
        }
    }

    /// Sends a local reply for a decided request. The verdict header goes out with it, so the
    /// reply's pass back through `on_http_response_headers` needs no further host call.
    fn answer_locally(&mut self, status: u32, content_type: &str, body: &[u8]) {
        self.answered = true;
        let verdict = verdict_header(&self.shared.settings, self.decision);
        let mut headers = vec![("content-type", content_type)];
        if let Some((header, value)) = &verdict {
            headers.push((*header, value.as_str()));
        }
        self.send_http_response(status, headers, Some(body));
    }

    /// A query with an EDNS version above 0 gets BADVERS, decided by no policy (counted
    /// with the malformed requests).
    fn answer_badvers(&mut self, query: &DnsQuery, version: u8) -> Action {
        self.shared.bump(Counter::MalformedRequests);
        if self.recording() {
            self.draft.answer = Some(dohguard_schema::Answer::Rejected {
                http_status: 200,
                reason: format!("BADVERS: EDNS version {version} not supported"),
            });
        }
        match crate::answer::badvers_answer(query) {
            Ok(body) => self.answer_locally(200, doh::DNS_MESSAGE, &body),
            Err(err) => {
                error!("could not build the BADVERS answer: {err}");
                self.answer_locally(500, "text/plain", b"internal error\n");
            }
        }
        Action::Pause
    }

    /// Decides a POST once its body is complete (end of stream or trailers). A body larger
    /// than an ordinary query has its 12-byte DNS header read and checked first, so a body
    /// whose counts are refused is never copied in (a small one is read in one host call).
    fn decide_body(&mut self) -> Action {
        const ORDINARY_QUERY: usize = 512;
        self.awaiting_body = false;
        let body_size = self.body_size;
        if let Err(rejection) = check_body_size(body_size) {
            return self.reject(rejection);
        }
        if body_size > ORDINARY_QUERY {
            let header = self.get_http_request_body(0, HEADER_LEN);
            if let Err(rejection) = crate::dns::check_header(&header.unwrap_or_default()) {
                return self.reject(rejection);
            }
        }
        match self.get_http_request_body(0, body_size) {
            Some(bytes) => self.handle_query(bytes),
            None => self.reject(Rejection::bad_request("empty body: expected a DNS message")),
        }
    }

    /// Inspects the buffered upstream answer (`cname` module) and carries out what it found;
    /// `true` when the answer was replaced by the block answer. `complete` is false for a body
    /// that outgrew a DNS message before its end: it is forwarded uninspected.
    fn inspect_answer(&mut self, size: usize, complete: bool) -> bool {
        let shared = Rc::clone(&self.shared);
        let settings = &shared.settings;
        let Some(limits) = settings.cname.as_ref() else {
            return false;
        };
        let inspection = if complete {
            let body = (size <= limits.max_answer_bytes)
                .then(|| self.get_http_response_body(0, size))
                .flatten()
                .unwrap_or_default();
            let store = HostStore;
            let cache = shared.cache(&store);
            cname::inspect(limits, &settings.policy, &cache, size, &body, || {
                self.now_ms()
            })
        } else {
            Inspection::Uninspected(Uninspected::Malformed("over 65535 bytes".into()))
        };
        shared.bump(inspection.counter());
        match inspection.outcome(limits) {
            cname::Outcome::Forward => false,
            cname::Outcome::Block(hit) => self.block_answer_on_response(size, hit),
        }
    }

    /// The upstream answer leads to a blocked name: the decision becomes `cname`, and in
    /// enforce mode the body is replaced by the block answer (headers are still held).
    fn block_answer_on_response(&mut self, size: usize, hit: Option<TargetHit>) -> bool {
        let shared = Rc::clone(&self.shared);
        let settings = &shared.settings;
        let decision = cname::decision();
        cname::counters(settings.mode).for_each(|c| shared.bump(c));
        self.decision = Some(decision);
        if self.recording() {
            if let Some(hit) = hit {
                self.draft.rule = hit.rule;
                self.draft.cname_target = Some(hit.target);
            }
        }
        if let Some(header) = &settings.verdict_header {
            let value = decision.header_value(settings.mode, settings.verdict_header_detail);
            self.set_http_response_header(header, Some(&value));
        }
        if !decision.blocks(settings.mode) {
            return false; // monitor mode: counted and recorded, forwarded
        }
        let query = self.query_bytes.as_deref().map(DnsQuery::parse);
        let answer = match query {
            Some(Ok(query)) => {
                decision::action_for(settings, &query, &decision).map_err(|e| e.to_string())
            }
            _ => Err("the query bytes are gone".into()),
        };
        let (status, body) = match answer {
            Ok(decision::Action::Answer(body)) => {
                if self.recording() {
                    self.draft.answer = Some(record::blocked_answer(&settings.block_answer));
                }
                ("200", body)
            }
            other => {
                error!("could not build the block answer for a CNAME target: {other:?}");
                if self.recording() {
                    self.draft.answer = Some(dohguard_schema::Answer::Failed { http_status: 500 });
                }
                ("500", b"internal error\n".to_vec())
            }
        };
        self.set_http_response_body(0, size, &body);
        if status != "200" {
            self.set_http_response_header(":status", Some(status));
        }
        self.set_http_response_header("content-length", Some(&body.len().to_string()));
        let max_age = format!("max-age={}", settings.block_ttl);
        self.set_http_response_header("cache-control", Some(&max_age));
        true
    }

    /// Counts the decision and forwards or answers; returns the action for the current callback.
    fn carry_out(&mut self, query: &DnsQuery, decision: Decision) -> Action {
        let shared = Rc::clone(&self.shared);
        let settings = &shared.settings;
        decision
            .counters(settings.mode)
            .for_each(|c| shared.bump(c));
        self.decision = Some(decision);
        let recording = settings.events.is_some();
        match decision::action_for(settings, query, &decision) {
            Ok(decision::Action::Forward) => Action::Continue,
            Ok(decision::Action::Answer(body)) => {
                if recording {
                    self.draft.answer = Some(record::blocked_answer(&settings.block_answer));
                }
                self.answer_locally(200, doh::DNS_MESSAGE, &body);
                Action::Pause
            }
            Err(err) => {
                error!("could not build the block answer: {err}");
                if recording {
                    self.draft.answer = Some(dohguard_schema::Answer::Failed { http_status: 500 });
                }
                self.answer_locally(500, "text/plain", b"internal error\n");
                Action::Pause
            }
        }
    }
}

impl Context for DohContext {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some(pending) = self.pending.take_if(|p| p.token == token) else {
            return;
        };
        let shared = Rc::clone(&self.shared);
        let Some(scorer) = shared.settings.scorer.as_ref() else {
            return;
        };
        let status = self.get_http_call_response_header(":status");
        let body = (body_size > 0)
            .then(|| self.get_http_call_response_body(0, body_size))
            .flatten();
        let elapsed = self.now_ms().saturating_sub(pending.started_ms);
        shared.record(Histogram::CalloutLatencyMs, elapsed);
        let mut model = None;
        let decision = match parse_reply(
            &pending.name,
            status.as_deref(),
            body.as_deref(),
            elapsed,
            scorer.timeout_ms,
        ) {
            Ok(reply) => {
                let settings = &shared.settings;
                // A VM that lost the start-up race for the key adopts the stored one here.
                if let Some(key) = cache::stored_key(&HostStore) {
                    shared.cache_key.set(key);
                }
                if let Err(err) =
                    shared
                        .cache(&HostStore)
                        .insert(&pending.name, &reply, self.now_ms())
                {
                    warn!("could not cache the verdict for {}: {err}", pending.name);
                }
                model = (reply.reason == dohguard_core::contract::Reason::Model)
                    .then(|| (reply.score, reply.model_version.clone()));
                if let Some((score, version)) = model.clone().filter(|_| settings.events.is_some())
                {
                    self.draft.score = Some(score);
                    self.draft.model_version = Some(version);
                }
                Decision::from_reply(&reply)
            }
            Err(failure) => {
                let name = &pending.name;
                warn_callout(self.now_ms(), || {
                    format!("scorer callout for {name}: {failure}")
                });
                shared.bump(failure.counter());
                Decision::from_failure(scorer.failure_mode)
            }
        };
        // After the verdict is cached: parked requests on other workers find it there.
        if let Some(marker) = &pending.marker {
            pending::release(&HostStore, marker);
        }
        let waiters = IN_FLIGHT.with_borrow_mut(|f| f.land(&pending.name));
        if self.carry_out(&pending.query, decision) == Action::Continue {
            self.resume_http_request();
        }
        settle(&shared, waiters, decision, model, self.id);
    }

    /// The end of the stream. A leader that goes before its callout's answer (Envoy cancels
    /// the callout) ends the flight: its waiters get the failure mode, counted as one error.
    fn on_done(&mut self) -> bool {
        self.collect_settled();
        if let Some(name) = self.waiting.take() {
            let id = self.id;
            IN_FLIGHT.with_borrow_mut(|f| f.leave(&name, |w| w.context_id == id));
            PARKED.with_borrow_mut(|p| p.leave(|w| w.context_id == id));
        }
        if let Some(pending) = self.pending.take() {
            if let Some(marker) = &pending.marker {
                pending::release(&HostStore, marker);
            }
            let waiters = IN_FLIGHT.with_borrow_mut(|f| f.land(&pending.name));
            if let (false, Some(scorer)) = (waiters.is_empty(), &self.shared.settings.scorer) {
                let shared = Rc::clone(&self.shared);
                shared.bump(Counter::CalloutError);
                let (name, count) = (&pending.name, waiters.len());
                warn_callout(self.now_ms(), || {
                    format!("scorer callout for {name}: its request ended first; {count} waiting get the failure mode")
                });
                let failure = Decision::from_failure(scorer.failure_mode);
                settle(&shared, waiters, failure, None, self.id);
            }
        }
        true
    }
}

/// Carries out `decision` for requests that waited for another request's callout: counts it
/// for each and answers or resumes each in its own context, then makes `back_to` (the
/// calling context) effective again.
fn settle(
    shared: &Shared,
    waiters: Vec<Waiter>,
    decision: Decision,
    model: Option<(f32, String)>,
    back_to: u32,
) {
    if waiters.is_empty() {
        return;
    }
    let settings = &shared.settings;
    for waiter in waiters {
        decision
            .counters(settings.mode)
            .for_each(|c| shared.bump(c));
        let action = decision::action_for(settings, &waiter.query, &decision);
        let local = match &action {
            Ok(decision::Action::Forward) => None,
            Ok(decision::Action::Answer(_)) => Some(record::blocked_answer(&settings.block_answer)),
            Err(_) => Some(dohguard_schema::Answer::Failed { http_status: 500 }),
        };
        let settled = Settled {
            decision,
            local,
            model: model.clone(),
        };
        SETTLED.with_borrow_mut(|s| s.insert(waiter.context_id, settled));
        if hostcalls::set_effective_context(waiter.context_id).is_err() {
            SETTLED.with_borrow_mut(|s| s.remove(&waiter.context_id));
            continue;
        }
        let verdict = verdict_header(settings, Some(decision));
        let with_verdict = |content_type| {
            let mut headers = vec![("content-type", content_type)];
            headers.extend(verdict.as_ref().map(|(h, v)| (*h, v.as_str())));
            headers
        };
        let _ = match action {
            Ok(decision::Action::Forward) => hostcalls::resume_http_request(),
            Ok(decision::Action::Answer(body)) => {
                hostcalls::send_http_response(200, with_verdict(doh::DNS_MESSAGE), Some(&body))
            }
            Err(err) => {
                error!("could not build the block answer: {err}");
                hostcalls::send_http_response(
                    500,
                    with_verdict("text/plain"),
                    Some(b"internal error\n"),
                )
            }
        };
    }
    let _ = hostcalls::set_effective_context(back_to);
}

impl DohContext {
    /// Takes up what a leader did for this waiting request (see [`settle`]).
    fn collect_settled(&mut self) {
        if self.waiting.is_none() {
            return;
        }
        let Some(settled) = SETTLED.with_borrow_mut(|s| s.remove(&self.id)) else {
            return;
        };
        self.waiting = None;
        self.decision = Some(settled.decision);
        self.answered = settled.local.is_some();
        if self.recording() {
            self.draft.answer = settled.local;
            if let Some((score, version)) = settled.model {
                self.draft.score = Some(score);
                self.draft.model_version = Some(version);
            }
        }
    }
}

impl HttpContext for DohContext {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        // Every header read is a host call: the path alone settles most non-DoH traffic, and
        // only a POST's content type and length matter to `classify`.
        let path = self.get_http_request_header(":path").unwrap_or_default();
        if !is_doh_route(&self.shared.settings.doh_path, &path) {
            return Action::Continue;
        }
        if self.recording() {
            self.started = Some(self.get_current_time());
        }
        let method = self.get_http_request_header(":method").unwrap_or_default();
        let (content_type, content_length) = if method == "POST" {
            (
                self.get_http_request_header("content-type"),
                self.get_http_request_header("content-length"),
            )
        } else {
            (None, None)
        };
        let kind = classify(
            &self.shared.settings.doh_path,
            &method,
            &path,
            content_type.as_deref(),
            content_length.as_deref(),
        );
        match kind {
            Ok(RequestKind::NotDoh) => Action::Continue,
            Ok(RequestKind::Get(bytes)) => self.handle_query(bytes),
            Ok(RequestKind::Post) if end_of_stream => {
                self.reject(Rejection::bad_request("empty body: expected a DNS message"))
            }
            Ok(RequestKind::Post) => {
                self.awaiting_body = true;
                Action::Pause
            }
            Err(rejection) => self.reject(rejection),
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.collect_settled();
        if !self.awaiting_body {
            // Body data of a GET (or after the decision): while a callout is pending or a local
            // reply went out, continuing here would forward the request behind the filter's back.
            return if self.pending.is_some() || self.waiting.is_some() || self.answered {
                Action::Pause
            } else {
                Action::Continue
            };
        }
        self.body_size = body_size;
        if body_size > MAX_DNS_MESSAGE {
            self.awaiting_body = false;
            return self.reject(Rejection::too_large());
        }
        if !end_of_stream {
            return Action::Pause; // buffer until the whole message is in (or trailers end it)
        }
        self.decide_body()
    }

    /// HTTP/2 trailers end the request: a POST body is complete and is decided on the bytes
    /// buffered so far. Nothing moves on while a decision is pending or after a local reply.
    fn on_http_request_trailers(&mut self, _trailers: usize) -> Action {
        self.collect_settled();
        if self.awaiting_body {
            return self.decide_body();
        }
        if self.pending.is_some() || self.waiting.is_some() || self.answered {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_http_response_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        self.collect_settled();
        if self.answered {
            return Action::Continue; // a local reply: it already carries the verdict header
        }
        // A forwarded answer with a body is held until the body is in and inspected.
        let inspect = !end_of_stream
            && self.query_bytes.is_some()
            && self.decision.is_some_and(|d| cname::inspects(&d));
        if self.decision.is_some() && (inspect || self.recording()) {
            self.upstream_status = self
                .get_http_response_header(":status")
                .and_then(|s| s.parse().ok());
        }
        self.inspecting = inspect && self.upstream_status == Some(200);
        if let (Some(decision), Some(header)) =
            (self.decision, &self.shared.settings.verdict_header)
        {
            let settings = &self.shared.settings;
            let value = decision.header_value(settings.mode, settings.verdict_header_detail);
            self.set_http_response_header(header, Some(&value));
        }
        if self.inspecting {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    /// A forwarded query's upstream reply: buffered and inspected for CNAME/alias targets
    /// when asked to; its DNS header gives RCODE and answer count for the record.
    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.inspecting {
            if !end_of_stream && body_size <= MAX_DNS_MESSAGE {
                return Action::Pause; // buffer until the whole answer is in
            }
            self.inspecting = false;
            if self.inspect_answer(body_size, end_of_stream) {
                return Action::Continue; // replaced by the block answer
            }
        }
        if self.answered || self.decision.is_none() || self.rcode_counted {
            return Action::Continue;
        }
        if body_size < HEADER_LEN && !end_of_stream {
            return Action::Continue;
        }
        self.rcode_counted = true;
        // The status tells whether the body is a DNS message; read here, not with the headers,
        // so that a forwarded request without a body pays nothing for the RCODE counters.
        if self.upstream_status.is_none() {
            self.upstream_status = self
                .get_http_response_header(":status")
                .and_then(|s| s.parse().ok());
        }
        let header = self
            .get_http_response_body(0, body_size.min(HEADER_LEN))
            .unwrap_or_default();
        if let Some(rcode) = record::upstream_rcode(&header, self.upstream_status) {
            self.shared.bump(Counter::for_rcode(rcode));
        }
        if self.recording() && self.draft.answer.is_none() {
            self.draft.answer = Some(record::upstream_answer(&header, self.upstream_status));
        }
        Action::Continue
    }

    /// Trailers end an upstream answer whose body did not carry end of stream: the buffered
    /// body is inspected here instead, so trailers neither skip the inspection nor hang it.
    fn on_http_response_trailers(&mut self, _trailers: usize) -> Action {
        if self.inspecting {
            self.inspecting = false;
            let size = self
                .get_http_response_body(0, MAX_DNS_MESSAGE + 1)
                .map_or(0, |b| b.len());
            self.inspect_answer(size, size <= MAX_DNS_MESSAGE);
        }
        Action::Continue
    }

    /// The end of the stream: the decision event is finished and buffered.
    fn on_log(&mut self) {
        let shared = Rc::clone(&self.shared);
        let (Some(started), Some(events)) = (self.started, shared.settings.events.as_ref()) else {
            return;
        };
        let mut draft = std::mem::take(&mut self.draft);
        if draft.answer.is_none() && self.decision.is_some() {
            // Forwarded, but no body came back (upstream reset or an empty reply).
            draft.answer = Some(record::upstream_answer(&[], self.upstream_status));
        }
        let now = self.get_current_time();
        let property = |ctx: &Self, path: Vec<&str>| {
            ctx.get_property(path)
                .and_then(|b| String::from_utf8(b).ok())
        };
        let mut facts = StreamFacts {
            id: String::new(),
            started_ms: ms_since_epoch(started),
            latency_us: now
                .duration_since(started)
                .map_or(0, |d| d.as_micros() as u64),
            client: self.client_ip(),
            principal: if events.principal {
                property(self, vec!["connection", "uri_san_peer_certificate"])
            } else {
                None
            },
            request_id: property(self, vec!["request", "id"]),
        };
        let (mode, decision) = (self.shared.settings.mode, self.decision);
        let kept = EVENTS.with_borrow_mut(|buffer| {
            let buffer = buffer.as_mut()?;
            facts.id = buffer.next_event_id();
            let event = draft.finish(decision, facts, mode)?;
            Some(buffer.push(event))
        });
        match kept {
            Some(true) => self.shared.bump(Counter::EventsRecorded),
            Some(false) => self.shared.bump(Counter::EventsDropped),
            None => {}
        }
    }
}
