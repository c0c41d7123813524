//! An axum router served in the launcher's own process, for the parts tests stand in for (the
//! stand-in scorer, the Alertmanager webhook receiver): 127.0.0.1 on an ephemeral port, a
//! thread with its own Tokio runtime, shut down gracefully and joined when the handle drops.

use std::net::SocketAddr;
use std::thread::JoinHandle;

use axum::Router;
use tokio::sync::oneshot;

use crate::LaunchError;

#[derive(Debug)]
pub struct BackgroundServer {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl BackgroundServer {
    /// Serves `app`; `what` names the server in errors.
    pub fn start(what: &str, app: Router) -> Result<Self, LaunchError> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
            .map_err(LaunchError::io(format!("binding the {what}")))?;
        listener
            .set_nonblocking(true)
            .map_err(LaunchError::io(format!("configuring the {what} socket")))?;
        let addr = listener
            .local_addr()
            .map_err(LaunchError::io(format!("reading the {what} address")))?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(LaunchError::io(format!("building the {what} runtime")))?;
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
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
