//! A missing filter build is a clear error, never a silent skip. (Alone in
//! its test binary because it sets an environment variable.)

use dohguard_host_test::{dohguard_filter_wasm, locate};

#[test]
fn missing_filter_wasm_says_to_run_xtask() {
    // `set_var` is safe in edition 2021, and this is the only test of its binary,
    // so no other thread reads the environment meanwhile.
    std::env::set_var(
        locate::FILTER_WASM_ENV,
        "target/no-such-dir/dohguard_filter.wasm",
    );
    let err = dohguard_filter_wasm().unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("run `cargo xtask wasm` first"),
        "{message}"
    );
    assert!(
        message.contains("target/no-such-dir/dohguard_filter.wasm"),
        "{message}"
    );
}
