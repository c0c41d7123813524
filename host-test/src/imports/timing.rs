//! Time and timers: `proxy_get_current_time_nanoseconds` reads the host's
//! controllable [`Clock`](crate::Clock); `proxy_set_tick_period_milliseconds`
//! records the period the test may drive with `Filter::tick`.

use std::time::Duration;

use wasmtime::{Caller, Linker};

use super::{status, write_u64};
use crate::state::HostState;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut caller: Caller<'_, HostState>, return_time: i32| {
            let now = caller.data().clock.now_nanos();
            status(write_u64(&mut caller, return_time, now))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut caller: Caller<'_, HostState>, period_ms: i32| {
            let period = Duration::from_millis(u64::from(period_ms as u32));
            caller.data_mut().tick_period = (!period.is_zero()).then_some(period);
            Ok(0)
        },
    )?;
    Ok(())
}
