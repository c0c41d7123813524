//! One VM running a plugin, as one Envoy worker runs it: start-up
//! (`_initialize`, root context, `proxy_on_vm_start`, `proxy_on_configure`),
//! then HTTP streams, HTTP-call replies, ticks and time, with accessors for
//! what the guest logged, counted and stored.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use wasmtime::{Instance, Store, TypedFunc, WasmParams, WasmResults};

use crate::abi::{Action, LogLevel};
use crate::clock::Clock;
use crate::error::HostError;
use crate::header_map::HeaderMap;
use crate::plugin::Plugin;
use crate::shared_data::SharedData;
use crate::state::{CallResponse, HostState, HttpCall, LogEntry, StepEvents, StreamState};
use crate::stream::{HttpStream, Step};

const ROOT_CONTEXT_ID: u32 = 1;

/// Describes a VM before it starts; see [`Plugin::vm`].
#[derive(Debug)]
pub struct FilterBuilder<'p> {
    plugin: &'p Plugin,
    plugin_configuration: Vec<u8>,
    vm_configuration: Vec<u8>,
    shared_data: SharedData,
    clock: Clock,
    properties: HashMap<String, Vec<u8>>,
    clusters: Option<HashSet<String>>,
    log_level: LogLevel,
    random_seed: Option<u64>,
}

impl<'p> FilterBuilder<'p> {
    pub(crate) fn new(plugin: &'p Plugin) -> Self {
        let properties = [
            ("plugin_name", "dohguard"),
            ("plugin_root_id", ""),
            ("plugin_vm_id", ""),
            ("source.address", "192.0.2.7:54321"),
            ("destination.address", "127.0.0.1:8443"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec()))
        .collect();
        Self {
            plugin,
            plugin_configuration: Vec::new(),
            vm_configuration: Vec::new(),
            shared_data: SharedData::new(),
            clock: Clock::new(),
            properties,
            clusters: None,
            log_level: LogLevel::Trace,
            random_seed: None,
        }
    }

    /// Seeds WASI `random_get` (deterministic either way; VMs given different seeds see
    /// different bytes, as Envoy's workers do).
    pub fn random_seed(mut self, seed: u64) -> Self {
        self.random_seed = Some(seed);
        self
    }

    /// The plugin configuration (buffer type 7), e.g. the filter's JSON.
    pub fn configuration(mut self, configuration: impl Into<Vec<u8>>) -> Self {
        self.plugin_configuration = configuration.into();
        self
    }

    pub fn vm_configuration(mut self, configuration: impl Into<Vec<u8>>) -> Self {
        self.vm_configuration = configuration.into();
        self
    }

    /// Shares one store between VMs, as Envoy's workers share it.
    pub fn shared_data(mut self, shared_data: SharedData) -> Self {
        self.shared_data = shared_data;
        self
    }

    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// A VM-wide property (a stream may shadow it).
    pub fn property(mut self, path: &str, value: impl Into<Vec<u8>>) -> Self {
        self.properties.insert(path.to_owned(), value.into());
        self
    }

    /// Restricts `proxy_http_call` to these clusters (others answer `BadArgument`, as in Envoy).
    pub fn clusters(mut self, names: &[&str]) -> Self {
        self.clusters = Some(names.iter().map(|n| (*n).to_owned()).collect());
        self
    }

    /// Lowest level the host records and reports to `proxy_get_log_level`.
    pub fn log_level(mut self, level: LogLevel) -> Self {
        self.log_level = level;
        self
    }

    /// Instantiates the module and runs the VM and root-context start-up.
    pub fn start(self) -> Result<Filter, HostError> {
        let mut state = HostState::new(self.clock, self.shared_data);
        state.plugin_configuration = self.plugin_configuration;
        state.vm_configuration = self.vm_configuration;
        state.properties = self.properties;
        state.clusters = self.clusters;
        state.log_level = self.log_level;
        if let Some(seed) = self.random_seed {
            state.random_state = seed;
        }
        state.root_context_id = ROOT_CONTEXT_ID;
        let mut store = Store::new(self.plugin.engine(), state);
        let instance = self
            .plugin
            .linker()
            .instantiate(&mut store, self.plugin.module())
            .map_err(|e| HostError::Instantiate {
                message: format!("{e:?}"),
            })?;
        let guest = GuestExports::find(&instance, &mut store)?;
        let mut filter = Filter {
            store,
            instance,
            guest,
            next_context_id: ROOT_CONTEXT_ID + 1,
        };
        filter.boot()?;
        Ok(filter)
    }
}

