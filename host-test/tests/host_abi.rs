//! The host's ABI plumbing, checked against a hand-written guest
//! (`guests/abi_probe.wat`) that needs no SDK and no wasm toolchain.

use std::time::Duration;

use dohguard_host_test::{Clock, HostError, LogLevel, Plugin, SharedData};

fn probe() -> Plugin {
    let wasm = wat::parse_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/guests/abi_probe.wat"
    ))
    .expect("abi_probe.wat parses");
    Plugin::from_bytes(&wasm, "abi_probe.wat").expect("abi_probe compiles")
}

#[test]
fn configuration_reaches_the_guest_and_rejection_is_reported() {
    let plugin = probe();
    let filter = plugin
        .vm()
        .configuration(r#"{"mode":"enforce"}"#)
        .start()
        .unwrap();
    assert!(filter.logged(LogLevel::Info, r#"{"mode":"enforce"}"#));
    assert_eq!(filter.tick_period(), Some(Duration::from_secs(1)));

    let err = plugin.vm().configuration("x-bad").start().unwrap_err();
    assert!(err.is_configuration_rejected(), "{err}");
    assert!(
        err.to_string().contains("bad configuration: field x"),
        "{err}"
    );
}

#[test]
fn headers_properties_metrics_and_shared_data_round_trip() {
    let plugin = probe();
    let mut filter = plugin.vm().configuration("{}").start().unwrap();
    let mut stream = filter.stream().unwrap();
    stream.set_property("source.address", "198.51.100.9:4242");
    stream
        .request_headers(&[(":method", "GET"), (":path", "/pass")], true)
        .unwrap()
        .expect_continue()
        .expect_no_http_call();
    assert_eq!(
        stream.request_header_map().get("x-probe").as_deref(),
        Some("seen")
    );
    stream
        .response_headers(&[(":status", "200")], true)
        .unwrap()
        .expect_continue();
    assert_eq!(
        stream
            .response_header_map()
            .get("x-probe-response")
            .as_deref(),
        Some("1")
    );
    stream.finish().unwrap();

    assert!(filter.logged(LogLevel::Info, "/pass"));
    assert!(filter.logged(LogLevel::Info, "198.51.100.9:4242"));
    assert_eq!(filter.unknown_property_paths(), ["no.such"]);
    assert_eq!(filter.metric("probe.requests"), Some(1));
    assert_eq!(filter.shared_data().get("last_path").unwrap().0, b"/pass");
    filter.tick().unwrap();
    filter.tick().unwrap();
    assert_eq!(filter.metric("probe.ticks"), Some(2));
}

#[test]
fn local_response_passes_back_through_the_response_callbacks() {
    let mut filter = probe().vm().configuration("{}").start().unwrap();
    let mut stream = filter.stream().unwrap();
    let reply = stream
        .request_headers(&[(":method", "GET"), (":path", "/block")], true)
        .unwrap()
        .expect_local_response(403);
    assert_eq!(reply.body, b"blocked");
    assert_eq!(reply.header("x-probe-response").as_deref(), Some("1"));
    assert_eq!(reply.header("content-length").as_deref(), Some("7"));
}

#[test]
fn http_call_reply_resumes_and_failure_or_timeout_is_delivered() {
    let plugin = probe();
    let mut filter = plugin
        .vm()
        .configuration("{}")
        .clusters(&["scorer"])
        .start()
        .unwrap();

    let mut stream = filter.stream().unwrap();
    let call = stream
        .request_headers(&[(":method", "GET"), (":path", "/call")], true)
        .unwrap()
        .expect_pause()
        .expect_http_call("scorer");
    assert_eq!(call.request().header(":path").as_deref(), Some("/v1/score"));
    assert_eq!(call.request().body, b"hello");
    assert_eq!(call.request().timeout, Duration::from_millis(500));
    call.returning(200, r#"{"verdict":"allow"}"#)
        .unwrap()
        .expect_continue();
    assert_eq!(
        stream.request_header_map().get("x-call-body").as_deref(),
        Some(r#"{"verdict":"allow"}"#)
    );

    // A reset (no headers) versus a timeout (Envoy's synthesised 504).
    let mut stream = filter.stream().unwrap();
    let reply = stream
        .request_headers(&[(":method", "GET"), (":path", "/call")], true)
        .unwrap()
        .expect_http_call("scorer")
        .failing()
        .unwrap()
        .expect_local_response(503);
    assert_eq!(reply.body_text(), "call failed");
    let mut stream = filter.stream().unwrap();
    let before = filter_clock_nanos(&stream);
    stream
        .request_headers(&[(":method", "GET"), (":path", "/call")], true)
        .unwrap()
        .expect_http_call("scorer")
        .timing_out()
        .unwrap()
        .expect_continue();
    assert_eq!(
        stream.request_header_map().get("x-call-body").as_deref(),
        Some("upstream request timeout")
    );
    assert_eq!(
        filter_clock_nanos(&stream) - before,
        500_000_000,
        "clock moved to the deadline"
    );

    // A call nobody answers fails once the clock passes its deadline.
    let mut stream = filter.stream().unwrap();
    let pending = stream
        .request_headers(&[(":method", "GET"), (":path", "/call")], true)
        .unwrap()
        .expect_http_call("scorer")
        .leave_pending();
    filter.advance_clock(Duration::from_millis(499));
    assert!(filter.expire_http_calls().unwrap().is_empty());
    filter.advance_clock(Duration::from_millis(1));
    let expired = filter.expire_http_calls().unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].0, pending.token);
    assert!(
        expired[0].1.resumed_request(),
        "the 504 reply reached the guest"
    );
    assert!(filter.pending_http_calls().is_empty());
}

fn filter_clock_nanos(stream: &dohguard_host_test::HttpStream<'_>) -> u64 {
    stream.filter().clock().now_nanos()
}

#[test]
fn a_guest_trap_is_an_error_naming_the_callback() {
    let mut filter = probe().vm().configuration("{}").start().unwrap();
    let mut stream = filter.stream().unwrap();
    let err = stream
        .request_headers(&[(":path", "/unreachable")], true)
        .unwrap_err();
    assert!(err.is_trap(), "{err}");
    assert!(
        err.to_string().contains("proxy_on_request_headers"),
        "{err}"
    );
}

#[test]
fn http_call_to_an_unknown_cluster_is_refused() {
    let mut filter = probe()
        .vm()
        .configuration("{}")
        .clusters(&["other"])
        .start()
        .unwrap();
    let mut stream = filter.stream().unwrap();
    stream
        .request_headers(&[(":method", "GET"), (":path", "/call")], true)
        .unwrap()
        .expect_pause()
        .expect_no_http_call();
}

#[test]
fn shared_data_is_shared_between_vms_and_guarded_by_cas() {
    let plugin = probe();
    let shared = SharedData::new();
    let mut first = plugin
        .vm()
        .configuration("{}")
        .shared_data(shared.clone())
        .start()
        .unwrap();
    let mut second = plugin
        .vm()
        .configuration("{}")
        .shared_data(shared.clone())
        .start()
        .unwrap();
    first
        .stream()
        .unwrap()
        .request_headers(&[(":path", "/from-first")], true)
        .unwrap()
        .expect_continue();
    assert_eq!(
        second.shared_data().get("last_path").unwrap().0,
        b"/from-first"
    );

    // "/s" reads the entry's CAS and writes with a stale one: refused.
    second
        .stream()
        .unwrap()
        .request_headers(&[(":path", "/stale")], true)
        .unwrap()
        .expect_continue();
    assert!(second.logged(LogLevel::Warn, "cas mismatch"));
    assert_eq!(shared.get("last_path").unwrap().0, b"/stale");
}

#[test]
fn the_guest_reads_the_host_clock() {
    let clock = Clock::starting_at(1_000_000_000);
    let mut filter = probe()
        .vm()
        .configuration("{}")
        .clock(clock.clone())
        .start()
        .unwrap();
    clock.advance(Duration::from_secs(5));
    filter
        .stream()
        .unwrap()
        .request_headers(&[(":path", "/time")], true)
        .unwrap()
        .expect_continue();
    let (bytes, _) = filter.shared_data().get("time read").unwrap();
    assert_eq!(u64::from_le_bytes(bytes.try_into().unwrap()), 6_000_000_000);
}

#[test]
fn unhosted_imports_answer_unimplemented_and_are_logged() {
    let mut filter = probe().vm().configuration("{}").start().unwrap();
    filter
        .stream()
        .unwrap()
        .request_headers(&[(":path", "/grpc")], true)
        .unwrap()
        .expect_continue();
    assert!(filter.logged(LogLevel::Warn, "unimplemented import env.proxy_grpc_call"));
}

#[test]
fn a_missing_module_file_is_a_clear_error() {
    let err = Plugin::load("/nonexistent/filter.wasm").unwrap_err();
    assert!(matches!(err, HostError::ReadWasm { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/filter.wasm"));
}

#[test]
fn bad_guest_arguments_get_a_status_not_a_crash() {
    let mut filter = probe().vm().configuration("{}").start().unwrap();
    for path in ["/pointer", "/header-map"] {
        filter
            .stream()
            .unwrap()
            .request_headers(&[(":path", path)], true)
            .unwrap()
            .expect_continue()
            .expect_no_http_call();
    }
    assert!(
        filter.logged(LogLevel::Warn, "bad pointer refused"),
        "InvalidMemoryAccess"
    );
    assert!(
        filter.logged(LogLevel::Warn, "bad map refused"),
        "SerializationFailure"
    );
    assert!(filter.pending_http_calls().is_empty());
}

#[test]
fn a_guest_panic_message_reaches_the_error() {
    let mut filter = probe().vm().configuration("{}").start().unwrap();
    let mut stream = filter.stream().unwrap();
    let err = stream
        .request_headers(&[(":path", "/whoops")], true)
        .unwrap_err();
    assert!(err.is_trap(), "{err}");
    assert!(
        err.to_string().contains("probe panicked: on purpose"),
        "{err}"
    );
}
