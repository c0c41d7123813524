//! `cargo xtask bench`: gateway throughput and latency with h2load over TLS + HTTP/2, printed
//! as a table (a benchmark, not a test). Every figure is measured in the same run against its
//! baseline on the same machine:
//! - blocked name: Envoy + filter (deny-list hit answered by the filter) vs bare Envoy
//!   `direct_response` with the very same answer bytes (the bound for any Envoy filter);
//! - allowed name: Envoy + filter (verdict-cache hit, proxied to unbound) vs bare Envoy
//!   proxying to the same unbound;
//! - the peer: Debian dnsdist serving DoH with the same deny list and the same unbound.
//!
//! Both run with a deny list of `--deny-list-size` names; the filter's scorer is the in-process
//! stand-in, warmed so the measured path is the verdict-cache hit.

mod h2load;

use std::path::Path;

use anyhow::{ensure, Context};

use dohguard_e2e::dns::{self, Type};
use dohguard_e2e::dnsdist::Dnsdist;
use dohguard_e2e::doh_client::{self, Transport};
use dohguard_e2e::filter_config::FilterConfig;
use dohguard_e2e::stack::ScorerKind;
use dohguard_e2e::tls;
use dohguard_e2e::unbound::{Unbound, UnboundOptions};
use dohguard_e2e::{Stack, StackOptions};
use h2load::{Figures, Load, Method};

/// Name on the deny list in every measured configuration.
const BLOCKED_NAME: &str = "blocked.bench.test";
/// Name unbound answers from its local zone (also dnsdist's health-check name).
const ALLOWED_NAME: &str = "www.example.test";

#[derive(clap::Args)]
pub struct Args {
    /// Measured seconds per run (after the warm-up).
    #[arg(long, default_value_t = 10)]
    duration: u32,
    /// Warm-up seconds per run (not measured).
    #[arg(long, default_value_t = 2)]
    warm_up: u32,
    /// h2load connections.
    #[arg(long, default_value_t = 8)]
    connections: u32,
    /// Concurrent HTTP/2 streams per connection.
    #[arg(long, default_value_t = 8)]
    streams: u32,
    /// h2load threads.
    #[arg(long, default_value_t = 1)]
    h2load_threads: u32,
    /// Envoy worker threads.
    #[arg(long, default_value_t = 2)]
    envoy_concurrency: u32,
    /// Names on the deny list (filter and dnsdist alike).
    #[arg(long, default_value_t = 100_000)]
    deny_list_size: u32,
    /// Skip the dnsdist peer.
    #[arg(long)]
    no_dnsdist: bool,
}

struct Row {
    system: &'static str,
    case: &'static str,
    method: Method,
    figures: Figures,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let load = Load {
        connections: args.connections,
        streams: args.streams,
        threads: args.h2load_threads,
        warm_up_s: args.warm_up,
        duration_s: args.duration,
    };
    let work = tempfile::tempdir()?;
    let tls = tls::ensure_self_signed(&work.path().join("tls"))?;
    let deny = deny_list(args.deny_list_size);
    let deny_file = work.path().join("deny-list.txt");
    std::fs::write(&deny_file, deny.join("\n"))?;
    let blocked_query = dns::query(BLOCKED_NAME, Type::A, 0, true)?;
    let allowed_query = dns::query(ALLOWED_NAME, Type::A, 0, true)?;
    let mut rows = Vec::new();
    let methods = [Method::Post, Method::Get];

    println!(
        "h2load: {} connections x {} streams, {} s (+{} s warm-up) per run; Envoy --concurrency {}; deny list {} names",
        args.connections, args.streams, args.duration, args.warm_up, args.envoy_concurrency, deny.len()
    );

    // Envoy + filter: blocked (deny-list hit) and allowed (verdict-cache hit, proxied).
    let block_answer = {
        let config = FilterConfig {
            deny: deny.clone(),
            scorer: true,
            ..FilterConfig::default()
        };
        let stack = start(&args, work.path(), "filter", Some(config.to_json()), None)?;
        let port = stack.envoy.ports.https;
        let ca = stack.ca().expect("TLS is on");
        let answer = check_answer(port, ca, &blocked_query, "NXDomain")?;
        check_answer(port, ca, &allowed_query, "NoError")?;
        for (case, query) in [("blocked", &blocked_query), ("allowed", &allowed_query)] {
            for method in methods {
                rows.push(measure(
                    "Envoy + filter",
                    case,
                    method,
                    port,
                    query,
                    load,
                    work.path(),
                )?);
            }
        }
        let stats = stack.envoy.stats()?;
        // The filter's own counters (proxy-wasm metrics live under `wasmcustom.`), non-zero only.
        let counters: Vec<&str> = stats
            .lines()
            .filter(|l| l.starts_with("wasmcustom.dohguard.") && !l.ends_with(": 0"))
            .collect();
        println!(
            "filter counters after the runs:\n  {}",
            counters.join("\n  ")
        );
        answer
    };

    // Bare Envoy: direct_response with the filter's exact answer bytes, and proxying to unbound.
    let body_file = work.path().join("block-answer.bin");
    std::fs::write(&body_file, &block_answer)?;
    {
        let stack = start(&args, work.path(), "bare-direct", None, Some(&body_file))?;
        for method in methods {
            let port = stack.envoy.ports.https;
            rows.push(measure(
                "bare Envoy",
                "blocked",
                method,
                port,
                &blocked_query,
                load,
                work.path(),
            )?);
        }
    }
    {
        let stack = start(&args, work.path(), "bare-proxy", None, None)?;
        let port = stack.envoy.ports.https;
        check_answer(
            port,
            stack.ca().expect("TLS is on"),
            &allowed_query,
            "NoError",
        )?;
        for method in methods {
            rows.push(measure(
                "bare Envoy",
                "allowed",
                method,
                port,
                &allowed_query,
                load,
                work.path(),
            )?);
        }
    }

