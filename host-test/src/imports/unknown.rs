//! Stubs for imports the host does not implement (gRPC, shared queues,
//! foreign functions, filesystem WASI calls): a module that imports them
//! still instantiates, and a call answers `Unimplemented` (proxy-wasm) or
//! `ENOSYS` (WASI) instead of trapping. Each call is logged as a warning so
//! a test sees that the guest reached an unhosted function.

use wasmtime::{Caller, ExternType, Linker, Module, Store, Val, ValType};

use crate::abi::{LogLevel, Status};
use crate::state::{HostState, LogEntry};

const ERRNO_NOSYS: i32 = 52;

/// Defines a stub for every function import of `module` that `linker` lacks.
pub(crate) fn stub_unknown_imports(
    linker: &mut Linker<HostState>,
    store: &mut Store<HostState>,
    module: &Module,
) -> wasmtime::Result<()> {
    let missing: Vec<_> = module
        .imports()
        .filter(|import| linker.get_by_import(&mut *store, import).is_none())
        .filter_map(|import| match import.ty() {
            ExternType::Func(ty) => {
                Some((import.module().to_owned(), import.name().to_owned(), ty))
            }
            _ => None,
        })
        .collect();
    for (module_name, name, ty) in missing {
        let answer = if module_name == "wasi_snapshot_preview1" {
            ERRNO_NOSYS
        } else {
            Status::Unimplemented as i32
        };
        let label = format!("{module_name}.{name}");
        linker.func_new(
            &module_name,
            &name,
            ty.clone(),
            move |mut caller: Caller<'_, HostState>, _params: &[Val], results: &mut [Val]| {
                caller.data_mut().logs.push(LogEntry {
                    level: LogLevel::Warn,
                    message: format!("host: unimplemented import {label} called"),
                });
                for (slot, ty) in results.iter_mut().zip(ty.results()) {
                    *slot = match ty {
                        ValType::I32 => Val::I32(answer),
                        ValType::I64 => Val::I64(i64::from(answer)),
                        other => Val::default_for_ty(&other).unwrap_or(Val::I32(0)),
                    };
                }
                Ok(())
            },
        )?;
    }
    Ok(())
}
