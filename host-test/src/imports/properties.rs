//! `proxy_get_property` / `proxy_set_property`. Paths arrive as NUL-separated
//! segments and are kept dot-joined (`source.address`). A stream's own
//! properties shadow the VM-wide ones; unknown paths are recorded (so tests
//! can see what a guest asked for) and answer `NotFound`, as in Envoy.

use wasmtime::{Caller, Linker};

use super::{read_bytes, return_bytes, status, CallResult};
use crate::abi::Status;
use crate::state::HostState;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut caller: Caller<'_, HostState>,
         path: i32,
         path_size: i32,
         return_data: i32,
         return_size: i32| {
            status(get(&mut caller, path, path_size, return_data, return_size))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_property",
        |mut caller: Caller<'_, HostState>,
         path: i32,
         path_size: i32,
         value: i32,
         value_size: i32| { status(set(&mut caller, path, path_size, value, value_size)) },
    )?;
    Ok(())
}

/// `source\0address` (with or without a trailing NUL) -> `source.address`.
pub(crate) fn dotted_path(raw: &[u8]) -> String {
    raw.split(|b| *b == 0)
        .filter(|segment| !segment.is_empty())
        .map(|segment| String::from_utf8_lossy(segment).into_owned())
        .collect::<Vec<_>>()
        .join(".")
}

fn get(
    caller: &mut Caller<'_, HostState>,
    path: i32,
    path_size: i32,
    return_data: i32,
    return_size: i32,
) -> CallResult {
    let path = dotted_path(&read_bytes(caller, path, path_size)?);
    let state = caller.data_mut();
    let value = state
        .streams
        .get(&state.current_context)
        .and_then(|s| s.properties.get(&path))
        .or_else(|| state.properties.get(&path))
        .cloned();
    match value {
        Some(value) => return_bytes(caller, &value, return_data, return_size),
        None => {
            state.unknown_properties.push(path);
            Err(Status::NotFound.into())
        }
    }
}

fn set(
    caller: &mut Caller<'_, HostState>,
    path: i32,
    path_size: i32,
    value: i32,
    value_size: i32,
) -> CallResult {
    let path = dotted_path(&read_bytes(caller, path, path_size)?);
    let value = read_bytes(caller, value, value_size)?;
    let state = caller.data_mut();
    let context = state.current_context;
    match state.streams.get_mut(&context) {
        Some(stream) => stream.properties.insert(path, value),
        None => state.properties.insert(path, value),
    };
    Ok(())
}
