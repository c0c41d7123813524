//! The WASI preview1 functions a Rust `wasm32-wasip1` guest imports.
//!
//! Only what std needs without a filesystem: stdout/stderr (captured, so a
//! guest panic message reaches the test's error), an empty environment and
//! argument list, the host clock, deterministic random bytes (std's hash map
//! seeds), and `proc_exit` as a trap. Other WASI calls get `ENOSYS` stubs from
//! `unknown`.

use wasmtime::{Caller, Linker};

use super::{read_bytes, write_bytes, write_u32, write_u64, CallError, CallResult};
use crate::state::HostState;

const MODULE: &str = "wasi_snapshot_preview1";
const ERRNO_SUCCESS: i32 = 0;
const ERRNO_BADF: i32 = 8;
const ERRNO_FAULT: i32 = 21;

/// WASI calls answer an errno; a bad pointer is `EFAULT`.
fn errno(result: CallResult) -> wasmtime::Result<i32> {
    match result {
        Ok(()) => Ok(ERRNO_SUCCESS),
        Err(CallError::Status(_)) => Ok(ERRNO_FAULT),
        Err(CallError::Trap(error)) => Err(error),
    }
}

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        "fd_write",
        |mut caller: Caller<'_, HostState>, fd: i32, iovs: i32, iovs_len: i32, nwritten: i32| {
            if fd != 1 && fd != 2 {
                return Ok(ERRNO_BADF);
            }
            errno(fd_write(&mut caller, iovs, iovs_len, nwritten))
        },
    )?;
    for (sizes, values) in [
        ("environ_sizes_get", "environ_get"),
        ("args_sizes_get", "args_get"),
    ] {
        linker.func_wrap(
            MODULE,
            sizes,
            |mut caller: Caller<'_, HostState>, count: i32, size: i32| {
                errno(
                    write_u32(&mut caller, count, 0).and_then(|()| write_u32(&mut caller, size, 0)),
                )
            },
        )?;
        linker.func_wrap(
            MODULE,
            values,
            |_: Caller<'_, HostState>, _: i32, _: i32| Ok(ERRNO_SUCCESS),
        )?;
    }
    linker.func_wrap(
        MODULE,
        "clock_time_get",
        |mut caller: Caller<'_, HostState>, _clock: i32, _precision: i64, time: i32| {
            let now = caller.data().clock.now_nanos();
            errno(write_u64(&mut caller, time, now))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "random_get",
        |mut caller: Caller<'_, HostState>, buf: i32, len: i32| {
            let bytes: Vec<u8> = (0..len as u32 as usize)
                .map(|_| caller.data_mut().next_random() as u8)
                .collect();
            errno(write_bytes(&mut caller, buf, &bytes))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "proc_exit",
        |caller: Caller<'_, HostState>, code: i32| -> wasmtime::Result<()> {
            let output = String::from_utf8_lossy(&caller.data().wasi_output).into_owned();
            Err(wasmtime::format_err!(
                "guest called proc_exit({code}); its output: {output}"
            ))
        },
    )?;
    Ok(())
}

/// Gathers the iovec list (pairs of u32 pointer, u32 length) into the capture.
fn fd_write(
    caller: &mut Caller<'_, HostState>,
    iovs: i32,
    iovs_len: i32,
    nwritten: i32,
) -> CallResult {
    let table = read_bytes(caller, iovs, iovs_len.saturating_mul(8))?;
    let mut written = 0u32;
    for iov in table.chunks_exact(8) {
        let ptr = u32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
        let len = u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
        let bytes = read_bytes(caller, ptr as i32, len as i32)?;
        caller.data_mut().wasi_output.extend_from_slice(&bytes);
        written = written.saturating_add(len);
    }
    write_u32(caller, nwritten, written)
}
