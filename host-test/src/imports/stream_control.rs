//! What a guest asks the host to do with a stream or context: resume it,
//! close it, answer it locally, switch the effective context, or signal that
//! a root context is done. Each request is recorded on the stream for the
//! test to inspect after the callback returns.

use wasmtime::{Caller, Linker};

use super::{read_bytes, read_string, status, CallResult};
use crate::abi::{Status, StreamType};
use crate::header_map::HeaderMap;
use crate::state::{HostState, LocalResponse, StreamState};

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_continue_stream",
        |mut caller: Caller<'_, HostState>, stream: i32| status(resume(caller.data_mut(), stream)),
    )?;
    // ABI 0.1 spellings, still imported by some SDK versions.
    linker.func_wrap(
        "env",
        "proxy_continue_request",
        |mut caller: Caller<'_, HostState>| status(resume(caller.data_mut(), 0)),
    )?;
    linker.func_wrap(
        "env",
        "proxy_continue_response",
        |mut caller: Caller<'_, HostState>| status(resume(caller.data_mut(), 1)),
    )?;
    linker.func_wrap(
        "env",
        "proxy_close_stream",
        |mut caller: Caller<'_, HostState>, stream: i32| {
            status(
                StreamType::from_raw(stream)
                    .ok_or_else(|| Status::BadArgument.into())
                    .and_then(|_| {
                        current(caller.data_mut())?.events.closed = true;
                        Ok(())
                    }),
            )
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut caller: Caller<'_, HostState>,
         status_code: i32,
         details: i32,
         details_size: i32,
         body: i32,
         body_size: i32,
         headers: i32,
         headers_size: i32,
         grpc_status: i32| {
            let parts = LocalResponseParts {
                status_code,
                details: (details, details_size),
                body: (body, body_size),
                headers: (headers, headers_size),
                grpc_status,
            };
            status(send_local_response(&mut caller, parts))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut caller: Caller<'_, HostState>, context: i32| {
            let state = caller.data_mut();
            let context = context as u32;
            let known = context == state.root_context_id || state.streams.contains_key(&context);
            if !known {
                return Ok(Status::BadArgument as i32);
            }
            state.current_context = context;
            Ok(Status::Ok as i32)
        },
    )?;
    linker.func_wrap("env", "proxy_done", |mut caller: Caller<'_, HostState>| {
        caller.data_mut().done_called = true;
        Ok(Status::Ok as i32)
    })?;
    Ok(())
}

fn current(state: &mut HostState) -> CallResult<&mut StreamState> {
    state
        .current_stream()
        .ok_or_else(|| Status::NotFound.into())
}

fn resume(state: &mut HostState, stream: i32) -> CallResult {
    let stream_type = StreamType::from_raw(stream).ok_or(Status::BadArgument)?;
    let events = &mut current(state)?.events;
    match stream_type {
        StreamType::Request => events.resumed_request = true,
        StreamType::Response => events.resumed_response = true,
    }
    Ok(())
}

struct LocalResponseParts {
    status_code: i32,
    details: (i32, i32),
    body: (i32, i32),
    headers: (i32, i32),
    grpc_status: i32,
}

fn send_local_response(
    caller: &mut Caller<'_, HostState>,
    parts: LocalResponseParts,
) -> CallResult {
    let details = read_string(caller, parts.details.0, parts.details.1)?;
    let body = read_bytes(caller, parts.body.0, parts.body.1)?;
    let headers = HeaderMap::decode(&read_bytes(caller, parts.headers.0, parts.headers.1)?)
        .ok_or(Status::SerializationFailure)?;
    let status = u16::try_from(parts.status_code)
        .ok()
        .filter(|s| (100..=599).contains(s))
        .ok_or(Status::BadArgument)?;
    let stream = current(caller.data_mut())?;
    stream.events.local_response = Some(LocalResponse {
        status,
        details,
        headers,
        body,
        grpc_status: parts.grpc_status,
    });
    Ok(())
}
