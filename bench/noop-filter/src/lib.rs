//! The no-op proxy-wasm HTTP filter: it registers a root context and an HTTP context that
//! return `Continue` from every callback it gets (the SDK's defaults), and makes no host calls
//! of its own. `cargo xtask bench` runs it in Envoy in front of the same routes as the dohguard
//! filter, to split the filter's cost into what any proxy-wasm filter costs in Envoy's V8
//! (a context per request, the ABI callbacks) and what dohguard's own work costs.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(NoopRoot) });
}}

/// Accepts any plugin configuration (it is never read) and makes one [`NoopHttp`] per request.
struct NoopRoot;

impl Context for NoopRoot {}

impl RootContext for NoopRoot {
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(NoopHttp))
    }
}

/// Keeps every default: `Continue` on headers, body and trailers in both directions.
struct NoopHttp;

impl Context for NoopHttp {}

impl HttpContext for NoopHttp {}