/// The guest exports the host drives, looked up once.
struct GuestExports {
    initialize: Option<TypedFunc<(), ()>>,
    on_context_create: TypedFunc<(i32, i32), ()>,
    on_vm_start: TypedFunc<(i32, i32), i32>,
    on_configure: TypedFunc<(i32, i32), i32>,
    on_tick: Option<TypedFunc<i32, ()>>,
    on_request_headers: TypedFunc<(i32, i32, i32), i32>,
    on_request_body: TypedFunc<(i32, i32, i32), i32>,
    /// Optional: a guest without it continues past trailers (as Envoy does).
    on_request_trailers: Option<TypedFunc<(i32, i32), i32>>,
    on_response_headers: TypedFunc<(i32, i32, i32), i32>,
    on_response_body: TypedFunc<(i32, i32, i32), i32>,
    /// Optional, like `on_request_trailers`.
    on_response_trailers: Option<TypedFunc<(i32, i32), i32>>,
    on_http_call_response: TypedFunc<(i32, i32, i32, i32, i32), ()>,
    on_done: TypedFunc<i32, i32>,
    on_log: TypedFunc<i32, ()>,
    on_delete: TypedFunc<i32, ()>,
}

impl GuestExports {
    fn find(instance: &Instance, store: &mut Store<HostState>) -> Result<Self, HostError> {
        fn required<P: WasmParams, R: WasmResults>(
            instance: &Instance,
            store: &mut Store<HostState>,
            name: &'static str,
        ) -> Result<TypedFunc<P, R>, HostError> {
            instance
                .get_typed_func::<P, R>(&mut *store, name)
                .map_err(|e| HostError::MissingExport {
                    name,
                    message: format!("{e}"),
                })
        }
        Ok(Self {
            initialize: instance.get_typed_func(&mut *store, "_initialize").ok(),
            on_context_create: required(instance, store, "proxy_on_context_create")?,
            on_vm_start: required(instance, store, "proxy_on_vm_start")?,
            on_configure: required(instance, store, "proxy_on_configure")?,
            on_tick: instance.get_typed_func(&mut *store, "proxy_on_tick").ok(),
            on_request_headers: required(instance, store, "proxy_on_request_headers")?,
            on_request_body: required(instance, store, "proxy_on_request_body")?,
            on_request_trailers: instance
                .get_typed_func(&mut *store, "proxy_on_request_trailers")
                .ok(),
            on_response_headers: required(instance, store, "proxy_on_response_headers")?,
            on_response_body: required(instance, store, "proxy_on_response_body")?,
            on_response_trailers: instance
                .get_typed_func(&mut *store, "proxy_on_response_trailers")
                .ok(),
            on_http_call_response: required(instance, store, "proxy_on_http_call_response")?,
            on_done: required(instance, store, "proxy_on_done")?,
            on_log: required(instance, store, "proxy_on_log")?,
            on_delete: required(instance, store, "proxy_on_delete")?,
        })
    }
}

/// Which stream callback to run.
#[derive(Debug, Clone, Copy)]
pub(crate) enum StreamCallback {
    RequestHeaders,
    RequestBody,
    RequestTrailers,
    ResponseHeaders,
    ResponseBody,
    ResponseTrailers,
}

impl StreamCallback {
    fn name(self) -> &'static str {
        match self {
            Self::RequestHeaders => "proxy_on_request_headers",
            Self::RequestBody => "proxy_on_request_body",
            Self::RequestTrailers => "proxy_on_request_trailers",
            Self::ResponseHeaders => "proxy_on_response_headers",
            Self::ResponseBody => "proxy_on_response_body",
            Self::ResponseTrailers => "proxy_on_response_trailers",
        }
    }
}

