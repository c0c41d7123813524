//! The expectation-style test API for one HTTP stream:
//!
//! ```no_run
//! # fn main() -> Result<(), dohguard_host_test::HostError> {
//! use dohguard_host_test::{dohguard_filter_wasm, Plugin};
//!
//! let plugin = Plugin::load(dohguard_filter_wasm()?)?;
//! let mut filter = plugin.vm().configuration(r#"{"scorer": {"cluster": "scorer"}}"#).start()?;
//! let mut req = filter.stream()?;
//! req.request_headers(&[(":method", "GET"), (":path", "/dns-query?dns=...")], true)?
//!     .expect_http_call("scorer")
//!     .returning(200, r#"{"verdict": "allow", "...": "..."}"#)?
//!     .expect_continue();
//! # Ok(())
//! # }
//! ```
//!
//! Each call runs one guest callback and returns an [`Outcome`] describing
//! what the guest did (its action, a local reply, HTTP calls, a resume). The
//! `expect_*` methods panic with the guest's log when the guest did something
//! else, like the proxy-wasm test framework.

use std::fmt::Debug;
use std::ops::{Range, RangeInclusive};

use crate::abi::Action;
use crate::error::HostError;
use crate::filter::{Filter, StreamCallback};
use crate::header_map::HeaderMap;
use crate::state::{HttpCall, LocalResponse, StepEvents};

/// What the guest did during one callback.
#[derive(Debug, Clone)]
pub struct Step {
    /// The callback's return value (`None` for `proxy_on_http_call_response`).
    pub action: Option<Action>,
    pub(crate) events: StepEvents,
    /// HTTP calls dispatched during the callback.
    pub calls: Vec<HttpCall>,
    /// Other streams the guest acted on during the callback (through
    /// `proxy_set_effective_context`), by context id.
    pub others: Vec<(u32, Step)>,
}

impl Step {
    /// What the guest did to stream `context_id` during this callback of another stream.
    pub fn for_stream(&self, context_id: u32) -> Option<&Step> {
        self.others
            .iter()
            .find(|(id, _)| *id == context_id)
            .map(|(_, step)| step)
    }

    pub fn local_response(&self) -> Option<&LocalResponse> {
        self.events.local_response.as_ref()
    }

    /// Whether the guest resumed the request (`proxy_continue_stream`).
    pub fn resumed_request(&self) -> bool {
        self.events.resumed_request
    }

    pub fn resumed_response(&self) -> bool {
        self.events.resumed_response
    }

    /// Whether the stream goes on to the next filter after this step.
    pub fn continues(&self) -> bool {
        self.events.local_response.is_none()
            && (self.action == Some(Action::Continue)
                || self.events.resumed_request
                || self.events.resumed_response)
    }
}

/// Status codes or ranges `expect_local_response` accepts.
pub trait StatusMatch: Debug {
    fn matches(&self, status: u16) -> bool;
}

impl StatusMatch for u16 {
    fn matches(&self, status: u16) -> bool {
        *self == status
    }
}

impl StatusMatch for Range<u16> {
    fn matches(&self, status: u16) -> bool {
        self.contains(&status)
    }
}

impl StatusMatch for RangeInclusive<u16> {
    fn matches(&self, status: u16) -> bool {
        self.contains(&status)
    }
}

/// One HTTP context of a [`Filter`].
#[derive(Debug)]
pub struct HttpStream<'f> {
    filter: &'f mut Filter,
    id: u32,
}

impl<'f> HttpStream<'f> {
    pub(crate) fn new(filter: &'f mut Filter, id: u32) -> Self {
        Self { filter, id }
    }

    pub fn context_id(&self) -> u32 {
        self.id
    }

    /// A property only this stream sees (e.g. `source.address`).
    pub fn set_property(&mut self, path: &str, value: impl Into<Vec<u8>>) -> &mut Self {
        self.filter
            .stream_state_mut(self.id)
            .properties
            .insert(path.to_owned(), value.into());
        self
    }

