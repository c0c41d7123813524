//! The upstream resolver: a real `unbound` serving DoH on cleartext HTTP/2 (what Envoy
//! proxies `/dns-query` to) and classic DNS on a second port. Local zones (the demo zone in
//! `envoy/demo-zone.txt` and whatever a test adds) answer without internet; `recursion`
//! decides whether other names recurse (interactive gateway) or are refused (hermetic tests).
//!
//! unbound answers only queries from [`GATEWAY_SOURCE`], the loopback address Envoy (and the
//! benchmark's dnsdist peer) bind their upstream connections to; any other source, other
//! loopback addresses included, gets REFUSED, so nothing local can go around the filter.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde::Serialize;

use crate::paths;
use crate::ports::free_port;
use crate::process::{tcp_open, ManagedProcess};
use crate::tools::{self, Tool};
use crate::LaunchError;

/// The loopback address the gateway's own clients of unbound bind to: Envoy's `upstream_doh`
/// cluster (`upstream_bind_config`) and the dnsdist benchmark peer. The only source unbound
/// answers by default.
pub const GATEWAY_SOURCE: &str = "127.0.8.53";

/// One `local-zone` with its `local-data` records (unbound syntax, e.g.
/// `www.example.test. 300 IN A 192.0.2.10`).
#[derive(Debug, Clone, Serialize)]
pub struct LocalZone {
    pub name: String,
    /// `static` (only the listed records exist) or `transparent` (others recurse).
    pub kind: String,
    pub records: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct UnboundOptions {
    pub zones: Vec<LocalZone>,
    /// Recurse to the internet for names outside the local zones (else refuse them).
    pub recursion: bool,
    pub threads: u32,
    /// Fixed ports (for `cargo xtask up`); ephemeral when `None`.
    pub doh_port: Option<u16>,
    pub dns_port: Option<u16>,
    /// Source addresses whose queries are answered; every other source gets REFUSED.
    pub allow_from: Vec<std::net::Ipv4Addr>,
}

impl Default for UnboundOptions {
    /// Hermetic: the demo zone plus the offline stand-ins for popular names, no recursion.
    fn default() -> Self {
        let mut zones = demo_zones().unwrap_or_default();
        zones.extend(offline_popular_zones().unwrap_or_default());
        Self {
            zones,
            recursion: false,
            threads: 1,
            doh_port: None,
            dns_port: None,
            allow_from: vec![GATEWAY_SOURCE.parse().expect("a valid IPv4 address")],
        }
    }
}

/// `envoy/demo-zone.txt`: the demo names (`*.example.test`), always served.
pub fn demo_zones() -> Result<Vec<LocalZone>, LaunchError> {
    read_zones("demo-zone.txt")
}

/// `envoy/offline-popular-zone.txt`: documentation addresses for a few popular names, only
/// for hermetic runs (they would shadow the real answers when unbound recurses).
pub fn offline_popular_zones() -> Result<Vec<LocalZone>, LaunchError> {
    read_zones("offline-popular-zone.txt")
}

/// Parses a zone file under `envoy/`: `zone NAME KIND` lines start a zone, other non-comment
/// lines are records of the current zone.
fn read_zones(file: &str) -> Result<Vec<LocalZone>, LaunchError> {
    let path = paths::envoy_dir().join(file);
    let text = std::fs::read_to_string(&path)
        .map_err(LaunchError::io(format!("reading {}", path.display())))?;
    Ok(parse_zones(&text))
}

fn parse_zones(text: &str) -> Vec<LocalZone> {
    let mut zones: Vec<LocalZone> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match (words.as_slice(), zones.last_mut()) {
            (["zone", name, kind], _) => zones.push(LocalZone {
                name: name.trim_end_matches('.').to_owned(),
                kind: (*kind).to_owned(),
                records: Vec::new(),
            }),
            (_, Some(zone)) => zone.records.push(line.to_owned()),
            (_, None) => {} // records before any zone line have no zone: ignored
        }
    }
    zones
}

#[derive(Debug)]
pub struct Unbound {
    process: ManagedProcess,
    pub doh_port: u16,
    pub dns_port: u16,
}

impl Unbound {
    /// Renders `envoy/unbound.conf.j2` into `dir`, starts unbound and waits until its DoH port
    /// accepts connections.
    pub fn start(dir: &Path, options: &UnboundOptions) -> Result<Self, LaunchError> {
        let doh_port = options.doh_port.map_or_else(free_port, Ok)?;
        let dns_port = options.dns_port.map_or_else(free_port, Ok)?;
        let config = render(dir, options, doh_port, dns_port)?;
        let config_path = dir.join("unbound.conf");
        std::fs::write(&config_path, config).map_err(LaunchError::io(format!(
            "writing {}",
            config_path.display()
        )))?;
        let mut command = Command::new(tools::find(Tool::Unbound)?);
        command.arg("-d").arg("-c").arg(&config_path);
        let mut process = ManagedProcess::spawn("unbound", command, &dir.join("unbound.log"))?;
        process.wait_ready(Duration::from_secs(10), || tcp_open(doh_port))?;
        Ok(Self {
            process,
            doh_port,
            dns_port,
        })
    }

    pub fn process(&mut self) -> &mut ManagedProcess {
        &mut self.process
    }
}

fn render(
    dir: &Path,
    options: &UnboundOptions,
    doh_port: u16,
    dns_port: u16,
) -> Result<String, LaunchError> {
    crate::template::render(
        "envoy/unbound.conf.j2",
        serde_json::json!({
            "dir": dir,
            "doh_port": doh_port,
            "dns_port": dns_port,
            "threads": options.threads,
            "recursion": options.recursion,
            "zones": options.zones,
            "allow_from": options.allow_from,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_file_lines_become_zones_with_records() {
        let zones = parse_zones(
            "# c\nzone a.test static\nx.a.test. 1 IN A 192.0.2.1\n\nzone b.test transparent\nb.test. 1 IN A 192.0.2.2\n",
        );
        assert_eq!(zones.len(), 2);
        assert_eq!(zones[0].name, "a.test");
        assert_eq!(zones[0].records, ["x.a.test. 1 IN A 192.0.2.1"]);
        assert_eq!(zones[1].kind, "transparent");
    }

    #[test]
    fn hermetic_config_refuses_the_root_and_carries_the_zones() {
        let text = render(Path::new("/tmp/x"), &UnboundOptions::default(), 1000, 1001).unwrap();
        assert!(text.contains("local-zone: \".\" refuse"));
        assert!(text.contains("https-port: 1000"));
        assert!(text.contains("local-data: \"www.example.test. 300 IN A 192.0.2.10\""));
        assert!(text.contains("local-data: \"www.wikipedia.org. 300 IN A 198.51.100.20\""));
    }

    #[test]
    fn only_the_gateway_source_is_allowed() {
        let text = render(Path::new("/tmp/x"), &UnboundOptions::default(), 1000, 1001).unwrap();
        let acl: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("access-control:"))
            .collect();
        assert_eq!(
            acl,
            [
                "access-control: 0.0.0.0/0 refuse",
                "access-control: ::0/0 refuse",
                "access-control: 127.0.0.0/8 refuse",
                "access-control: ::1/128 refuse",
                "access-control: 127.0.8.53/32 allow",
            ]
        );
    }
}