/// A running VM of a [`Plugin`].
pub struct Filter {
    store: Store<HostState>,
    instance: Instance,
    guest: GuestExports,
    next_context_id: u32,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("root_context_id", &ROOT_CONTEXT_ID)
            .field("streams", &self.store.data().streams.len())
            .finish_non_exhaustive()
    }
}

impl Filter {
    /// Compiles `wasm_path` and starts one VM with `configuration`.
    pub fn load(
        wasm_path: impl AsRef<std::path::Path>,
        configuration: &str,
    ) -> Result<Self, HostError> {
        Plugin::load(wasm_path)?
            .vm()
            .configuration(configuration)
            .start()
    }

    fn boot(&mut self) -> Result<(), HostError> {
        if let Some(initialize) = self.guest.initialize.clone() {
            self.invoke("_initialize", ROOT_CONTEXT_ID, initialize, ())?;
        }
        let create = self.guest.on_context_create.clone();
        self.invoke(
            "proxy_on_context_create",
            ROOT_CONTEXT_ID,
            create,
            (ROOT_CONTEXT_ID as i32, 0),
        )?;
        let vm_config_len = self.store.data().vm_configuration.len() as i32;
        let vm_start = self.guest.on_vm_start.clone();
        if self.invoke(
            "proxy_on_vm_start",
            ROOT_CONTEXT_ID,
            vm_start,
            (ROOT_CONTEXT_ID as i32, vm_config_len),
        )? == 0
        {
            return Err(HostError::VmStartRejected {
                log: self.logs().to_vec(),
            });
        }
        let config_len = self.store.data().plugin_configuration.len() as i32;
        let configure = self.guest.on_configure.clone();
        if self.invoke(
            "proxy_on_configure",
            ROOT_CONTEXT_ID,
            configure,
            (ROOT_CONTEXT_ID as i32, config_len),
        )? == 0
        {
            return Err(HostError::ConfigurationRejected {
                log: self.logs().to_vec(),
            });
        }
        Ok(())
    }

    /// Calls a guest export as `context`, turning a trap into [`HostError::Trap`].
    fn invoke<P: WasmParams, R: WasmResults>(
        &mut self,
        callback: &'static str,
        context: u32,
        func: TypedFunc<P, R>,
        params: P,
    ) -> Result<R, HostError> {
        self.store.data_mut().current_context = context;
        func.call(&mut self.store, params)
            .map_err(|e| HostError::Trap {
                callback,
                message: format!("{e:?}"),
                output: String::from_utf8_lossy(&self.store.data().wasi_output).into_owned(),
            })
    }

