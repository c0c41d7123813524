//! Drives `h2load` (nghttp2) against a DoH endpoint over TLS + HTTP/2 and reads back
//! throughput from its summary and latency percentiles from its per-request log (h2load's
//! summary only has min/mean/max).

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};

use dohguard_launcher::tools::{self, Tool};

/// Load shape: `connections` TLS connections, each with `streams` concurrent HTTP/2 streams.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub connections: u32,
    pub streams: u32,
    pub threads: u32,
    pub warm_up_s: u32,
    pub duration_s: u32,
}

/// How the DNS query travels (RFC 8484).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Post,
    Get,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Get => "GET",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Figures {
    pub requests_per_s: f64,
    pub succeeded: u64,
    pub failed: u64,
    pub non_2xx: u64,
    pub p50_us: u64,
    pub p99_us: u64,
}

/// Runs one measurement against `https://127.0.0.1:port/dns-query` sending `query`.
pub fn run(
    port: u16,
    method: Method,
    query: &[u8],
    load: Load,
    work: &Path,
) -> anyhow::Result<Figures> {
    let body = work.join("query.bin");
    let log = work.join("h2load-requests.tsv");
    std::fs::write(&body, query)?;
    let _ = std::fs::remove_file(&log);
    let mut command = Command::new(tools::find(Tool::H2load)?);
    command
        .arg("-c")
        .arg(load.connections.to_string())
        .arg("-m")
        .arg(load.streams.to_string())
        .arg("-t")
        .arg(load.threads.to_string())
        .arg(format!("--warm-up-time={}s", load.warm_up_s))
        .arg("-D")
        .arg(format!("{}s", load.duration_s))
        .arg(format!("--log-file={}", log.display()))
        .args(["-H", "accept: application/dns-message"]);
    let url = match method {
        Method::Post => {
            command
                .arg("-d")
                .arg(&body)
                .args(["-H", "content-type: application/dns-message"]);
            format!("https://127.0.0.1:{port}/dns-query")
        }
        Method::Get => format!(
            "https://127.0.0.1:{port}/dns-query?dns={}",
            dohguard_launcher::dns::get_param(query)
        ),
    };
    let output = command.arg(&url).output().context("running h2load")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "h2load failed ({}): {text}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let mut figures =
        parse_summary(&text).with_context(|| format!("unexpected h2load output:\n{text}"))?;
    let mut latencies = read_latencies(&log)?;
    if latencies.is_empty() {
        bail!("h2load logged no requests:\n{text}");
    }
    latencies.sort_unstable();
    figures.p50_us = percentile(&latencies, 0.50);
    figures.p99_us = percentile(&latencies, 0.99);
    Ok(figures)
}

fn parse_summary(text: &str) -> Option<Figures> {
    let mut figures = Figures {
        requests_per_s: 0.0,
        succeeded: 0,
        failed: 0,
        non_2xx: 0,
        p50_us: 0,
        p99_us: 0,
    };
    let mut seen = 0;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if line.starts_with("finished in") {
            // finished in 10.00s, 85000.00 req/s, 8.11MB/s
            figures.requests_per_s = words.get(3)?.parse().ok()?;
            seen += 1;
        } else if line.starts_with("requests:") {
            // requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout
            figures.succeeded = number_before(&words, "succeeded,")?;
            figures.failed = number_before(&words, "failed,")?;
            seen += 1;
        } else if line.starts_with("status codes:") {
            // status codes: N 2xx, N 3xx, N 4xx, N 5xx
            figures.non_2xx = ["3xx,", "4xx,", "5xx"]
                .iter()
                .filter_map(|k| number_before(&words, k))
                .sum();
            seen += 1;
        }
    }
    (seen == 3).then_some(figures)
}

fn number_before(words: &[&str], key: &str) -> Option<u64> {
    let at = words.iter().position(|w| *w == key)?;
    words.get(at.checked_sub(1)?)?.parse().ok()
}

/// Third column of h2load's per-request log: microseconds until the end of the response.
fn read_latencies(log: &Path) -> anyhow::Result<Vec<u64>> {
    let text =
        std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    Ok(text
        .lines()
        .filter_map(|line| line.split('\t').nth(2)?.trim().parse().ok())
        .collect())
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_summary_lines() {
        let text = "finished in 10.00s, 85123.40 req/s, 8.11MB/s\n\
requests: 851234 total, 851300 started, 851234 done, 851200 succeeded, 34 failed, 34 errored, 0 timeout\n\
status codes: 851200 2xx, 0 3xx, 2 4xx, 1 5xx\n";
        let f = parse_summary(text).unwrap();
        assert!((f.requests_per_s - 85123.4).abs() < 1e-6);
        assert_eq!((f.succeeded, f.failed, f.non_2xx), (851200, 34, 3));
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), 50);
        assert_eq!(percentile(&v, 0.99), 99);
        assert_eq!(percentile(&[7], 0.99), 7);
    }
}
