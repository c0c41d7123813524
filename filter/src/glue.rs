//! proxy-wasm glue: the root context validates the configuration and defines the metrics;
//! each HTTP context reads the request, asks the pure modules what to do, and carries out the
//! answer (forward, block answer, 4xx, or a paused scorer callout). No policy lives here.

use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use log::{error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};

use crate::cache::{SharedStore, VerdictCache};
use crate::config::{Settings, MAX_DNS_MESSAGE};
use crate::decision::{self, callout_body, decide_locally, parse_reply, Decision, LocalOutcome};
use crate::dns::DnsQuery;
use crate::doh::{self, check_body_size, classify, is_doh_route, Rejection, RequestKind};
use crate::metrics::Counter;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(FilterRoot::default()) });
}}

/// What every HTTP context of this VM reads: validated settings and metric ids.
struct Shared {
    settings: Settings,
    metric_ids: Vec<Option<u32>>,
}

impl Shared {
    fn bump(&self, counter: Counter) {
        if let Some(Some(id)) = self.metric_ids.get(counter.index()) {
            // A metric the host refused is not worth failing a request over.
            let _ = hostcalls::increment_metric(*id, 1);
        }
    }
}

struct FilterRoot {
    shared: Rc<Shared>,
}

impl Default for FilterRoot {
    fn default() -> Self {
        FilterRoot {
            shared: Rc::new(Shared {
                settings: Settings::default(),
                metric_ids: Vec::new(),
            }),
        }
    }
}

impl Context for FilterRoot {}

impl RootContext for FilterRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let settings = match Settings::from_json(&bytes) {
            Ok(settings) => settings,
            Err(err) => {
                error!("invalid plugin configuration: {err}");
                return false;
            }
        };
        let metric_ids = Counter::ALL
            .iter()
            .map(|c| hostcalls::define_metric(MetricType::Counter, c.name()).ok())
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
        self.shared = Rc::new(Shared {
            settings,
            metric_ids,
        });
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(DohContext {
            shared: Rc::clone(&self.shared),
            awaiting_body: false,
            body_size: 0,
            answered: false,
            pending: None,
            decision: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// A scorer callout in flight for this request.
struct Pending {
    token: u32,
    query: DnsQuery,
    name: String,
    started_ms: u64,
}

struct DohContext {
    shared: Rc<Shared>,
    awaiting_body: bool,
    /// Bytes of POST body buffered so far (the trailers callback is not told).
    body_size: usize,
    /// A local reply (4xx or block answer) was sent: nothing of the request may move on.
    answered: bool,
    pending: Option<Pending>,
    /// Set once decided; labels the response.
    decision: Option<Decision>,
}

/// Shared data through the host.
struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        hostcalls::get_shared_data(key).ok()?.0
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), String> {
        hostcalls::set_shared_data(key, Some(value), None).map_err(|s| format!("{s:?}"))
    }
}