    /// Opens a new HTTP context (`proxy_on_context_create(id, root)`).
    pub fn stream(&mut self) -> Result<HttpStream<'_>, HostError> {
        let id = self.next_context_id;
        self.next_context_id += 1;
        self.store
            .data_mut()
            .streams
            .insert(id, StreamState::default());
        let create = self.guest.on_context_create.clone();
        self.invoke(
            "proxy_on_context_create",
            id,
            create,
            (id as i32, ROOT_CONTEXT_ID as i32),
        )?;
        Ok(HttpStream::new(self, id))
    }

    /// The open HTTP context `id` again (after its borrow was given up, for example to
    /// deliver an HTTP call while the stream waits for more request data).
    pub fn reopen_stream(&mut self, id: u32) -> Result<HttpStream<'_>, HostError> {
        if !self.store.data().streams.contains_key(&id) {
            return Err(HostError::NoSuchStream(id));
        }
        Ok(HttpStream::new(self, id))
    }

    /// Runs one stream callback and collects what the guest asked for. A
    /// local reply then passes through the response callbacks, as in Envoy.
    pub(crate) fn run_stream_callback(
        &mut self,
        context: u32,
        callback: StreamCallback,
        end_of_stream: bool,
    ) -> Result<Step, HostError> {
        self.begin_step(context);
        let action = self.call_stream_callback(context, callback, end_of_stream)?;
        self.finish_step(context, Some(action))
    }

    fn call_stream_callback(
        &mut self,
        context: u32,
        callback: StreamCallback,
        end_of_stream: bool,
    ) -> Result<Action, HostError> {
        let stream = &self.store.data().streams[&context];
        let trailers = match callback {
            StreamCallback::RequestTrailers => Some((
                self.guest.on_request_trailers.clone(),
                stream.request_trailers.len(),
            )),
            StreamCallback::ResponseTrailers => Some((
                self.guest.on_response_trailers.clone(),
                stream.response_trailers.len(),
            )),
            _ => None,
        };
        if let Some((func, count)) = trailers {
            // `proxy_on_{request,response}_trailers(context, trailers)`: no end-of-stream
            // flag, trailers always end their direction of the stream.
            let Some(func) = func else {
                return Ok(Action::Continue);
            };
            let count = count as i32;
            let raw = self.invoke(callback.name(), context, func, (context as i32, count))?;
            return Action::from_raw(raw).ok_or(HostError::BadAction {
                callback: callback.name(),
                raw,
            });
        }
        let (func, size) = match callback {
            StreamCallback::RequestTrailers | StreamCallback::ResponseTrailers => {
                unreachable!("handled above")
            }
            StreamCallback::RequestHeaders => (
                self.guest.on_request_headers.clone(),
                stream.request_headers.len(),
            ),
            StreamCallback::RequestBody => (
                self.guest.on_request_body.clone(),
                stream.request_body.len(),
            ),
            StreamCallback::ResponseHeaders => (
                self.guest.on_response_headers.clone(),
                stream.response_headers.len(),
            ),
            StreamCallback::ResponseBody => (
                self.guest.on_response_body.clone(),
                stream.response_body.len(),
            ),
        };
        let raw = self.invoke(
            callback.name(),
            context,
            func,
            (context as i32, size as i32, end_of_stream as i32),
        )?;
        Action::from_raw(raw).ok_or(HostError::BadAction {
            callback: callback.name(),
            raw,
        })
    }

    fn begin_step(&mut self, context: u32) {
        if let Some(stream) = self.store.data_mut().streams.get_mut(&context) {
            stream.events = StepEvents::default();
        }
    }

    fn finish_step(&mut self, context: u32, action: Option<Action>) -> Result<Step, HostError> {
        let state = self.store.data_mut();
        let mut events = state
            .streams
            .get_mut(&context)
            .map(|s| std::mem::take(&mut s.events))
            .unwrap_or_default();
        let calls = events
            .http_calls
            .iter()
            .filter_map(|token| state.http_calls.get(token).cloned())
            .collect();
        if let Some(local) = events.local_response.take() {
            events.local_response = Some(self.encode_local_reply(context, local)?);
        }
        let others = self.other_streams_acted_on(context)?;
        Ok(Step {
            action,
            events,
            calls,
            others,
        })
    }

    /// What the guest did to other streams during a step of `context` (after
    /// `proxy_set_effective_context`): their local replies pass through their own response
    /// callbacks, as in Envoy.
    fn other_streams_acted_on(&mut self, context: u32) -> Result<Vec<(u32, Step)>, HostError> {
        let acted: Vec<u32> = self
            .store
            .data()
            .streams
            .iter()
            .filter(|(id, s)| **id != context && s.events.acted())
            .map(|(id, _)| *id)
            .collect();
        let mut others = Vec::new();
        for id in acted {
            let state = self.store.data_mut();
            let mut events =
                std::mem::take(&mut state.streams.get_mut(&id).expect("listed").events);
            if let Some(local) = events.local_response.take() {
                events.local_response = Some(self.encode_local_reply(id, local)?);
            }
            let step = Step {
                action: None,
                events,
                calls: Vec::new(),
                others: Vec::new(),
            };
            others.push((id, step));
        }
        others.sort_by_key(|(id, _)| *id);
        Ok(others)
    }

    /// Envoy sends a local reply back through this filter's encoder side:
    /// run `proxy_on_response_headers` (and `_body`) on it and keep what the
    /// guest changed.
    fn encode_local_reply(
        &mut self,
        context: u32,
        mut local: crate::state::LocalResponse,
    ) -> Result<crate::state::LocalResponse, HostError> {
        let mut headers = HeaderMap::new();
        headers.add(":status", &local.status.to_string());
        for (name, value) in local.headers.pairs() {
            headers.add(name, value);
        }
        if !local.body.is_empty() {
            if headers.get("content-type").is_none() {
                headers.add("content-type", "text/plain");
            }
            headers.replace("content-length", &local.body.len().to_string());
        }
        let stream = self
            .store
            .data_mut()
            .streams
            .get_mut(&context)
            .expect("stream exists");
        stream.response_headers = headers;
        stream.response_body = local.body.clone();
        let has_body = !local.body.is_empty();
        self.call_stream_callback(context, StreamCallback::ResponseHeaders, !has_body)?;
        if has_body {
            self.call_stream_callback(context, StreamCallback::ResponseBody, true)?;
        }
        let stream = self
            .store
            .data_mut()
            .streams
            .get_mut(&context)
            .expect("stream exists");
        stream.events = StepEvents::default();
        local.headers = stream.response_headers.clone();
        local.body = stream.response_body.clone();
        Ok(local)
    }

    /// Delivers a reply (`Some`) or a failure (`None`: no headers, no body, as
    /// Envoy reports a reset or unreachable cluster) to the context that made
    /// HTTP call `token`.
    pub fn deliver_http_call(
        &mut self,
        token: u32,
        reply: Option<(HeaderMap, Vec<u8>)>,
    ) -> Result<Step, HostError> {
        let call = self
            .store
            .data_mut()
            .http_calls
            .remove(&token)
            .ok_or(HostError::UnknownHttpCall { token })?;
        let response = reply
            .map(|(headers, body)| CallResponse {
                headers,
                body,
                trailers: HeaderMap::new(),
            })
            .unwrap_or_default();
        let sizes = (
            response.headers.len() as i32,
            response.body.len() as i32,
            response.trailers.len() as i32,
        );
        self.store.data_mut().call_response = Some(response);
        self.begin_step(call.context_id);
        let func = self.guest.on_http_call_response.clone();
        let result = self.invoke(
            "proxy_on_http_call_response",
            call.context_id,
            func,
            (
                call.context_id as i32,
                token as i32,
                sizes.0,
                sizes.1,
                sizes.2,
            ),
        );
        self.store.data_mut().call_response = None;
        result?;
        self.finish_step(call.context_id, None)
    }

    /// Times out every HTTP call whose deadline has passed on the clock
    /// (see [`Filter::time_out_http_call`]); returns what each affected stream did.
    pub fn expire_http_calls(&mut self) -> Result<Vec<(u32, Step)>, HostError> {
        let now = self.clock().now_nanos();
        let expired: Vec<u32> = self
            .store
            .data()
            .http_calls
            .values()
            .filter(|call| call.deadline_nanos <= now)
            .map(|call| call.token)
            .collect();
        expired
            .into_iter()
            .map(|token| Ok((token, self.time_out_http_call(token)?)))
            .collect()
    }

    /// Delivers what Envoy delivers when a call's timeout fires: its async
    /// client answers with a synthesised `504` ("upstream request timeout"),
    /// not with a failure. The clock is moved to the call's deadline first.
    pub fn time_out_http_call(&mut self, token: u32) -> Result<Step, HostError> {
        let deadline = self
            .store
            .data()
            .http_calls
            .get(&token)
            .ok_or(HostError::UnknownHttpCall { token })?
            .deadline_nanos;
        self.clock().advance_to(deadline);
        let body = b"upstream request timeout".to_vec();
        let headers = HeaderMap::from_pairs(&[
            (":status", "504"),
            ("content-length", &body.len().to_string()),
            ("content-type", "text/plain"),
        ]);
        self.deliver_http_call(token, Some((headers, body)))
    }

    /// Calls in flight, oldest first.
    pub fn pending_http_calls(&self) -> Vec<HttpCall> {
        self.store.data().http_calls.values().cloned().collect()
    }

    /// Runs `proxy_on_tick` on the root context.
    pub fn tick(&mut self) -> Result<(), HostError> {
        if let Some(on_tick) = self.guest.on_tick.clone() {
            self.invoke(
                "proxy_on_tick",
                ROOT_CONTEXT_ID,
                on_tick,
                ROOT_CONTEXT_ID as i32,
            )?;
        }
        Ok(())
    }

    /// Runs `proxy_on_tick` and returns what the guest did to streams during it (after
    /// `proxy_set_effective_context`), as [`Filter::deliver_http_call`] reports other streams.
    pub fn tick_streams(&mut self) -> Result<Vec<(u32, Step)>, HostError> {
        self.tick()?;
        self.other_streams_acted_on(ROOT_CONTEXT_ID)
    }

    pub fn tick_period(&self) -> Option<Duration> {
        self.store.data().tick_period
    }

    /// Ends a stream: `proxy_on_done`, `proxy_on_log`, `proxy_on_delete`.
    pub(crate) fn close_stream(&mut self, context: u32) -> Result<(), HostError> {
        let (done, log, delete) = (
            self.guest.on_done.clone(),
            self.guest.on_log.clone(),
            self.guest.on_delete.clone(),
        );
        self.invoke("proxy_on_done", context, done, context as i32)?;
        self.invoke("proxy_on_log", context, log, context as i32)?;
        self.invoke("proxy_on_delete", context, delete, context as i32)?;
        self.store.data_mut().streams.remove(&context);
        Ok(())
    }

    pub(crate) fn stream_state(&self, context: u32) -> &StreamState {
        &self.store.data().streams[&context]
    }

    pub(crate) fn stream_state_mut(&mut self, context: u32) -> &mut StreamState {
        self.store
            .data_mut()
            .streams
            .get_mut(&context)
            .expect("stream exists")
    }

    pub fn clock(&self) -> &Clock {
        &self.store.data().clock
    }

    pub fn advance_clock(&self, by: Duration) {
        self.clock().advance(by);
    }

    pub fn shared_data(&self) -> &SharedData {
        &self.store.data().shared_data
    }

    /// Sets a VM-wide property.
    pub fn set_property(&mut self, path: &str, value: impl Into<Vec<u8>>) {
        self.store
            .data_mut()
            .properties
            .insert(path.to_owned(), value.into());
    }

    /// Property paths the guest asked for that the host does not know.
    pub fn unknown_property_paths(&self) -> &[String] {
        &self.store.data().unknown_properties
    }

    /// The value of counter or gauge `name`; `None` if it was never defined.
    pub fn metric(&self, name: &str) -> Option<i64> {
        self.store
            .data()
            .metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }

    /// Samples recorded on histogram `name`.
    pub fn histogram(&self, name: &str) -> Option<&[u64]> {
        self.store
            .data()
            .metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.samples.as_slice())
    }

    /// Every defined metric and its value, in definition order.
    pub fn metrics(&self) -> Vec<(String, i64)> {
        self.store
            .data()
            .metrics
            .iter()
            .map(|m| (m.name.clone(), m.value))
            .collect()
    }

    pub fn logs(&self) -> &[LogEntry] {
        &self.store.data().logs
    }

    /// Whether some log line at `level` or above contains `needle`.
    pub fn logged(&self, level: LogLevel, needle: &str) -> bool {
        self.logs()
            .iter()
            .any(|e| e.level >= level && e.message.contains(needle))
    }

    pub fn clear_logs(&mut self) {
        self.store.data_mut().logs.clear();
    }

    /// What the guest wrote to WASI stdout/stderr.
    pub fn guest_output(&self) -> String {
        String::from_utf8_lossy(&self.store.data().wasi_output).into_owned()
    }

    /// Whether the guest called `proxy_done`.
    pub fn done_called(&self) -> bool {
        self.store.data().done_called
    }

    /// Size of the guest's linear memory in bytes.
    pub fn memory_size(&mut self) -> usize {
        self.instance
            .get_memory(&mut self.store, "memory")
            .map(|m| m.data_size(&self.store))
            .unwrap_or(0)
    }
}
