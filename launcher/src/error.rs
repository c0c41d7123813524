//! The launcher's error type: each variant says which process or tool failed and carries
//! enough of its log to diagnose it without rerunning.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    #[error("{tool} not found ({looked}): run scripts/setup.sh (and `source scripts/env.sh`)")]
    MissingTool { tool: &'static str, looked: String },

    #[error("{what} not found at {path}: {hint}")]
    MissingFile {
        what: &'static str,
        path: PathBuf,
        hint: &'static str,
    },

    #[error("{what} did not become ready within {secs} s; last lines of {log}:\n{tail}")]
    NotReady {
        what: String,
        secs: u64,
        log: PathBuf,
        tail: String,
    },

    #[error("{what} exited early ({status}); last lines of {log}:\n{tail}")]
    Exited {
        what: String,
        status: String,
        log: PathBuf,
        tail: String,
    },

    #[error("{tool} failed ({status}): {output}")]
    ToolFailed {
        tool: &'static str,
        status: String,
        output: String,
    },

    #[error("rendering template {template}: {source}")]
    Template {
        template: &'static str,
        #[source]
        source: minijinja::Error,
    },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("HTTP request to {url} failed: {message}")]
    Http { url: String, message: String },

    #[error(transparent)]
    Wait(#[from] crate::wait::WaitTimeout),
}

impl LaunchError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| LaunchError::Io { context, source }
    }

    /// True when the error means the machine lacks a tool or a build output (set-up problem),
    /// rather than a process misbehaving.
    pub fn is_setup_problem(&self) -> bool {
        matches!(
            self,
            LaunchError::MissingTool { .. } | LaunchError::MissingFile { .. }
        )
    }
}
