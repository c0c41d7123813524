//! The console as `cargo xtask up` runs it: the real binary started by the launcher against
//! a real osmem-server, awaited on readiness, logged into over a real socket with the
//! generated admin password, and stopped by PID. Also: a bad setting stops it with status 2.

use std::process::Command;

use dohguard_e2e::console::{self, Console, ConsoleOptions, INITIAL_ADMIN};
use dohguard_e2e::osmem::Osmem;
use dohguard_e2e::process::tcp_open;

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
        },
    )?;
    let password = console.initial_password()?;
    assert!(password.len() >= 20);
    // The log says where the password is, never the password itself.
    let log = std::fs::read_to_string(console.process().log_path())?;
    assert!(log.contains("console-admin-password"), "{log}");
    assert!(!log.contains(&password), "the password leaked into the log");

    let agent = dohguard_e2e::http::agent();
    let mut reply = agent
        .post(format!("{}api/login", console.url()))
        .send_json(serde_json::json!({"username": INITIAL_ADMIN, "password": password}))?;
    assert_eq!(reply.status(), 200);
    let cookie = reply.headers()["set-cookie"]
        .to_str()?
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let _ = reply.body_mut().read_to_string()?;
    let mut overview = agent
        .get(format!("{}api/overview?range=15m", console.url()))
        .header("cookie", &cookie)
        .call()?;
    assert_eq!(overview.status(), 200);
    let body: serde_json::Value = serde_json::from_str(&overview.body_mut().read_to_string()?)?;
    assert_eq!(body["total"], 0, "{body}");
    // The chart library comes from the assets folder set-up fills (npm ci), not a CDN.
    let asset = agent
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
