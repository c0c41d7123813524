//! Every Envoy configuration the launcher renders passes `envoy --mode validate`: bare proxy
//! and bare `direct_response` (benchmark bounds), with and without TLS, and the gateway with
//! the filter and the scorer cluster, and the console cluster over HTTP and TLS.

use dohguard_launcher::envoy::{
    self, EnvoyOptions, EnvoyPorts, FilterSetup, GatewayLimits, Upstream,
};
use dohguard_launcher::filter_config::FilterConfig;
use dohguard_launcher::{paths, tls};

fn validate(name: &str, options: &EnvoyOptions) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join(format!("{name}.yaml"));
    let text = envoy::render(options, EnvoyPorts::KERNEL_PICKED)?;
    std::fs::write(&path, &text)?;
    envoy::validate(&path).map_err(|e| anyhow::anyhow!("{name}: {e}\n{text}"))?;
    Ok(text)
}

#[test]
fn every_rendered_config_validates() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tls = tls::ensure_self_signed(dir.path())?;
    let body = dir.path().join("answer.bin");
    std::fs::write(&body, [0u8; 12])?;
    let wasm = paths::filter_wasm()?;
    let filter = FilterSetup {
        wasm,
        config: FilterConfig {
            deny: vec!["blocked.example.test".into()],
            scorer: true,
            ..FilterConfig::default()
        }
        .to_json(),
    };
    let proxy = EnvoyOptions {
        upstream: Upstream::Unbound { port: 5300 },
        filter: None,
        tls: None,
        scorer: None,
        console_port: None,
        console_tls_ca: None,
        concurrency: 1,
        ports: None,
        limits: GatewayLimits::default(),
    };
    let bare = validate("bare-proxy", &proxy)?;
    assert!(!bare.contains("envoy.filters.http.wasm"));
    assert!(!bare.contains("doh_tls"));

    let mut with_tls = proxy.clone();
    with_tls.tls = Some(tls.clone());
    assert!(validate("bare-proxy-tls", &with_tls)?.contains("doh_tls"));

    let mut direct = with_tls.clone();
    direct.upstream = Upstream::Direct { body_file: body };
    let text = validate("bare-direct-tls", &direct)?;
    assert!(text.contains("direct_response") && !text.contains("upstream_doh"));

    let mut gateway = with_tls;
    gateway.filter = Some(filter);
    gateway.scorer = Some(("127.0.0.1".into(), 5301));
    let text = validate("gateway", &gateway)?;
    assert!(text.contains("envoy.wasm.runtime.v8") && text.contains(envoy::SCORER_CLUSTER));
    // The hostile-world limits are in every gateway configuration by default.
    for needle in [
        "envoy.filters.http.local_ratelimit",
        "remote_address",
        "circuit_breakers",
        "max_heap_size_bytes: 1073741824",
        "stop_accepting_requests",
        "request_timeout: 10s",
        "stream_idle_timeout: 5s",
        "request_headers_timeout: 5s",
        "use_remote_address: true",
        "upstream_bind_config",
    ] {
        assert!(text.contains(needle), "the gateway config lacks {needle:?}");
    }
    // The rate limit comes before the dohguard filter: a refused query costs no decision.
    let rate_limit = text.find("envoy.filters.http.local_ratelimit").unwrap();
    let wasm = text.find("envoy.filters.http.wasm").unwrap();
    assert!(rate_limit < wasm);

    let mut unlimited = gateway.clone();
    unlimited.limits.rate_limit = None;
    let text = validate("gateway-no-rate-limit", &unlimited)?;
    assert!(!text.contains("local_ratelimit"));

    // The console as the override source, over plain HTTP and (`up --console-tls`) over TLS
    // verified against its self-signed certificate.
    let mut with_console = gateway.clone();
    with_console.console_port = Some(8780);
    let text = validate("gateway-console", &with_console)?;
    assert!(text.contains(dohguard_launcher::overrides::CONSOLE_CLUSTER));
    assert!(!text.contains("UpstreamTlsContext"));
    with_console.console_tls_ca = Some(tls.cert.clone());
    let text = validate("gateway-console-tls", &with_console)?;
    assert!(
        text.contains("UpstreamTlsContext") && text.contains("trusted_ca"),
        "{text}"
    );
    Ok(())
}

#[test]
fn a_broken_config_is_rejected_with_envoys_reason() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("broken.yaml");
    std::fs::write(
        &path,
        "static_resources: {listeners: [{name: x, no_such_field: 1}]}\n",
    )?;
    let err = envoy::validate(&path).expect_err("an unknown field must fail validation");
    assert!(err.to_string().contains("no_such_field"), "{err}");
    Ok(())
}
