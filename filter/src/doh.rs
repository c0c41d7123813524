//! RFC 8484 request decoding: turns the HTTP method, path, content type and body of a request
//! into the DNS message bytes it carries, or into the 4xx the filter answers with. Pure
//! functions over plain values, so the glue only has to read headers and bodies.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

use crate::config::MAX_DNS_MESSAGE;

/// base64url without padding, as RFC 8484 asks ([`decode_get`] refuses padding before
/// decoding, with a clearer message).
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

pub const DNS_MESSAGE: &str = "application/dns-message";

/// An HTTP error answer: status and a one-line reason for the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u32,
    pub message: String,
}

impl Rejection {
    pub fn new(status: u32, message: impl Into<String>) -> Self {
        Rejection {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    pub fn too_large() -> Self {
        Self::new(
            413,
            format!("DNS message larger than {MAX_DNS_MESSAGE} bytes"),
        )
    }
}

/// What the request headers say about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestKind {
    /// Not on the DoH path: pass through untouched.
    NotDoh,
    /// A GET whose query string carried this DNS message.
    Get(Vec<u8>),
    /// A POST with the right content type: the message is in the body.
    Post,
}

/// Whether `path` (query string included) is on the DoH route. [`classify`] starts with this
/// check; the glue makes it first on its own so that other requests cost one header read.
pub fn is_doh_route(doh_path: &str, path: &str) -> bool {
    path.split_once('?').map_or(path, |(route, _)| route) == doh_path
}

/// Classifies a request from its headers (`path` includes the query string).
pub fn classify(
    doh_path: &str,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    content_length: Option<&str>,
) -> Result<RequestKind, Rejection> {
    if !is_doh_route(doh_path, path) {
        return Ok(RequestKind::NotDoh);
    }
    let query = path.split_once('?').map_or("", |(_, query)| query);
    match method {
        "GET" => decode_get(query).map(RequestKind::Get),
        "POST" => {
            check_content_type(content_type)?;
            if let Some(len) = content_length.and_then(|v| v.trim().parse::<u64>().ok()) {
                if len > MAX_DNS_MESSAGE as u64 {
                    return Err(Rejection::too_large());
                }
            }
            Ok(RequestKind::Post)
        }
        other => Err(Rejection::new(
            405,
            format!("method {other} not allowed: use GET or POST"),
        )),
    }
}

fn check_content_type(content_type: Option<&str>) -> Result<(), Rejection> {
    let essence = content_type
        .map(|v| v.split(';').next().unwrap_or("").trim())
        .unwrap_or("");
    if essence.eq_ignore_ascii_case(DNS_MESSAGE) {
        Ok(())
    } else if essence.is_empty() {
        Err(Rejection::new(
            415,
            format!("content-type missing: use {DNS_MESSAGE}"),
        ))
    } else {
        Err(Rejection::new(
            415,
            format!("content-type {essence} not supported: use {DNS_MESSAGE}"),
        ))
    }
}

/// Decodes the query string of a GET. It must be exactly `dns=<base64url>` (no padding, no
/// other parameter, no second `dns=`): Envoy forwards the original `:path`, and the upstream
/// decodes the query string its own way, so anything beyond the one checked parameter could
/// carry a message the filter never saw.
pub fn decode_get(query: &str) -> Result<Vec<u8>, Rejection> {
    let value = query
        .strip_prefix("dns=")
        .ok_or_else(|| Rejection::bad_request("query string must be exactly dns=<base64url>"))?;
    if value.is_empty() {
        return Err(Rejection::bad_request("empty dns query parameter"));
    }
    // Decoded size is 3/4 of the text: reject oversized input before allocating for it.
    if value.len() / 4 * 3 > MAX_DNS_MESSAGE {
        return Err(Rejection::too_large());
    }
    if let Some(b) = value
        .bytes()
        .find(|&b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    {
        let what = match b {
            b'&' => "a second query parameter".to_owned(),
            b'=' => "base64 padding".to_owned(),
            other => format!("byte 0x{other:02x}"),
        };
        return Err(Rejection::bad_request(format!(
            "dns parameter is not unpadded base64url: it holds {what}"
        )));
    }
    let bytes = BASE64URL
        .decode(value)
        .map_err(|err| Rejection::bad_request(format!("dns parameter is not base64url: {err}")))?;
    if bytes.len() > MAX_DNS_MESSAGE {
        return Err(Rejection::too_large());
    }
    Ok(bytes)
}

/// Checks a POST body once it is complete (or as soon as it grows too large).
pub fn check_body_size(size: usize) -> Result<(), Rejection> {
    if size > MAX_DNS_MESSAGE {
        Err(Rejection::too_large())
    } else if size == 0 {
        Err(Rejection::bad_request("empty body: expected a DNS message"))
    } else {
        Ok(())
    }
}

/// Encodes a DNS message for a GET request (used by tests, benchmarks and the fuzz target).
pub fn encode_get_param(message: &[u8]) -> String {
    BASE64URL.encode(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify_get(path: &str) -> Result<RequestKind, Rejection> {
        classify("/dns-query", "GET", path, None, None)
    }

    #[test]
    fn other_paths_pass_through() {
        assert_eq!(classify_get("/").unwrap(), RequestKind::NotDoh);
        assert_eq!(
            classify_get("/dns-query/x?dns=AA").unwrap(),
            RequestKind::NotDoh
        );
        assert_eq!(
            classify("/dns-query", "DELETE", "/health", None, None).unwrap(),
            RequestKind::NotDoh
        );
    }

    #[test]
    fn get_decodes_base64url_with_or_without_padding() {
        let msg = vec![0xfb, 0xff, 0x00, 0x01];
        let enc = encode_get_param(&msg);
        assert_eq!(enc, "-_8AAQ");
        assert_eq!(
            classify_get(&format!("/dns-query?dns={enc}")).unwrap(),
            RequestKind::Get(msg.clone())
        );
        assert_eq!(
            classify_get(&format!("/dns-query?dns={enc}")).unwrap(),
            RequestKind::Get(msg)
        );
    }

    #[test]
    fn get_query_string_must_be_exactly_one_dns_parameter() {
        // Each of these would let the upstream read a message other than the one decided.
        for (path, needle) in [
            ("/dns-query?ct=x&dns=-_8AAQ", "exactly dns="),
            ("/dns-query?dns=-_8AAQ&dns=AAAA", "second query parameter"),
            ("/dns-query?dns=-_8AAQ&ct=x", "second query parameter"),
            ("/dns-query?dns=-_8AAQ==", "padding"),
            ("/dns-query?dns=-_8A%41Q", "0x25"),
            ("/dns-query?dns=-_8A+AQ", "0x2b"),
            ("/dns-query?dns=-_8A/AQ", "0x2f"),
        ] {
            let err = classify_get(path).unwrap_err();
            assert_eq!(err.status, 400, "{path}");
            assert!(err.message.contains(needle), "{path}: {}", err.message);
        }
    }

    #[test]
    fn get_errors_are_400_or_413() {
        assert_eq!(classify_get("/dns-query").unwrap_err().status, 400);
        assert_eq!(classify_get("/dns-query?").unwrap_err().status, 400);
        assert_eq!(classify_get("/dns-query?dns=").unwrap_err().status, 400);
        let bad = classify_get("/dns-query?dns=not*base64").unwrap_err();
        assert_eq!(bad.status, 400);
        assert!(bad.message.contains("base64url"), "{}", bad.message);
        let huge = format!("/dns-query?dns={}", "A".repeat(90_000));
        assert_eq!(classify_get(&huge).unwrap_err().status, 413);
    }

    #[test]
    fn post_needs_dns_message_content_type() {
        let ok = classify(
            "/dns-query",
            "POST",
            "/dns-query",
            Some("Application/DNS-Message; x=1"),
            None,
        );
        assert_eq!(ok.unwrap(), RequestKind::Post);
        let wrong =
            classify("/dns-query", "POST", "/dns-query", Some("text/plain"), None).unwrap_err();
        assert_eq!(wrong.status, 415);
        assert!(wrong.message.contains("text/plain"));
        assert_eq!(
            classify("/dns-query", "POST", "/dns-query", None, None)
                .unwrap_err()
                .status,
            415
        );
        let big = classify(
            "/dns-query",
            "POST",
            "/dns-query",
            Some(DNS_MESSAGE),
            Some("65536"),
        );
        assert_eq!(big.unwrap_err().status, 413);
    }

    #[test]
    fn other_methods_are_405() {
        for m in ["PUT", "DELETE", "HEAD", "PATCH"] {
            assert_eq!(
                classify("/dns-query", m, "/dns-query", None, None)
                    .unwrap_err()
                    .status,
                405
            );
        }
    }

    #[test]
    fn body_size_limits() {
        assert_eq!(check_body_size(0).unwrap_err().status, 400);
        assert!(check_body_size(12).is_ok());
        assert!(check_body_size(65_535).is_ok());
        assert_eq!(check_body_size(65_536).unwrap_err().status, 413);
    }
}

/// The client IP from Envoy's `source.address` property (`192.0.2.7:5353`, `[2001:db8::1]:443`).
pub fn client_ip(address: &str) -> Option<String> {
    let host = if let Some(rest) = address.strip_prefix('[') {
        rest.split_once(']')?.0
    } else if address.matches(':').count() == 1 {
        address.split_once(':')?.0
    } else {
        address
    };
    host.parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| ip.to_string())
}

#[cfg(test)]
mod client_tests {
    use super::client_ip;

    #[test]
    fn strips_the_port() {
        assert_eq!(client_ip("192.0.2.7:5353").as_deref(), Some("192.0.2.7"));
        assert_eq!(
            client_ip("[2001:db8::1]:443").as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(client_ip("2001:db8::1").as_deref(), Some("2001:db8::1"));
        assert_eq!(client_ip("192.0.2.7").as_deref(), Some("192.0.2.7"));
        assert_eq!(client_ip("unix:/tmp/x"), None);
    }
}
