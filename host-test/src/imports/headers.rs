//! Header maps of the effective stream and of the HTTP-call reply being
//! delivered: get/set all pairs, get/replace/add/remove one value.

use wasmtime::{Caller, Linker};

use super::{read_bytes, read_string, return_bytes, status, CallResult};
use crate::abi::{MapType, Status};
use crate::header_map::HeaderMap;
use crate::state::HostState;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut caller: Caller<'_, HostState>, map: i32, return_data: i32, return_size: i32| {
            status(get_pairs(&mut caller, map, return_data, return_size))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut caller: Caller<'_, HostState>, map: i32, data: i32, size: i32| {
            status(set_pairs(&mut caller, map, data, size))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut caller: Caller<'_, HostState>,
         map: i32,
         key: i32,
         key_size: i32,
         return_data: i32,
         return_size: i32| {
            status(get_value(
                &mut caller,
                map,
                key,
                key_size,
                return_data,
                return_size,
            ))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        |mut caller: Caller<'_, HostState>,
         map: i32,
         key: i32,
         key_size: i32,
         value: i32,
         value_size: i32| {
            status(edit(
                &mut caller,
                map,
                key,
                key_size,
                Some((value, value_size)),
                HeaderMap::replace,
            ))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_add_header_map_value",
        |mut caller: Caller<'_, HostState>,
         map: i32,
         key: i32,
         key_size: i32,
         value: i32,
         value_size: i32| {
            status(edit(
                &mut caller,
                map,
                key,
                key_size,
                Some((value, value_size)),
                HeaderMap::add,
            ))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut caller: Caller<'_, HostState>, map: i32, key: i32, key_size: i32| {
            status(edit(&mut caller, map, key, key_size, None, |m, k, _| {
                m.remove(k)
            }))
        },
    )?;
    Ok(())
}

/// The map `map` names, for the effective context.
fn map_mut(state: &mut HostState, map: i32) -> CallResult<&mut HeaderMap> {
    let map = MapType::from_raw(map).ok_or(Status::BadArgument)?;
    let found = match map {
        MapType::HttpCallResponseHeaders => state.call_response.as_mut().map(|r| &mut r.headers),
        MapType::HttpCallResponseTrailers => state.call_response.as_mut().map(|r| &mut r.trailers),
        stream_map => state.current_stream().map(|s| match stream_map {
            MapType::RequestHeaders => &mut s.request_headers,
            MapType::RequestTrailers => &mut s.request_trailers,
            MapType::ResponseHeaders => &mut s.response_headers,
            _ => &mut s.response_trailers,
        }),
    };
    found.ok_or_else(|| Status::NotFound.into())
}

fn get_pairs(
    caller: &mut Caller<'_, HostState>,
    map: i32,
    return_data: i32,
    return_size: i32,
) -> CallResult {
    let bytes = map_mut(caller.data_mut(), map)?.encode();
    return_bytes(caller, &bytes, return_data, return_size)
}

fn set_pairs(caller: &mut Caller<'_, HostState>, map: i32, data: i32, size: i32) -> CallResult {
    let bytes = read_bytes(caller, data, size)?;
    let decoded = HeaderMap::decode(&bytes).ok_or(Status::SerializationFailure)?;
    *map_mut(caller.data_mut(), map)? = decoded;
    Ok(())
}

fn get_value(
    caller: &mut Caller<'_, HostState>,
    map: i32,
    key: i32,
    key_size: i32,
    return_data: i32,
    return_size: i32,
) -> CallResult {
    let key = read_string(caller, key, key_size)?;
    let value = map_mut(caller.data_mut(), map)?
        .get(&key)
        .ok_or(Status::NotFound)?;
    return_bytes(caller, value.as_bytes(), return_data, return_size)
}

fn edit(
    caller: &mut Caller<'_, HostState>,
    map: i32,
    key: i32,
    key_size: i32,
    value: Option<(i32, i32)>,
    apply: fn(&mut HeaderMap, &str, &str),
) -> CallResult {
    let key = read_string(caller, key, key_size)?;
    let value = match value {
        Some((ptr, len)) => read_string(caller, ptr, len)?,
        None => String::new(),
    };
    apply(map_mut(caller.data_mut(), map)?, &key, &value);
    Ok(())
}
