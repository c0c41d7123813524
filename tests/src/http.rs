//! A small blocking HTTP/1.1 client (ureq) for readiness probes, Envoy's admin interface and
//! the Elasticsearch API. Non-2xx answers are returned as responses, not errors, so callers
//! can assert on the status.

use std::time::Duration;

use crate::LaunchError;

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// GET `url`; returns the status and the body as text.
pub fn get_text(url: &str) -> Result<(u16, String), LaunchError> {
    let fail = |e: ureq::Error| LaunchError::Http {
        url: url.to_owned(),
        message: e.to_string(),
    };
    let mut response = agent().get(url).call().map_err(fail)?;
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().map_err(fail)?;
    Ok((status, body))
}

/// GET `url` with query parameters (encoded by ureq); returns the status and the body as text.
pub fn get_text_with_query(
    url: &str,
    query: &[(&str, &str)],
) -> Result<(u16, String), LaunchError> {
    let fail = |e: ureq::Error| LaunchError::Http {
        url: url.to_owned(),
        message: e.to_string(),
    };
    let mut response = agent()
        .get(url)
        .query_pairs(query.iter().copied())
        .call()
        .map_err(fail)?;
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().map_err(fail)?;
    Ok((status, body))
}

/// POST a JSON body to `url`; returns the status and the reply parsed as JSON, or as a JSON
/// string holding the raw text when the reply is not JSON (error pages).
pub fn post_json(
    url: &str,
    body: &serde_json::Value,
) -> Result<(u16, serde_json::Value), LaunchError> {
    let fail = |e: ureq::Error| LaunchError::Http {
        url: url.to_owned(),
        message: e.to_string(),
    };
    let mut response = agent().post(url).send_json(body).map_err(fail)?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().map_err(fail)?;
    let value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    Ok((status, value))
}
