//! The host functions a proxy-wasm guest imports, one module per ABI area,
//! each with its own `add_to_linker`. Helpers here move bytes in and out of
//! guest memory and turn results into the `i32` status codes of the ABI.

mod buffers;
mod headers;
mod http_calls;
mod logging;
mod metrics;
mod properties;
mod shared_data;
mod stream_control;
mod timing;
mod unknown;
mod wasi;

pub(crate) use unknown::stub_unknown_imports;

use wasmtime::{Caller, Extern, Linker, Memory};

use crate::abi::Status;
use crate::state::HostState;

/// Registers every host function of the ABI on `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    logging::add_to_linker(linker)?;
    timing::add_to_linker(linker)?;
    headers::add_to_linker(linker)?;
    buffers::add_to_linker(linker)?;
    properties::add_to_linker(linker)?;
    shared_data::add_to_linker(linker)?;
    http_calls::add_to_linker(linker)?;
    metrics::add_to_linker(linker)?;
    stream_control::add_to_linker(linker)?;
    wasi::add_to_linker(linker)?;
    Ok(())
}

/// Why a host call did not succeed: a status for the guest, or a trap.
pub(crate) enum CallError {
    Status(Status),
    Trap(wasmtime::Error),
}

impl From<Status> for CallError {
    fn from(status: Status) -> Self {
        Self::Status(status)
    }
}

impl From<wasmtime::Error> for CallError {
    fn from(error: wasmtime::Error) -> Self {
        Self::Trap(error)
    }
}

pub(crate) type CallResult<T = ()> = Result<T, CallError>;

/// Converts a host call's outcome into the status code the guest sees.
pub(crate) fn status(result: CallResult) -> wasmtime::Result<i32> {
    match result {
        Ok(()) => Ok(Status::Ok as i32),
        Err(CallError::Status(status)) => Ok(status as i32),
        Err(CallError::Trap(error)) => Err(error),
    }
}

fn memory(caller: &mut Caller<'_, HostState>) -> CallResult<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(memory)) => Ok(memory),
        _ => Err(CallError::Trap(wasmtime::format_err!(
            "guest exports no linear memory named `memory`"
        ))),
    }
}

/// Copies `len` bytes at `ptr` out of guest memory.
pub(crate) fn read_bytes(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    len: i32,
) -> CallResult<Vec<u8>> {
    let memory = memory(caller)?;
    let (start, len) = (ptr as u32 as usize, len as u32 as usize);
    memory
        .data(&*caller)
        .get(start..start.saturating_add(len))
        .map(<[u8]>::to_vec)
        .ok_or(CallError::Status(Status::InvalidMemoryAccess))
}

pub(crate) fn read_string(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    len: i32,
) -> CallResult<String> {
    String::from_utf8(read_bytes(caller, ptr, len)?).map_err(|_| Status::BadArgument.into())
}

/// Writes `bytes` at `ptr` (guest-provided storage, e.g. a return slot).
pub(crate) fn write_bytes(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    bytes: &[u8],
) -> CallResult {
    let memory = memory(caller)?;
    let start = ptr as u32 as usize;
    memory
        .data_mut(&mut *caller)
        .get_mut(start..start.saturating_add(bytes.len()))
        .ok_or(CallError::Status(Status::InvalidMemoryAccess))?
        .copy_from_slice(bytes);
    Ok(())
}

pub(crate) fn write_u32(caller: &mut Caller<'_, HostState>, ptr: i32, value: u32) -> CallResult {
    write_bytes(caller, ptr, &value.to_le_bytes())
}

pub(crate) fn write_u64(caller: &mut Caller<'_, HostState>, ptr: i32, value: u64) -> CallResult {
    write_bytes(caller, ptr, &value.to_le_bytes())
}

/// Hands `bytes` to the guest: allocates with its `proxy_on_memory_allocate`
/// (the guest frees it), copies, and stores pointer and length in the two
/// return slots, as the ABI prescribes.
pub(crate) fn return_bytes(
    caller: &mut Caller<'_, HostState>,
    bytes: &[u8],
    return_ptr: i32,
    return_len: i32,
) -> CallResult {
    let allocate = match caller.get_export("proxy_on_memory_allocate") {
        Some(Extern::Func(func)) => func.typed::<i32, i32>(&*caller)?,
        _ => {
            return Err(CallError::Trap(wasmtime::format_err!(
                "guest exports no `proxy_on_memory_allocate`"
            )))
        }
    };
    let len = i32::try_from(bytes.len()).map_err(|_| Status::InternalFailure)?;
    let ptr = allocate.call(&mut *caller, len)?;
    if ptr == 0 && len != 0 {
        return Err(Status::InternalFailure.into());
    }
    write_bytes(caller, ptr, bytes)?;
    write_u32(caller, return_ptr, ptr as u32)?;
    write_u32(caller, return_len, len as u32)
}
