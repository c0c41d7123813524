//! ONNX Runtime: the process-wide environment, building a verified session for a model
//! card (sha256 checked, CUDA or CPU chosen), and running one batch through it.

use std::{path::Path, sync::OnceLock};

use ort::{
    environment::Environment,
    ep::{self, ExecutionProvider},
    session::Session,
    value::TensorRef,
};
use sha2::{Digest, Sha256};

use super::{card::ModelCard, encode::Rows, ModelError};
use crate::config::Device;

/// Environment variable naming the ONNX Runtime shared library (scripts/env.sh sets it).
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";

static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

/// The process's ONNX Runtime environment (ONNX Runtime allows one), loading the library
/// from `ORT_DYLIB_PATH` on first use. The anomaly detector uses this one too.
pub fn environment() -> Result<&'static Environment, ModelError> {
    ENVIRONMENT
        .get_or_init(|| {
            let path = std::env::var_os(ORT_DYLIB_ENV).ok_or_else(|| {
                format!("{ORT_DYLIB_ENV} is not set: point it at libonnxruntime.so (source scripts/env.sh)")
            })?;
            let builder = ort::init_from(&path)
                .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", Path::new(&path).display()))?;
            builder
                .with_name("dohguard")
                .build()
                .map_err(|e| format!("cannot create the ONNX Runtime environment: {e}"))
        })
        .as_ref()
        .map_err(|e| ModelError::Runtime(e.clone()))
}

/// Whether the loaded ONNX Runtime offers the CUDA execution provider (a GPU build such as
/// PyPI `onnxruntime-gpu`); the plain CPU build does not.
pub fn cuda_available() -> Result<bool, ModelError> {
    environment()?;
    ep::CUDA::is_available().map_err(ort_err("asking for the CUDA provider"))
}

/// Where the session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionDevice {
    Cpu,
    Cuda,
}

impl ExecutionDevice {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
        }
    }
}

/// A session plus what is needed to feed it.
pub struct LoadedSession {
    pub session: Session,
    pub device: ExecutionDevice,
    /// True when CUDA was asked for (or detected) but the session runs on CPU.
    pub fell_back_to_cpu: bool,
    input_name: String,
    output_name: String,
    max_length: usize,
}

impl std::fmt::Debug for LoadedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedSession")
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

fn ort_err(context: &str) -> impl Fn(ort::Error) -> ModelError + '_ {
    move |e| ModelError::Runtime(format!("{context}: {e}"))
}

/// Reads the ONNX file named by the card, checks its sha256, and builds a session.
pub fn load_session(
    card: &ModelCard,
    card_path: &Path,
    device: Device,
    intra_threads: usize,
) -> Result<LoadedSession, ModelError> {
    let onnx_path = card.onnx_path(card_path);
    let bytes = std::fs::read(&onnx_path).map_err(|source| ModelError::Io {
        path: onnx_path.clone(),
        source,
    })?;
    let actual = hex::encode(Sha256::digest(&bytes));
    if actual != card.sha256 {
        return Err(ModelError::Checksum {
            path: onnx_path,
            expected: card.sha256.clone(),
            actual,
        });
    }
    let env = environment()?;
    let mut builder = Session::builder(env)
        .map_err(ort_err("session builder"))?
        .with_intra_threads(intra_threads)
        .map_err(|e| ModelError::Runtime(format!("intra threads: {e}")))?;

    let want_cuda = match device {
        Device::Cpu => false,
        Device::Cuda => true,
        Device::Auto => ep::CUDA::is_available().unwrap_or(false),
    };
    let mut used = ExecutionDevice::Cpu;
    let mut fell_back = false;
    if want_cuda {
        match ep::CUDA::default().register(&mut builder) {
            Ok(()) => used = ExecutionDevice::Cuda,
            Err(e) => {
                fell_back = true;
                tracing::error!(
                    error = %e,
                    "CUDA EXECUTION PROVIDER UNAVAILABLE: inference falls back to CPU"
                );
            }
        }
    }
    let session = builder
        .commit_from_memory(&bytes)
        .map_err(ort_err("loading the ONNX model"))?;

    let input_name = card.input.name.clone();
    let output_name = card.score_output().name.clone();
    if !session.inputs().iter().any(|i| i.name() == input_name) {
        return Err(ModelError::Contract(format!(
            "the ONNX model has no input named {input_name:?}"
        )));
    }
    if !session.outputs().iter().any(|o| o.name() == output_name) {
        return Err(ModelError::Contract(format!(
            "the ONNX model has no output named {output_name:?}"
        )));
    }
    Ok(LoadedSession {
        session,
        device: used,
        fell_back_to_cpu: fell_back,
        input_name,
        output_name,
        max_length: card.input.row_width(),
    })
}

impl LoadedSession {
    /// Scores `ids.len() / max_length` rows of character ids; returns one score per row.
    pub fn run(&mut self, ids: &[i64]) -> Result<Vec<f32>, ModelError> {
        let rows = ids.len() / self.max_length;
        debug_assert_eq!(rows * self.max_length, ids.len());
        let tensor = TensorRef::from_array_view(([rows, self.max_length], ids))
            .map_err(ort_err("input tensor"))?;
        let outputs = self
            .session
            .run(ort::inputs![self.input_name.as_str() => tensor])
            .map_err(ort_err("inference"))?;
        scores(&outputs, &self.output_name, rows)
    }

    /// Scores rows of either kind (ids or features); one score per row.
    pub fn run_rows(&mut self, rows: &Rows) -> Result<Vec<f32>, ModelError> {
        match rows {
            Rows::Ids(ids) => self.run(ids),
            Rows::Features(values) => {
                let n = values.len() / self.max_length;
                if n * self.max_length != values.len() {
                    return Err(ModelError::Contract(format!(
                        "{} feature values are not whole rows of {}",
                        values.len(),
                        self.max_length
                    )));
                }
                let tensor = TensorRef::from_array_view(([n, self.max_length], values.as_slice()))
                    .map_err(ort_err("input tensor"))?;
                let outputs = self
                    .session
                    .run(ort::inputs![self.input_name.as_str() => tensor])
                    .map_err(ort_err("inference"))?;
                scores(&outputs, &self.output_name, n)
            }
        }
    }
}

/// The score output of a run over `rows` rows, its shape checked.
fn scores(
    outputs: &ort::session::SessionOutputs<'_>,
    output_name: &str,
    rows: usize,
) -> Result<Vec<f32>, ModelError> {
    let value = outputs
        .get(output_name)
        .ok_or_else(|| ModelError::Contract(format!("no output {output_name:?}")))?;
    let (shape, data) = value
        .try_extract_tensor::<f32>()
        .map_err(ort_err("reading the score output"))?;
    let dims: Vec<i64> = shape.iter().copied().collect();
    let ok_shape = matches!(dims.as_slice(), [b] if *b as usize == rows)
        || matches!(dims.as_slice(), [b, 1] if *b as usize == rows);
    if !ok_shape {
        return Err(ModelError::Contract(format!(
            "score output has shape {dims:?}, expected [{rows}] or [{rows}, 1]"
        )));
    }
    Ok(data.to_vec())
}
