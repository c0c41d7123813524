//! Metrics: define (the same name twice gives the same id, as in Envoy),
//! increment, record and get. Counters only go up; histograms keep samples.

use wasmtime::{Caller, Linker};

use super::{read_string, status, write_u32, write_u64, CallResult};
use crate::abi::{MetricType, Status};
use crate::state::{HostState, Metric};

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut caller: Caller<'_, HostState>,
         kind: i32,
         name: i32,
         name_size: i32,
         return_id: i32| { status(define(&mut caller, kind, name, name_size, return_id)) },
    )?;
    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |mut caller: Caller<'_, HostState>, id: i32, offset: i64| {
            status(increment(caller.data_mut(), id as u32, offset))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |mut caller: Caller<'_, HostState>, id: i32, value: i64| {
            status(record(caller.data_mut(), id as u32, value as u64))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_metric",
        |mut caller: Caller<'_, HostState>, id: i32, return_value: i32| {
            let value = get(caller.data_mut(), id as u32);
            status(value.and_then(|v| write_u64(&mut caller, return_value, v)))
        },
    )?;
    Ok(())
}

fn define(
    caller: &mut Caller<'_, HostState>,
    kind: i32,
    name: i32,
    name_size: i32,
    return_id: i32,
) -> CallResult {
    let kind = MetricType::from_raw(kind).ok_or(Status::BadArgument)?;
    let name = read_string(caller, name, name_size)?;
    let metrics = &mut caller.data_mut().metrics;
    let index = match metrics.iter().position(|m| m.name == name) {
        Some(index) if metrics[index].kind == kind => index,
        Some(_) => return Err(Status::BadArgument.into()),
        None => {
            metrics.push(Metric {
                kind,
                name,
                value: 0,
                samples: Vec::new(),
            });
            metrics.len() - 1
        }
    };
    write_u32(caller, return_id, index as u32)
}

fn metric_mut(state: &mut HostState, id: u32) -> CallResult<&mut Metric> {
    state
        .metrics
        .get_mut(id as usize)
        .ok_or_else(|| Status::NotFound.into())
}

fn increment(state: &mut HostState, id: u32, offset: i64) -> CallResult {
    let metric = metric_mut(state, id)?;
    match metric.kind {
        MetricType::Counter if offset < 0 => Err(Status::BadArgument.into()),
        MetricType::Counter | MetricType::Gauge => {
            metric.value = metric.value.saturating_add(offset);
            Ok(())
        }
        MetricType::Histogram => Err(Status::BadArgument.into()),
    }
}

fn record(state: &mut HostState, id: u32, value: u64) -> CallResult {
    let metric = metric_mut(state, id)?;
    match metric.kind {
        MetricType::Counter => metric.value = metric.value.saturating_add(value as i64),
        MetricType::Gauge => metric.value = value as i64,
        MetricType::Histogram => metric.samples.push(value),
    }
    Ok(())
}

fn get(state: &mut HostState, id: u32) -> CallResult<u64> {
    let metric = metric_mut(state, id)?;
    match metric.kind {
        MetricType::Histogram => Err(Status::BadArgument.into()),
        _ => Ok(metric.value as u64),
    }
}
