//! The gateway without the filter: Envoy proxies DoH to unbound over cleartext HTTP/2. This
//! pins the plumbing (TLS listener, h2c upstream, kdig GET/POST) that the filter tests build on.

use dohguard_launcher::kdig::{self, Method};
use dohguard_launcher::tls::TLS_HOSTNAME;
use dohguard_launcher::{Stack, StackOptions};

#[test]
fn bare_envoy_proxies_doh_to_unbound_over_get_and_post() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default())?;
    let ca = stack.ca().expect("TLS listener is on");
    for method in [Method::Get, Method::Post] {
        let reply = kdig::query_doh(
            stack.envoy.ports.https,
            ca,
            TLS_HOSTNAME,
            method,
            "www.example.test",
            "A",
            true,
        )?;
        assert_eq!(reply.status, "NOERROR", "{method:?}: {}", reply.raw);
        assert_eq!(reply.answer_data("A"), ["192.0.2.10"], "{}", reply.raw);
    }
    // Hermetic upstream: names outside the local zones are refused, not recursed.
    let outside = kdig::query_doh(
        stack.envoy.ports.https,
        ca,
        TLS_HOSTNAME,
        Method::Post,
        "example.com",
        "A",
        true,
    )?;
    assert_eq!(outside.status, "REFUSED", "{}", outside.raw);
    Ok(())
}