    /// Sets the request headers and runs `proxy_on_request_headers`.
    pub fn request_headers(
        &mut self,
        headers: &[(&str, &str)],
        end_of_stream: bool,
    ) -> Result<Outcome<'_>, HostError> {
        self.filter.stream_state_mut(self.id).request_headers = HeaderMap::from_pairs(headers);
        self.run(StreamCallback::RequestHeaders, end_of_stream)
    }

    /// Appends `chunk` to the buffered request body and runs `proxy_on_request_body`
    /// with the whole buffered size (the host buffers like Envoy under
    /// `StopIterationAndBuffer`).
    pub fn request_body(
        &mut self,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Outcome<'_>, HostError> {
        self.filter
            .stream_state_mut(self.id)
            .request_body
            .extend_from_slice(chunk);
        self.run(StreamCallback::RequestBody, end_of_stream)
    }

    /// Sets the request trailers and runs `proxy_on_request_trailers`: the end of a request
    /// whose body did not carry end-of-stream (HTTP/2 trailers).
    pub fn request_trailers(
        &mut self,
        trailers: &[(&str, &str)],
    ) -> Result<Outcome<'_>, HostError> {
        self.filter.stream_state_mut(self.id).request_trailers = HeaderMap::from_pairs(trailers);
        self.run(StreamCallback::RequestTrailers, true)
    }

    pub fn response_headers(
        &mut self,
        headers: &[(&str, &str)],
        end_of_stream: bool,
    ) -> Result<Outcome<'_>, HostError> {
        self.filter.stream_state_mut(self.id).response_headers = HeaderMap::from_pairs(headers);
        self.run(StreamCallback::ResponseHeaders, end_of_stream)
    }

    pub fn response_body(
        &mut self,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Outcome<'_>, HostError> {
        self.filter
            .stream_state_mut(self.id)
            .response_body
            .extend_from_slice(chunk);
        self.run(StreamCallback::ResponseBody, end_of_stream)
    }

    /// Sets the response trailers and runs `proxy_on_response_trailers`: the end of a
    /// response whose body did not carry end-of-stream.
    pub fn response_trailers(
        &mut self,
        trailers: &[(&str, &str)],
    ) -> Result<Outcome<'_>, HostError> {
        self.filter.stream_state_mut(self.id).response_trailers = HeaderMap::from_pairs(trailers);
        self.run(StreamCallback::ResponseTrailers, true)
    }

    fn run(
        &mut self,
        callback: StreamCallback,
        end_of_stream: bool,
    ) -> Result<Outcome<'_>, HostError> {
        let step = self
            .filter
            .run_stream_callback(self.id, callback, end_of_stream)?;
        Ok(Outcome {
            filter: self.filter,
            step,
        })
    }

    /// Request headers as the filter left them.
    pub fn request_header_map(&self) -> &HeaderMap {
        &self.filter.stream_state(self.id).request_headers
    }

    /// Response headers as the filter left them.
    pub fn response_header_map(&self) -> &HeaderMap {
        &self.filter.stream_state(self.id).response_headers
    }

    pub fn request_body_bytes(&self) -> &[u8] {
        &self.filter.stream_state(self.id).request_body
    }

    pub fn response_body_bytes(&self) -> &[u8] {
        &self.filter.stream_state(self.id).response_body
    }

    pub fn filter(&self) -> &Filter {
        self.filter
    }

    /// Ends the stream (`proxy_on_done`, `proxy_on_log`, `proxy_on_delete`).
    pub fn finish(self) -> Result<(), HostError> {
        self.filter.close_stream(self.id)
    }
}

/// What one callback did, with expectations to assert on it.
#[derive(Debug)]
pub struct Outcome<'s> {
    filter: &'s mut Filter,
    step: Step,
}

impl<'s> Outcome<'s> {
    pub fn step(&self) -> &Step {
        &self.step
    }

    pub fn into_step(self) -> Step {
        self.step
    }

    pub fn action(&self) -> Option<Action> {
        self.step.action
    }

    pub fn local_response(&self) -> Option<&LocalResponse> {
        self.step.local_response()
    }

    pub fn http_calls(&self) -> &[HttpCall] {
        &self.step.calls
    }

