//! `proxy_log` and `proxy_get_log_level`: guest log lines are captured in
//! order for tests to assert on.

use wasmtime::{Caller, Linker};

use super::{read_bytes, status, write_u32, CallResult};
use crate::abi::{LogLevel, Status};
use crate::state::{HostState, LogEntry};

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |mut caller: Caller<'_, HostState>, level: i32, ptr: i32, len: i32| {
            status(log(&mut caller, level, ptr, len))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut caller: Caller<'_, HostState>, return_level: i32| {
            let level = caller.data().log_level.as_raw() as u32;
            status(write_u32(&mut caller, return_level, level))
        },
    )?;
    Ok(())
}

fn log(caller: &mut Caller<'_, HostState>, level: i32, ptr: i32, len: i32) -> CallResult {
    let level = LogLevel::from_raw(level).ok_or(Status::BadArgument)?;
    let bytes = read_bytes(caller, ptr, len)?;
    let message = String::from_utf8_lossy(&bytes).into_owned();
    let state = caller.data_mut();
    if level >= state.log_level {
        state.logs.push(LogEntry { level, message });
    }
    Ok(())
}
