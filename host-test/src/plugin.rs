//! A compiled proxy-wasm module and the linker that hosts it. Compiling is
//! the slow part, so one `Plugin` serves any number of VMs (`Filter`s).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime::{Config, Engine, Linker, Module, OptLevel, Store};

use crate::clock::Clock;
use crate::error::HostError;
use crate::filter::FilterBuilder;
use crate::imports;
use crate::shared_data::SharedData;
use crate::state::HostState;

#[derive(Clone)]
pub struct Plugin {
    engine: Engine,
    module: Module,
    linker: Arc<Linker<HostState>>,
    path: PathBuf,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// Reads and compiles the module at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, HostError> {
        let path = path.as_ref().to_path_buf();
        let bytes = std::fs::read(&path).map_err(|source| HostError::ReadWasm {
            path: path.clone(),
            source,
        })?;
        Self::from_bytes(&bytes, path)
    }

    /// Compiles module bytes; `label` names them in errors.
    pub fn from_bytes(bytes: &[u8], label: impl Into<PathBuf>) -> Result<Self, HostError> {
        let path = label.into();
        let mut config = Config::new();
        config.cranelift_opt_level(OptLevel::Speed);
        let engine = Engine::new(&config).map_err(|e| HostError::Compile {
            path: path.clone(),
            message: format!("{e:?}"),
        })?;
        let module = Module::new(&engine, bytes).map_err(|e| HostError::Compile {
            path: path.clone(),
            message: format!("{e:?}"),
        })?;
        let mut linker = Linker::new(&engine);
        let instantiate_error = |e: wasmtime::Error| HostError::Instantiate {
            message: format!("{e:?}"),
        };
        imports::add_to_linker(&mut linker).map_err(instantiate_error)?;
        let mut scratch = Store::new(&engine, HostState::new(Clock::new(), SharedData::new()));
        imports::stub_unknown_imports(&mut linker, &mut scratch, &module)
            .map_err(instantiate_error)?;
        Ok(Self {
            engine,
            module,
            linker: Arc::new(linker),
            path,
        })
    }

    /// Starts describing a VM of this plugin.
    pub fn vm(&self) -> FilterBuilder<'_> {
        FilterBuilder::new(self)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn module(&self) -> &Module {
        &self.module
    }

    pub(crate) fn linker(&self) -> &Linker<HostState> {
        &self.linker
    }
}
