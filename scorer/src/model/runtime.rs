//! ONNX Runtime: building a verified session for a model card (sha256 checked, CUDA or CPU
//! chosen; the environment and the checks are `dohguard_serving`'s, shared with the anomaly
//! detector), and running one batch through it.

use std::path::Path;

use dohguard_serving::{card_file, onnx};
use ort::{
    environment::Environment,
    ep::{self, ExecutionProvider},
    session::Session,
    value::TensorRef,
};

use super::{card::ModelCard, encode::Rows, ModelError};
use crate::config::Device;

/// Environment variable naming the ONNX Runtime shared library (scripts/env.sh sets it).
pub use onnx::ORT_DYLIB_ENV;

/// The process's ONNX Runtime environment (ONNX Runtime allows one), loading the library
/// from `ORT_DYLIB_PATH` on first use; the one the anomaly detector uses too
/// ([`dohguard_serving::onnx::environment`]).
pub fn environment() -> Result<&'static Environment, ModelError> {
    Ok(onnx::environment()?)
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
    let bytes = card_file::read_verified(card.onnx_path(card_path), &card.sha256)?;
    let mut builder = onnx::session_builder(intra_threads)?;

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
    let session = onnx::commit(&mut builder, &bytes)?;

    let input_name = card.input.name.clone();
    let output_name = card.score_output().name.clone();
    onnx::check_names(&session, &input_name, &[output_name.as_str()])
        .map_err(ModelError::Contract)?;
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
