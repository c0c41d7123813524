//! Raw DoH requests through the real `curl` (HTTP/2 with prior knowledge on the cleartext
//! listener, HTTP/2 over TLS on the other), for what kdig cannot send: wrong methods, wrong
//! content types, broken base64, oversized bodies; and to read response headers.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::tools::{self, Tool};
use crate::LaunchError;

/// Which listener and how to reach it.
#[derive(Debug, Clone)]
pub enum Transport {
    /// `http://127.0.0.1:PORT`, HTTP/2 prior knowledge.
    Cleartext { port: u16 },
    /// `http://127.0.0.1:PORT`, HTTP/1.1. For early answers to large uploads (413): Envoy sends
    /// the whole response and then resets the HTTP/2 stream with NO_ERROR (RFC 9113 8.1
    /// allows it), and curl 7.88 then drops the response it already has.
    CleartextHttp1 { port: u16 },
    /// `https://localhost:PORT`, HTTP/2 negotiated by ALPN, trusting `ca`.
    Tls { port: u16, ca: PathBuf },
}

#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    /// Lower-cased header names with their values.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `method` to `path_and_query` with `headers` and an optional body.
pub fn request(
    transport: &Transport,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<HttpReply, LaunchError> {
    request_from(transport, None, method, path_and_query, headers, body)
}

/// Like [`request`], from the local address `source` (`curl --interface`), e.g. another
/// loopback address to look like a second client.
pub fn request_from(
    transport: &Transport,
    source: Option<std::net::IpAddr>,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<HttpReply, LaunchError> {
    let dir = tempfile::tempdir().map_err(LaunchError::io("creating a temp dir for curl"))?;
    let body_out = dir.path().join("body");
    let headers_out = dir.path().join("headers");
    let mut command = Command::new(tools::find(Tool::Curl)?);
    command
        .args(["-sS", "--max-time", "10", "-X", method])
        .arg("-o")
        .arg(&body_out)
        .arg("-D")
        .arg(&headers_out)
        .args(["-w", "%{http_code}"]);
    let url = match transport {
        Transport::Cleartext { port } => {
            command.arg("--http2-prior-knowledge");
            format!("http://127.0.0.1:{port}{path_and_query}")
        }
        Transport::CleartextHttp1 { port } => {
            command.arg("--http1.1");
            format!("http://127.0.0.1:{port}{path_and_query}")
        }
        Transport::Tls { port, ca } => {
            command
                .arg("--http2")
                .arg("--cacert")
                .arg(ca)
                .arg("--resolve")
                .arg(format!("localhost:{port}:127.0.0.1"));
            format!("https://localhost:{port}{path_and_query}")
        }
    };
    if let Some(source) = source {
        command.arg("--interface").arg(source.to_string());
    }
    for (name, value) in headers {
        command.arg("-H").arg(format!("{name}: {value}"));
    }
    if body.is_some() {
        command.args(["--data-binary", "@-"]);
    }
    command
        .arg(&url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(LaunchError::io("running curl"))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    if let Some(body) = body {
        stdin
            .write_all(body)
            .map_err(LaunchError::io("writing the request body to curl"))?;
    }
    drop(stdin);
    let output = child
        .wait_with_output()
        .map_err(LaunchError::io("waiting for curl"))?;
    let code = String::from_utf8_lossy(&output.stdout);
    let status = code.trim().parse().unwrap_or(0);
    if !output.status.success() || status == 0 {
        return Err(LaunchError::ToolFailed {
            tool: "curl",
            status: output.status.to_string(),
            output: format!("{url}: {}", String::from_utf8_lossy(&output.stderr)),
        });
    }
    let raw_headers = std::fs::read_to_string(&headers_out).unwrap_or_default();
    let headers = raw_headers
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = std::fs::read(&body_out).unwrap_or_default();
    Ok(HttpReply {
        status,
        headers,
        body,
    })
}
