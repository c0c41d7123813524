//! `proxy_http_call`: records the call (cluster, headers, body, deadline) for
//! the test to answer. Like Envoy, it refuses calls to unknown clusters (when
//! the test named the clusters) and calls without `:method`, `:path` and
//! `:authority`.

use std::time::Duration;

use wasmtime::{Caller, Linker};

use super::{read_bytes, read_string, status, write_u32, CallResult};
use crate::abi::Status;
use crate::header_map::HeaderMap;
use crate::state::{HostState, HttpCall};

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut caller: Caller<'_, HostState>,
         cluster: i32,
         cluster_size: i32,
         headers: i32,
         headers_size: i32,
         body: i32,
         body_size: i32,
         trailers: i32,
         trailers_size: i32,
         timeout_ms: i32,
         return_token: i32| {
            let request = CallRequest {
                cluster: (cluster, cluster_size),
                headers: (headers, headers_size),
                body: (body, body_size),
                trailers: (trailers, trailers_size),
                timeout_ms: timeout_ms as u32,
            };
            status(dispatch(&mut caller, request, return_token))
        },
    )?;
    Ok(())
}

/// Guest pointers and lengths of one call.
struct CallRequest {
    cluster: (i32, i32),
    headers: (i32, i32),
    body: (i32, i32),
    trailers: (i32, i32),
    timeout_ms: u32,
}

fn dispatch(
    caller: &mut Caller<'_, HostState>,
    request: CallRequest,
    return_token: i32,
) -> CallResult {
    let cluster = read_string(caller, request.cluster.0, request.cluster.1)?;
    let headers = HeaderMap::decode(&read_bytes(caller, request.headers.0, request.headers.1)?)
        .ok_or(Status::SerializationFailure)?;
    let body = read_bytes(caller, request.body.0, request.body.1)?;
    let trailers = HeaderMap::decode(&read_bytes(caller, request.trailers.0, request.trailers.1)?)
        .ok_or(Status::SerializationFailure)?;
    let state = caller.data_mut();
    if let Some(known) = &state.clusters {
        if !known.contains(&cluster) {
            return Err(Status::BadArgument.into());
        }
    }
    if [":method", ":path", ":authority"]
        .iter()
        .any(|h| headers.get(h).is_none())
    {
        return Err(Status::BadArgument.into());
    }
    let token = state.next_call_token;
    state.next_call_token += 1;
    let timeout = Duration::from_millis(u64::from(request.timeout_ms));
    let call = HttpCall {
        token,
        context_id: state.current_context,
        cluster,
        headers,
        body,
        trailers,
        timeout,
        deadline_nanos: state
            .clock
            .now_nanos()
            .saturating_add(timeout.as_nanos() as u64),
    };
    state.http_calls.insert(token, call);
    if let Some(stream) = state.current_stream() {
        stream.events.http_calls.push(token);
    }
    write_u32(caller, return_token, token)
}