    // The peer: dnsdist with the same deny list in front of the same kind of unbound.
    if !args.no_dnsdist {
        let dir = work.path().join("dnsdist");
        std::fs::create_dir_all(&dir)?;
        let unbound = Unbound::start(&dir, &UnboundOptions::default())?;
        let dnsdist = Dnsdist::start(&dir, &tls, unbound.dns_port, ALLOWED_NAME, &deny_file)?;
        wait_for_backend(dnsdist.doh_port, &tls.cert, &allowed_query)?;
        check_answer(dnsdist.doh_port, &tls.cert, &blocked_query, "NXDomain")?;
        for (case, query) in [("blocked", &blocked_query), ("allowed", &allowed_query)] {
            for method in methods {
                rows.push(measure(
                    "dnsdist",
                    case,
                    method,
                    dnsdist.doh_port,
                    query,
                    load,
                    work.path(),
                )?);
            }
        }
    }

    print_table(&rows);
    print_ratios(&rows);
    Ok(())
}

/// `deny_list_size` synthetic names plus the name the benchmark queries.
fn deny_list(size: u32) -> Vec<String> {
    let mut names: Vec<String> = (1..size)
        .map(|i| format!("host-{i:06}.deny.bench.test"))
        .collect();
    names.push(BLOCKED_NAME.to_owned());
    names
}

fn start(
    args: &Args,
    work: &Path,
    name: &str,
    filter_config: Option<serde_json::Value>,
    direct_body: Option<&Path>,
) -> anyhow::Result<Stack> {
    let scorer = match filter_config {
        Some(_) => ScorerKind::StandIn,
        None => ScorerKind::None,
    };
    Stack::start(StackOptions {
        filter_config,
        scorer,
        concurrency: args.envoy_concurrency,
        direct_body: direct_body.map(Path::to_path_buf),
        run_dir: Some(work.join(name)),
        tls_dir: Some(work.join("tls")),
        ..StackOptions::default()
    })
    .with_context(|| format!("starting the {name} gateway"))
}

/// Sends `query` once over DoH POST and checks the reply code; returns the answer bytes.
fn check_answer(port: u16, ca: &Path, query: &[u8], rcode: &str) -> anyhow::Result<Vec<u8>> {
    let reply = doh_client::request(
        &Transport::Tls {
            port,
            ca: ca.to_path_buf(),
        },
        "POST",
        "/dns-query",
        &[
            ("content-type", "application/dns-message"),
            ("accept", "application/dns-message"),
        ],
        Some(query),
    )?;
    ensure!(
        reply.status == 200,
        "DoH answer status {} on port {port}",
        reply.status
    );
    let message = dns::parse(&reply.body)?;
    ensure!(
        format!("{:?}", message.response_code()) == rcode,
        "expected {rcode}, got {:?} on port {port}",
        message.response_code()
    );
    Ok(reply.body)
}

/// dnsdist answers 403 until its first health check marks the backend up.
fn wait_for_backend(port: u16, ca: &Path, query: &[u8]) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match check_answer(port, ca, query, "NoError") {
            Ok(_) => return Ok(()),
            Err(e) if std::time::Instant::now() > deadline => {
                return Err(e.context("dnsdist backend never came up"))
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(200)),
        }
    }
}

fn measure(
    system: &'static str,
    case: &'static str,
    method: Method,
    port: u16,
    query: &[u8],
    load: Load,
    work: &Path,
) -> anyhow::Result<Row> {
    eprintln!("measuring {system}, {case}, {} ...", method.name());
    let figures = h2load::run(port, method, query, load, work)?;
    ensure!(
        figures.succeeded > 0 && figures.failed == 0 && figures.non_2xx == 0,
        "{system} {case} {}: {} succeeded, {} failed, {} non-2xx requests",
        method.name(),
        figures.succeeded,
        figures.failed,
        figures.non_2xx
    );
    Ok(Row {
        system,
        case,
        method,
        figures,
    })
}

fn print_table(rows: &[Row]) {
    println!("\n| system | query | method | req/s | p50 (ms) | p99 (ms) | requests |");
    println!("|---|---|---|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {} |",
            r.system,
            r.case,
            r.method.name(),
            r.figures.requests_per_s,
            r.figures.p50_us as f64 / 1000.0,
            r.figures.p99_us as f64 / 1000.0,
            r.figures.succeeded
        );
    }
}

fn print_ratios(rows: &[Row]) {
    let find = |system: &str, case: &str, method: Method| {
        rows.iter()
            .find(|r| r.system == system && r.case == case && r.method == method)
            .map(|r| r.figures.requests_per_s)
    };
    println!("\n| query | method | filter / bare Envoy (goal >= 0.9) | filter / dnsdist |");
    println!("|---|---|---:|---:|");
    for case in ["blocked", "allowed"] {
        for method in [Method::Post, Method::Get] {
            let ours = find("Envoy + filter", case, method);
            let ratio = |other: Option<f64>| match (ours, other) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
                _ => "n/a".to_owned(),
            };
            println!(
                "| {case} | {} | {} | {} |",
                method.name(),
                ratio(find("bare Envoy", case, method)),
                ratio(find("dnsdist", case, method))
            );
        }
    }
}
