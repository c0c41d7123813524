//! Everything the host keeps for one VM, stored as the data of its wasmtime
//! `Store<HostState>`: configuration buffers, properties, the per-context
//! stream state (headers, bodies, what the guest asked the host to do),
//! HTTP calls in flight, metrics, logs, the clock and the shared-data handle.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use crate::abi::{LogLevel, MetricType};
use crate::clock::Clock;
use crate::header_map::HeaderMap;
use crate::shared_data::SharedData;

/// One `proxy_log` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub level: LogLevel,
    pub message: String,
}

/// A `proxy_send_local_response`, after the reply passed back through the
/// filter's response callbacks (as Envoy's local replies do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u16,
    pub details: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub grpc_status: i32,
}

impl LocalResponse {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name)
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An outgoing `proxy_http_call`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    pub token: u32,
    /// The context that dispatched it (its `proxy_on_http_call_response` goes there).
    pub context_id: u32,
    pub cluster: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub trailers: HeaderMap,
    pub timeout: Duration,
    /// Clock time (Unix nanoseconds) at which the call times out.
    pub deadline_nanos: u64,
}

impl HttpCall {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name)
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What the guest asked of the host during one callback of a stream.
#[derive(Debug, Clone, Default)]
pub(crate) struct StepEvents {
    pub resumed_request: bool,
    pub resumed_response: bool,
    pub closed: bool,
    pub local_response: Option<LocalResponse>,
    pub http_calls: Vec<u32>,
}

impl StepEvents {
    /// Whether the guest did anything to the stream.
    pub(crate) fn acted(&self) -> bool {
        self.resumed_request
            || self.resumed_response
            || self.closed
            || self.local_response.is_some()
            || !self.http_calls.is_empty()
    }
}

/// Per HTTP context: what Envoy would hold for one request.
#[derive(Debug, Clone, Default)]
pub(crate) struct StreamState {
    pub request_headers: HeaderMap,
    pub request_body: Vec<u8>,
    pub request_trailers: HeaderMap,
    pub response_headers: HeaderMap,
    pub response_body: Vec<u8>,
    pub response_trailers: HeaderMap,
    pub properties: HashMap<String, Vec<u8>>,
    pub events: StepEvents,
}

/// The reply being delivered to `proxy_on_http_call_response`.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallResponse {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub trailers: HeaderMap,
}

#[derive(Debug, Clone)]
pub(crate) struct Metric {
    pub kind: MetricType,
    pub name: String,
    pub value: i64,
    pub samples: Vec<u64>,
}

/// Host-side state of one VM (the `T` of `Store<T>`).
#[derive(Debug)]
pub struct HostState {
    pub(crate) vm_configuration: Vec<u8>,
    pub(crate) plugin_configuration: Vec<u8>,
    pub(crate) properties: HashMap<String, Vec<u8>>,
    pub(crate) unknown_properties: Vec<String>,
    pub(crate) root_context_id: u32,
    /// The context the guest is acting for (set by the host before each
    /// callback, changed by `proxy_set_effective_context`).
    pub(crate) current_context: u32,
    pub(crate) streams: HashMap<u32, StreamState>,
    pub(crate) call_response: Option<CallResponse>,
    pub(crate) http_calls: BTreeMap<u32, HttpCall>,
    pub(crate) next_call_token: u32,
    /// Clusters `proxy_http_call` may target; `None` accepts any name.
    pub(crate) clusters: Option<HashSet<String>>,
    pub(crate) metrics: Vec<Metric>,
    pub(crate) logs: Vec<LogEntry>,
    pub(crate) log_level: LogLevel,
    pub(crate) wasi_output: Vec<u8>,
    pub(crate) tick_period: Option<Duration>,
    pub(crate) done_called: bool,
    pub(crate) clock: Clock,
    pub(crate) shared_data: SharedData,
    pub(crate) random_state: u64,
}

impl HostState {
    pub(crate) fn new(clock: Clock, shared_data: SharedData) -> Self {
        Self {
            vm_configuration: Vec::new(),
            plugin_configuration: Vec::new(),
            properties: HashMap::new(),
            unknown_properties: Vec::new(),
            root_context_id: 0,
            current_context: 0,
            streams: HashMap::new(),
            call_response: None,
            http_calls: BTreeMap::new(),
            next_call_token: 1,
            clusters: None,
            metrics: Vec::new(),
            logs: Vec::new(),
            log_level: LogLevel::Trace,
            wasi_output: Vec::new(),
            tick_period: None,
            done_called: false,
            clock,
            shared_data,
            random_state: 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// The stream of the effective context, if it is an HTTP context.
    pub(crate) fn current_stream(&mut self) -> Option<&mut StreamState> {
        self.streams.get_mut(&self.current_context)
    }

    /// Splitmix64: deterministic bytes for WASI `random_get`, so runs repeat.
    pub(crate) fn next_random(&mut self) -> u64 {
        self.random_state = self.random_state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.random_state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}