    #[track_caller]
    fn fail(&self, expected: &str) -> ! {
        let log: String = self
            .filter
            .logs()
            .iter()
            .map(|e| format!("\n  [{:?}] {}", e.level, e.message))
            .collect();
        panic!(
            "expected {expected}, but the guest returned {:?}, resumed request: {}, local response: {:?}, http calls: {:?}\nguest log:{log}",
            self.step.action,
            self.step.resumed_request(),
            self.step.local_response().map(|r| (r.status, r.body_text())),
            self.step.calls.iter().map(|c| &c.cluster).collect::<Vec<_>>(),
        )
    }

    /// The stream goes on untouched by a local reply.
    #[track_caller]
    pub fn expect_continue(self) -> Self {
        if !self.step.continues() {
            self.fail("the stream to continue");
        }
        self
    }

    /// The guest stopped the stream without answering or resuming it.
    #[track_caller]
    pub fn expect_pause(self) -> Self {
        if self.step.action == Some(Action::Continue)
            || self.step.continues()
            || self.step.local_response().is_some()
        {
            self.fail("the stream to pause");
        }
        self
    }

    /// The guest answered locally with a matching status and did not let the
    /// request continue; returns the reply as the client would see it.
    #[track_caller]
    pub fn expect_local_response(self, status: impl StatusMatch) -> LocalResponse {
        let answered = self
            .step
            .local_response()
            .is_some_and(|r| status.matches(r.status));
        let forwarded = self.step.action == Some(Action::Continue) || self.step.resumed_request();
        if !answered || forwarded {
            self.fail(&format!(
                "a local response with status {status:?} and no continue"
            ));
        }
        self.step
            .events
            .local_response
            .clone()
            .expect("checked above")
    }

    #[track_caller]
    pub fn expect_no_http_call(self) -> Self {
        if !self.step.calls.is_empty() {
            self.fail("no HTTP call");
        }
        self
    }

    /// The guest dispatched exactly one HTTP call, to `cluster`.
    #[track_caller]
    pub fn expect_http_call(self, cluster: &str) -> PendingCall<'s> {
        match self.step.calls.as_slice() {
            [call] if call.cluster == cluster => {
                let call = call.clone();
                PendingCall {
                    filter: self.filter,
                    call,
                }
            }
            _ => self.fail(&format!("one HTTP call to cluster {cluster:?}")),
        }
    }

    pub fn filter(&self) -> &Filter {
        self.filter
    }
}

/// An HTTP call the guest made, waiting for the test to answer it.
#[derive(Debug)]
pub struct PendingCall<'s> {
    filter: &'s mut Filter,
    call: HttpCall,
}

impl<'s> PendingCall<'s> {
    pub fn request(&self) -> &HttpCall {
        &self.call
    }

    pub fn token(&self) -> u32 {
        self.call.token
    }

    /// Answers with `status` and a JSON body.
    pub fn returning(self, status: u16, body: impl AsRef<[u8]>) -> Result<Outcome<'s>, HostError> {
        let status = status.to_string();
        self.returning_response(
            &[(":status", &status), ("content-type", "application/json")],
            body,
        )
    }

    /// Answers with the given headers (include `:status`) and body.
    pub fn returning_response(
        self,
        headers: &[(&str, &str)],
        body: impl AsRef<[u8]>,
    ) -> Result<Outcome<'s>, HostError> {
        let reply = (HeaderMap::from_pairs(headers), body.as_ref().to_vec());
        let step = self
            .filter
            .deliver_http_call(self.call.token, Some(reply))?;
        Ok(Outcome {
            filter: self.filter,
            step,
        })
    }

    /// Fails the call as a reset connection does (no headers, no body).
    pub fn failing(self) -> Result<Outcome<'s>, HostError> {
        let step = self.filter.deliver_http_call(self.call.token, None)?;
        Ok(Outcome {
            filter: self.filter,
            step,
        })
    }

    /// Moves the clock to the call's deadline and answers with the `504`
    /// Envoy synthesises when a call times out.
    pub fn timing_out(self) -> Result<Outcome<'s>, HostError> {
        let step = self.filter.time_out_http_call(self.call.token)?;
        Ok(Outcome {
            filter: self.filter,
            step,
        })
    }

    /// Leaves the call unanswered (see `Filter::expire_http_calls`).
    pub fn leave_pending(self) -> HttpCall {
        self.call
    }
}
