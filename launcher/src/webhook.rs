//! An Alertmanager webhook receiver for tests: it keeps every notification it is sent
//! (Alertmanager's webhook JSON: `status`, `alerts[].labels.alertname`, ...) so a test can wait
//! for an alert to fire and to resolve.

use std::sync::{Arc, Mutex};

use crate::background::BackgroundServer;
use crate::LaunchError;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};

type Received = Arc<Mutex<Vec<serde_json::Value>>>;

#[derive(Debug)]
pub struct WebhookReceiver {
    received: Received,
    server: BackgroundServer,
}

impl WebhookReceiver {
    pub fn start() -> Result<Self, LaunchError> {
        let received = Received::default();
        let app = Router::new()
            .route("/alerts", post(receive))
            .with_state(received.clone());
        let server = BackgroundServer::start("webhook receiver", app)?;
        Ok(Self { received, server })
    }

    pub fn url(&self) -> String {
        format!("http://{}/alerts", self.server.addr)
    }

    /// `(status, alertname)` of every alert in every notification so far, in arrival order.
    pub fn alerts(&self) -> Vec<(String, String)> {
        let received = self.received.lock().expect("webhook lock");
        received
            .iter()
            .flat_map(|n| n["alerts"].as_array().cloned().unwrap_or_default())
            .map(|a| {
                (
                    a["status"].as_str().unwrap_or("?").to_owned(),
                    a["labels"]["alertname"].as_str().unwrap_or("?").to_owned(),
                )
            })
            .collect()
    }

    /// `(status, annotations)` of every notified alert named `alertname`, in arrival order.
    pub fn annotations_of(&self, alertname: &str) -> Vec<(String, serde_json::Value)> {
        let received = self.received.lock().expect("webhook lock");
        received
            .iter()
            .flat_map(|n| n["alerts"].as_array().cloned().unwrap_or_default())
            .filter(|a| a["labels"]["alertname"] == alertname)
            .map(|a| {
                (
                    a["status"].as_str().unwrap_or("?").to_owned(),
                    a["annotations"].clone(),
                )
            })
            .collect()
    }
}

async fn receive(
    State(received): State<Received>,
    Json(notification): Json<serde_json::Value>,
) -> StatusCode {
    received.lock().expect("webhook lock").push(notification);
    StatusCode::OK
}
