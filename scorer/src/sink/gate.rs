//! Whether Elasticsearch lets the sink in: the *auth failed* state (a whole request refused
//! with 401/403: counted, logged once, left when a request goes through), the index template
//! (a refusal other than 401 is counted and does not stop delivery), and the probe the
//! replayer runs before coming back (re-reading the credential file while it is refused).

use std::sync::atomic::Ordering;

use super::{bulk::Probe, EsClient, Shared, SinkError};

/// A whole request refused with 401/403: counted every time, logged once per streak.
pub(super) fn auth_refused(shared: &Shared, es: &EsClient, status: u16, reason: &str) {
    shared.metrics.sink.auth_failures.inc();
    shared.metrics.sink_auth_failed.set(1);
    shared.live.store(false, Ordering::SeqCst);
    if !shared.auth_failed.swap(true, Ordering::SeqCst) {
        tracing::error!(url = es.url(), status, %reason, "Elasticsearch refused the credential: delivery stopped, verdicts kept in the spool; it resumes by itself once the credential works (a key or password file is re-read every replay interval)");
    }
}

/// The credential works again (a request went through).
pub(super) fn auth_ok(shared: &Shared, es: &EsClient) {
    if shared.auth_failed.swap(false, Ordering::SeqCst) {
        shared.metrics.sink_auth_failed.set(0);
        tracing::info!(
            url = es.url(),
            "Elasticsearch accepts the credential again: delivery resumes"
        );
    }
}

/// Installs the template. A refusal other than 401 (a least-privilege key) is counted and
/// logged and does not stop delivery; 401 or no answer does (the caller retries later).
pub(super) async fn ensure_template(shared: &Shared, es: &EsClient) -> Result<(), SinkError> {
    match es.install_template().await {
        Ok(()) => {
            if shared.template_refused.swap(false, Ordering::SeqCst) {
                tracing::info!(url = es.url(), "index template installed");
            }
            Ok(())
        }
        Err(SinkError::Template(reason)) => {
            shared.metrics.sink.template_failures.inc();
            if !shared.template_refused.swap(true, Ordering::SeqCst) {
                tracing::warn!(url = es.url(), %reason, template = %shared.config.template_name, "index template not installed (refused); delivering without it: install it out of band or grant manage_index_templates");
            }
            Ok(())
        }
        Err(SinkError::Unauthorized { status, reason }) => {
            auth_refused(shared, es, status, &reason);
            Err(SinkError::Unauthorized { status, reason })
        }
        Err(e) => Err(e),
    }
}

/// Before replaying after an outage or a refusal: re-reads the credential when it was
/// refused, probes, and (re)installs the template (the server may be a fresh one).
pub(super) async fn come_back(shared: &Shared, es: &EsClient) -> bool {
    if shared.auth_failed.load(Ordering::SeqCst) {
        if let Some(credential) = es.credential() {
            match credential.reload() {
                Ok(true) => tracing::info!(
                    kind = credential.kind(),
                    "credential re-read: it changed; trying it"
                ),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "re-reading the credential failed; keeping the previous one")
                }
            }
        }
    }
    match es.probe().await {
        Probe::Up => {}
        Probe::Refused(r) => {
            auth_refused(shared, es, r.status, &r.reason);
            return false;
        }
        Probe::Down(_) => return false,
    }
    match ensure_template(shared, es).await {
        Ok(()) => true,
        Err(SinkError::Unauthorized { .. }) => false,
        Err(e) => {
            tracing::warn!(error = %e, "template not installed yet; will retry");
            false
        }
    }
}
