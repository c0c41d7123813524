//! An Alertmanager webhook receiver for tests: it keeps every notification it is sent
//! (Alertmanager's webhook JSON: `status`, `alerts[].labels.alertname`, ...) so a test can wait
//! for an alert to fire and to resolve.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use tokio::sync::oneshot;

use crate::LaunchError;

type Received = Arc<Mutex<Vec<serde_json::Value>>>;

#[derive(Debug)]
pub struct WebhookReceiver {
    pub addr: SocketAddr,
    received: Received,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl WebhookReceiver {
    pub fn start() -> Result<Self, LaunchError> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
            .map_err(LaunchError::io("binding the webhook receiver"))?;
        listener
            .set_nonblocking(true)
            .map_err(LaunchError::io("configuring the webhook receiver socket"))?;
        let addr = listener
            .local_addr()
            .map_err(LaunchError::io("reading the webhook receiver address"))?;
        let received = Received::default();
        let app = Router::new()
            .route("/alerts", post(receive))
            .with_state(received.clone());
        let (shutdown, stopped) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(LaunchError::io("building the webhook receiver runtime"))?;
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)
                    .expect("a std listener converts to tokio inside a runtime");
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        Ok(Self {
            addr,
            received,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}/alerts", self.addr)
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
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn receive(
    State(received): State<Received>,
    Json(notification): Json<serde_json::Value>,
) -> StatusCode {
    received.lock().expect("webhook lock").push(notification);
    StatusCode::OK
}
