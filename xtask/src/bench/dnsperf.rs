//! Correctness and latency at low concurrency with `dnsperf` in DoH mode: one client, one
//! outstanding query (dnsperf 2.10 loses queries as soon as more are in flight on a DoH
//! connection, so it is not used for throughput). The query file alternates a blocked and an
//! allowed name, so the response codes must split evenly between NXDOMAIN and NOERROR.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};

use dohguard_launcher::tools::{self, Tool};

use super::h2load::Method;

#[derive(Debug, Clone)]
pub struct Check {
    pub completed: u64,
    pub lost: u64,
    pub average_latency_ms: f64,
    /// e.g. `NOERROR 5000 (50.00%), NXDOMAIN 5000 (50.00%)`.
    pub rcodes: String,
}

/// Runs dnsperf for `seconds` against the DoH endpoint on 127.0.0.1:`port`.
pub fn run(
    port: u16,
    method: Method,
    names: &[&str],
    seconds: u32,
    work: &Path,
) -> anyhow::Result<Check> {
    let data = work.join("dnsperf-queries.txt");
    let lines: Vec<String> = names.iter().map(|n| format!("{n} A")).collect();
    std::fs::write(&data, lines.join("\n") + "\n")?;
    let dnsperf = tools::find(Tool::Dnsperf)?;
    let output = Command::new(dnsperf)
        .args(["-m", "doh", "-s", "127.0.0.1", "-p", &port.to_string()])
        .arg("-O")
        .arg(format!("doh-uri=https://localhost:{port}/dns-query"))
        .arg("-O")
        .arg(format!("doh-method={}", method.name()))
        .args(["-c", "1", "-q", "1", "-l", &seconds.to_string(), "-d"])
        .arg(&data)
        .output()
        .context("running dnsperf")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "dnsperf failed ({}): {text}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse(&text).with_context(|| format!("unexpected dnsperf output:\n{text}"))
}

fn parse(text: &str) -> Option<Check> {
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
    };
    Some(Check {
        completed: value("Queries completed:")? as u64,
        lost: value("Queries lost:")? as u64,
        average_latency_ms: value("Average Latency (s):")? * 1000.0,
        rcodes: text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Response codes:"))?
            .trim()
            .to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_statistics() {
        let text = "  Queries sent:         2000\n  Queries completed:    1998 (99.90%)\n  \
Queries lost:         2 (0.10%)\n\n  Response codes:       NOERROR 999 (50.00%), NXDOMAIN 999 (50.00%)\n  \
Average Latency (s):  0.000512 (min 0.000300, max 0.004000)\n";
        let check = parse(text).unwrap();
        assert_eq!((check.completed, check.lost), (1998, 2));
        assert!((check.average_latency_ms - 0.512).abs() < 1e-9);
        assert!(check.rcodes.starts_with("NOERROR 999"));
    }
}
