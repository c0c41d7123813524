//! `proxy_get_shared_data` / `proxy_set_shared_data` over the VM's
//! [`SharedData`](crate::SharedData) handle, with CAS tokens.

use wasmtime::{Caller, Linker};

use super::{read_bytes, read_string, return_bytes, status, write_u32, CallResult};
use crate::abi::Status;
use crate::shared_data::SetError;
use crate::state::HostState;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut caller: Caller<'_, HostState>,
         key: i32,
         key_size: i32,
         return_data: i32,
         return_size: i32,
         return_cas: i32| {
            status(get(
                &mut caller,
                key,
                key_size,
                return_data,
                return_size,
                return_cas,
            ))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut caller: Caller<'_, HostState>,
         key: i32,
         key_size: i32,
         value: i32,
         value_size: i32,
         cas: i32| {
            status(set(
                &mut caller,
                key,
                key_size,
                value,
                value_size,
                cas as u32,
            ))
        },
    )?;
    Ok(())
}

fn get(
    caller: &mut Caller<'_, HostState>,
    key: i32,
    key_size: i32,
    return_data: i32,
    return_size: i32,
    return_cas: i32,
) -> CallResult {
    let key = read_string(caller, key, key_size)?;
    let (value, cas) = caller
        .data()
        .shared_data
        .get(&key)
        .ok_or(Status::NotFound)?;
    return_bytes(caller, &value, return_data, return_size)?;
    write_u32(caller, return_cas, cas)
}

fn set(
    caller: &mut Caller<'_, HostState>,
    key: i32,
    key_size: i32,
    value: i32,
    value_size: i32,
    cas: u32,
) -> CallResult {
    let key = read_string(caller, key, key_size)?;
    let value = read_bytes(caller, value, value_size)?;
    caller
        .data()
        .shared_data
        .set(&key, value, cas)
        .map_err(|SetError::CasMismatch| Status::CasMismatch.into())
}