impl DohContext {
    fn now_ms(&self) -> u64 {
        self.get_current_time()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    fn reject(&mut self, rejection: Rejection) -> Action {
        self.shared.bump(Counter::MalformedRequests);
        self.answered = true;
        let body = format!("{}\n", rejection.message);
        let mut headers = vec![("content-type", "text/plain; charset=utf-8")];
        if rejection.status == 405 {
            headers.push(("allow", "GET, POST"));
        }
        self.send_http_response(rejection.status, headers, Some(body.as_bytes()));
        Action::Pause
    }

    fn handle_query(&mut self, bytes: &[u8]) -> Action {
        let mut query = match DnsQuery::parse(bytes) {
            Ok(query) => query,
            Err(rejection) => return self.reject(rejection),
        };
        // The name moves out: later steps take it separately from the query.
        let name = std::mem::take(&mut query.name);
        let shared = Rc::clone(&self.shared);
        let settings = &shared.settings;
        let store = HostStore;
        let cache = VerdictCache::new(&store, settings.cache_max_entries, settings.cache_max_ttl);
        let mut counters = Vec::new();
        // The clock (a host call) is read only if the lists leave the name to the cache.
        let outcome = decide_locally(settings, &cache, &name, || self.now_ms(), &mut counters);
        counters.into_iter().for_each(|c| shared.bump(c));
        match outcome {
            LocalOutcome::Decided(decision) => self.carry_out(&query, decision),
            LocalOutcome::AskScorer => self.ask_scorer(query, name),
        }
    }

    fn ask_scorer(&mut self, query: DnsQuery, name: String) -> Action {
        let shared = Rc::clone(&self.shared);
        let Some(scorer) = shared.settings.scorer.as_ref() else {
            return Action::Continue;
        };
        let client = self
            .get_property(vec!["source", "address"])
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|addr| doh::client_ip(&addr));
        let body = callout_body(&name, &query, client);
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
                let started_ms = self.now_ms();
                self.pending = Some(Pending {
                    token,
                    query,
                    name,
                    started_ms,
                });
                Action::Pause
            }
            Err(status) => {
                let failure = decision::CalloutFailure::Dispatch(format!("{status:?}"));
                warn!("scorer callout for {name}: {failure}");
                shared.bump(failure.counter());
                self.carry_out(&query, Decision::from_failure(scorer.failure_mode))
            }
        }
    }

    /// Sends a local reply for a decided request. The verdict header goes out with it, so the
    /// reply's pass back through `on_http_response_headers` needs no further host call.
    fn answer_locally(&mut self, status: u32, content_type: &str, body: &[u8]) {
        self.answered = true;
        let settings = &self.shared.settings;
        let verdict = self
            .decision
            .zip(settings.verdict_header.as_deref())
            .map(|(decision, header)| {
                let value = decision.header_value(settings.mode, settings.verdict_header_detail);
                (header, value)
            });
        let mut headers = vec![("content-type", content_type)];
        if let Some((header, value)) = &verdict {
            headers.push((*header, value.as_str()));
        }
        self.send_http_response(status, headers, Some(body));
    }

    /// Decides a POST once its body is complete (end of stream or trailers).
    fn decide_body(&mut self) -> Action {
        self.awaiting_body = false;
        let body_size = self.body_size;
        if let Err(rejection) = check_body_size(body_size) {
            return self.reject(rejection);
        }
        match self.get_http_request_body(0, body_size) {
            Some(bytes) => self.handle_query(&bytes),
            None => self.reject(Rejection::bad_request("empty body: expected a DNS message")),
        }
    }

    /// Counts the decision and forwards or answers; returns the action for the current callback.
    fn carry_out(&mut self, query: &DnsQuery, decision: Decision) -> Action {
        let shared = Rc::clone(&self.shared);
        let settings = &shared.settings;
        decision
            .counters(settings.mode)
            .for_each(|c| shared.bump(c));
        self.decision = Some(decision);
        match decision::action_for(settings, query, &decision) {
            Ok(decision::Action::Forward) => Action::Continue,
            Ok(decision::Action::Answer(body)) => {
                self.answer_locally(200, doh::DNS_MESSAGE, &body);
                Action::Pause
            }
            Err(err) => {
                error!("could not build the block answer: {err}");
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
        let decision = match parse_reply(
            status.as_deref(),
            body.as_deref(),
            elapsed,
            scorer.timeout_ms,
        ) {
            Ok(reply) => {
                let settings = &shared.settings;
                let cache = VerdictCache::new(
                    &HostStore,
                    settings.cache_max_entries,
                    settings.cache_max_ttl,
                );
                if let Err(err) = cache.insert(&pending.name, &reply, self.now_ms()) {
                    warn!("could not cache the verdict for {}: {err}", pending.name);
                }
                Decision::from_reply(&reply)
            }
            Err(failure) => {
                warn!("scorer callout for {}: {failure}", pending.name);
                shared.bump(failure.counter());
                Decision::from_failure(scorer.failure_mode)
            }
        };
        if self.carry_out(&pending.query, decision) == Action::Continue {
            self.resume_http_request();
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
            Ok(RequestKind::Get(bytes)) => self.handle_query(&bytes),
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
        if !self.awaiting_body {
            // Body data of a GET (or after the decision): while a callout is pending or a local
            // reply went out, continuing here would forward the request behind the filter's back.
            return if self.pending.is_some() || self.answered {
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
        if self.awaiting_body {
            return self.decide_body();
        }
        if self.pending.is_some() || self.answered {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        if self.answered {
            return Action::Continue; // a local reply: it already carries the verdict header
        }
        if let (Some(decision), Some(header)) =
            (self.decision, &self.shared.settings.verdict_header)
        {
            let settings = &self.shared.settings;
            let value = decision.header_value(settings.mode, settings.verdict_header_detail);
            self.set_http_response_header(header, Some(&value));
        }
        Action::Continue
    }
}
