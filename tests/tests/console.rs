//! The console as `cargo xtask up` runs it: the real binary started by the launcher against
//! a real osmem-server, awaited on readiness, logged into over a real socket with the
//! generated admin password, and stopped by PID. Also: a bad setting stops it with status 2.

use std::process::Command;

use dohguard_launcher::console::{self, Console, ConsoleOptions};
use dohguard_launcher::console_stack::{AdminSession, ConsoleStack, ConsoleStackOptions};
use dohguard_launcher::osmem::Osmem;
use dohguard_launcher::process::tcp_open;

#[test]
fn the_launcher_starts_the_console_and_the_generated_admin_can_log_in() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Osmem::start(dir.path(), None)?;
    let mut console = Console::start(
        dir.path(),
        &ConsoleOptions {
            elasticsearch_url: store.url(),
            scorer_url: None,
            port: None,
            password_file: None,
            scorer_admin_token_file: None,
        },
    )?;
    let password = console.initial_password()?;
    assert!(password.len() >= 20);
    // The log says where the password is, never the password itself.
    let log = std::fs::read_to_string(console.process().log_path())?;
    assert!(log.contains("console-admin-password"), "{log}");
    assert!(!log.contains(&password), "the password leaked into the log");

    let admin = AdminSession::login(&console)?;
    let body = admin.get_json("api/overview?range=15m")?;
    assert_eq!(body["total"], 0, "{body}");
    // The chart library comes from the assets folder set-up fills (npm ci), not a CDN.
    let asset = dohguard_launcher::http::agent()
        .get(format!("{}assets/uPlot.iife.min.js", console.url()))
        .call()?;
    assert_eq!(
        asset.status(),
        200,
        "run scripts/setup.sh (npm ci in console/web)"
    );

    let port = console.port;
    console.stop();
    assert!(!tcp_open(port), "stopped by PID");
    Ok(())
}

#[test]
fn a_bad_setting_exits_with_status_2_naming_the_key() -> anyhow::Result<()> {
    let out = Command::new(console::binary()?)
        .env("DOHGUARD_CONSOLE_SESSION__TTL_S", "0")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("session.ttl_s"), "{stderr}");
    Ok(())
}

/// The whole loop in a real browser: DoH queries through Envoy + filter + scorer land in the
/// store, and headless Chromium (Debian's, driven by playwright-core from
/// `console/web/e2e/overview.mjs`) logs in, sees them on the overview, follows the blocked
/// count to the log, and watches a new query arrive in the live tail. Needs `cargo xtask wasm`, the scorer and console builds, and
/// set-up's `chromium` and `npm ci` in console/web.
#[test]
fn a_browser_logs_in_and_sees_the_overview_populated_by_real_queries() -> anyhow::Result<()> {
    use dohguard_launcher::kdig::{self, Method};
    use dohguard_launcher::tls::TLS_HOSTNAME;
    use std::time::Duration;

    let running = ConsoleStack::start(ConsoleStackOptions {
        deny: vec!["ads.example.test".into()],
        concurrency: 1,
        console_asks_scorer: true,
        ..ConsoleStackOptions::default()
    })?;
    let stack = &running.stack;
    let ca = stack.ca().expect("TLS is on");
    let queries = [
        ("www.example.test", "NOERROR"),
        ("ads.example.test", "NXDOMAIN"),
        ("ads.example.test", "NXDOMAIN"),
    ];
    for (name, status) in queries {
        let reply = kdig::query_doh(
            stack.envoy.ports.https,
            ca,
            TLS_HOSTNAME,
            Method::Post,
            name,
            "A",
            true,
        )?;
        assert_eq!(reply.status, status, "{name}: {}", reply.raw);
    }
    running.wait_for_events(queries.len(), Duration::from_secs(30))?;

    let result = running.browser(
        "overview.mjs",
        &[
            ("CONSOLE_MIN_TOTAL", &queries.len().to_string()),
            ("DOH_URL", &stack.envoy.http_url()),
        ],
    )?;
    assert_eq!(result["total"], queries.len());
    assert_eq!(result["blocked"], 2);
    Ok(())
}

/// `cargo xtask up`'s demo mix through the real gateway: every query is recorded,
/// the console sees its six clients, the NXDOMAIN-burst client's 40 queries all got
/// NXDOMAIN, and an analyst labels an uncertain domain in the vetting queue in a real browser
/// (keyboard: `x` selects, `m` labels malicious).
#[test]
fn demo_traffic_populates_the_console_with_several_clients() -> anyhow::Result<()> {
    use dohguard_launcher::demo_traffic;
    use std::time::Duration;

    let running = ConsoleStack::start(ConsoleStackOptions {
        deny: vec!["ads.example.test".into(), ".tracker.example.test".into()],
        concurrency: 1,
        ..ConsoleStackOptions::default()
    })?;
    let summary = demo_traffic::send(running.stack.envoy.ports.http)?;
    assert_eq!(summary.sent, demo_traffic::plan().len());
    assert_eq!(summary.answered, summary.sent, "{summary:?}");
    running.wait_for_events(summary.sent, Duration::from_secs(60))?;

    let admin = running.admin()?;
    let get = |path: &str| admin.get_json(path);
    let overview = get("api/overview?range=15m")?;
    assert_eq!(overview["total"], summary.sent, "{overview}");
    assert_eq!(overview["unique_clients"], summary.clients, "{overview}");
    let blocked: u64 = overview["by_verdict"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["key"] == "block")
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert!(blocked >= 10, "the deny-list hits at least: {overview}");
    let burst = get("api/clients/127.0.0.66?range=15m")?;
    assert_eq!(burst["total"], 40, "{burst}");
    let nx = get("api/log?range=15m&client=127.0.0.66&rcode=NXDOMAIN&size=1")?;
    assert_eq!(nx["total"], 40, "every burst query got NXDOMAIN: {nx}");

    // The model found some of the algorithmic names uncertain: label one in the vetting
    // queue in a real browser, with the keyboard.
    let queue = get("api/vetting?range=15m")?;
    assert!(!queue["items"].as_array().unwrap().is_empty(), "{queue}");
    let labelled = running.browser("vetting.mjs", &[])?;
    let domain = labelled["labelled"].as_str().unwrap();
    let after = get("api/vetting?range=15m")?;
    assert!(
        after["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["domain"] != domain),
        "{domain} left the queue: {after}"
    );
    Ok(())
}
