//! Byte buffers: request/response bodies of the effective stream, the body
//! of the HTTP-call reply being delivered, and the VM/plugin configuration.

use wasmtime::{Caller, Linker};

use super::{read_bytes, return_bytes, status, CallResult};
use crate::abi::{BufferType, Status};
use crate::state::HostState;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut caller: Caller<'_, HostState>,
         buffer: i32,
         start: i32,
         max_size: i32,
         return_data: i32,
         return_size: i32| {
            status(get(
                &mut caller,
                buffer,
                start,
                max_size,
                return_data,
                return_size,
            ))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut caller: Caller<'_, HostState>,
         buffer: i32,
         start: i32,
         size: i32,
         data: i32,
         data_size: i32| { status(set(&mut caller, buffer, start, size, data, data_size)) },
    )?;
    Ok(())
}

fn buffer_mut(state: &mut HostState, buffer: i32) -> CallResult<&mut Vec<u8>> {
    let buffer = BufferType::from_raw(buffer).ok_or(Status::BadArgument)?;
    let found = match buffer {
        BufferType::VmConfiguration => Some(&mut state.vm_configuration),
        BufferType::PluginConfiguration => Some(&mut state.plugin_configuration),
        BufferType::HttpCallResponseBody => state.call_response.as_mut().map(|r| &mut r.body),
        BufferType::RequestBody => state.current_stream().map(|s| &mut s.request_body),
        BufferType::ResponseBody => state.current_stream().map(|s| &mut s.response_body),
    };
    found.ok_or_else(|| Status::NotFound.into())
}

/// Copies up to `max_size` bytes from `start`. An empty range answers `Ok`
/// and leaves the return slots untouched, as Envoy does (the SDK then sees
/// "no bytes"; answering `Empty` would make the Rust SDK panic).
fn get(
    caller: &mut Caller<'_, HostState>,
    buffer: i32,
    start: i32,
    max_size: i32,
    return_data: i32,
    return_size: i32,
) -> CallResult {
    let data = buffer_mut(caller.data_mut(), buffer)?;
    let start = (start as u32 as usize).min(data.len());
    let end = start
        .saturating_add(max_size as u32 as usize)
        .min(data.len());
    if start == end {
        return Ok(());
    }
    let bytes = data[start..end].to_vec();
    return_bytes(caller, &bytes, return_data, return_size)
}

/// Replaces bytes `start..start + size` (clamped to the buffer) with the data:
/// `start = 0, size >= len` replaces all, `start >= len` appends.
fn set(
    caller: &mut Caller<'_, HostState>,
    buffer: i32,
    start: i32,
    size: i32,
    data: i32,
    data_size: i32,
) -> CallResult {
    let bytes = read_bytes(caller, data, data_size)?;
    let target = buffer_mut(caller.data_mut(), buffer)?;
    let start = (start as u32 as usize).min(target.len());
    let end = start.saturating_add(size as u32 as usize).min(target.len());
    target.splice(start..end, bytes);
    Ok(())
}
