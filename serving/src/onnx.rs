//! ONNX Runtime: the process's one environment (ONNX Runtime allows one per process), and
//! building a session from a model's verified bytes and checking it has the names the card
//! gives.

use std::{path::Path, sync::OnceLock};

use ort::{
    environment::Environment,
    session::{builder::SessionBuilder, Session},
};

use crate::Error;

/// Environment variable naming the ONNX Runtime shared library (scripts/env.sh sets it).
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";

static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

/// The process's ONNX Runtime environment, named `dohguard`, loading the library from
/// `ORT_DYLIB_PATH` on first use.
pub fn environment() -> Result<&'static Environment, Error> {
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
        .map_err(|e| Error::Runtime(e.clone()))
}

/// An ONNX Runtime error as [`Error::Runtime`], prefixed with what was being done.
pub fn runtime_error(context: &str) -> impl Fn(ort::Error) -> Error + '_ {
    move |e| Error::Runtime(format!("{context}: {e}"))
}

/// A session builder in the process's environment with `intra_threads` intra-op threads.
pub fn session_builder(intra_threads: usize) -> Result<SessionBuilder, Error> {
    Session::builder(environment()?)
        .map_err(runtime_error("session builder"))?
        .with_intra_threads(intra_threads)
        .map_err(|e| Error::Runtime(format!("intra threads: {e}")))
}

/// The session of the model `bytes` (already checked against the card).
pub fn commit(builder: &mut SessionBuilder, bytes: &[u8]) -> Result<Session, Error> {
    builder
        .commit_from_memory(bytes)
        .map_err(runtime_error("loading the ONNX model"))
}

/// Whether the session has the input `input` and every output of `outputs` (the card's
/// names); the problem otherwise, for the part's contract error.
pub fn check_names(session: &Session, input: &str, outputs: &[&str]) -> Result<(), String> {
    if !session.inputs().iter().any(|i| i.name() == input) {
        return Err(format!("the ONNX model has no input named {input:?}"));
    }
    for wanted in outputs {
        if !session.outputs().iter().any(|o| o.name() == *wanted) {
            return Err(format!("the ONNX model has no output named {wanted:?}"));
        }
    }
    Ok(())
}
