//! The Elasticsearch-API store for tests and the local gateway: `osmem-server` (in-memory,
//! speaks the Elasticsearch REST API; see toolchain notes), on an ephemeral or fixed port, told
//! to exit if this process dies. Also a search helper for the verdict documents.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::http;
use crate::ports::free_port;
use crate::process::{http_ok, ManagedProcess};
use crate::tools::{self, Tool};
use crate::LaunchError;

/// The index pattern the scorer's verdict documents land in.
pub const VERDICT_INDEX_PATTERN: &str = "logs-dohguard.verdicts-*";

#[derive(Debug)]
pub struct Osmem {
    process: ManagedProcess,
    pub port: u16,
}

impl Osmem {
    pub fn start(dir: &Path, port: Option<u16>) -> Result<Self, LaunchError> {
        let port = port.map_or_else(free_port, Ok)?;
        let mut command = Command::new(tools::find(Tool::Osmem)?);
        command
            .arg("-addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg("-no-stdin-watch")
            .arg("-parent-pid")
            .arg(std::process::id().to_string());
        let mut process = ManagedProcess::spawn("osmem-server", command, &dir.join("osmem.log"))?;
        let url = format!("http://127.0.0.1:{port}/");
        process.wait_ready(Duration::from_secs(15), || http_ok(&url))?;
        Ok(Self { process, port })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn process(&mut self) -> &mut ManagedProcess {
        &mut self.process
    }

    /// Verdict documents whose `dns.question.name` is `name` (empty when none or the index does
    /// not exist yet).
    pub fn verdicts_for(&self, name: &str) -> Result<Vec<serde_json::Value>, LaunchError> {
        self.search(serde_json::json!({"term": {"dns.question.name": name}}))
    }

    /// Verdict documents matching an Elasticsearch `query` (at most 1,000; empty when the
    /// index does not exist yet).
    pub fn search(&self, query: serde_json::Value) -> Result<Vec<serde_json::Value>, LaunchError> {
        let url = format!("{}/{VERDICT_INDEX_PATTERN}/_search", self.url());
        let query = serde_json::json!({ "size": 1000, "query": query });
        let (status, reply) = http::post_json(&url, &query)?;
        if status == 404 {
            return Ok(Vec::new());
        }
        if status != 200 {
            return Err(LaunchError::Http {
                url,
                message: format!("status {status}: {reply}"),
            });
        }
        Ok(reply["hits"]["hits"]
            .as_array()
            .map(|hits| hits.iter().map(|h| h["_source"].clone()).collect())
            .unwrap_or_default())
    }
}
