//! The shared state and the router, as values: tests drive [`app`] directly
//! (`tower::ServiceExt::oneshot`), the binary serves it.

use std::sync::Arc;

use axum::{
    routing::{delete, get, post},
    Router,
};
use tower_http::trace::TraceLayer;

use crate::{api, config::Config, overrides, pages, store::Store};

#[derive(Clone, Debug)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub pages: Arc<minijinja::Environment<'static>>,
    pub http: reqwest::Client,
}

impl AppState {
    /// Connects the store client (no request is made yet).
    pub fn new(config: Config) -> Result<Self, crate::store::StoreError> {
        let store = Store::new(&config.elasticsearch)?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_millis(1500))
            .no_proxy()
            .build()
            .map_err(|e| crate::store::StoreError::Client(e.to_string()))?;
        Ok(Self {
            config: Arc::new(config),
            store,
            pages: Arc::new(pages::environment()),
            http,
        })
    }

    /// Creates the console's indices and, at first start, the initial admin (whose
    /// generated password is returned, to be shown once).
    pub async fn prepare(&self) -> anyhow::Result<Option<String>> {
        self.store.ensure_indices().await?;
        crate::auth::ensure_initial_admin(self).await
    }
}

pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(api::readyz))
        .route("/api/login", post(api::login))
        .route("/api/logout", post(api::logout))
        .route("/api/me", get(api::me))
        .route("/api/users", post(api::create_user))
        .route("/api/audit", get(api::audit))
        .route("/api/overview", get(api::overview))
        .route("/api/log", get(api::log))
        .route("/api/log/export", get(api::export))
        .route("/api/verdicts/{id}", get(api::verdict))
        .route("/api/labels", get(api::labels).post(api::add_label))
        .route("/api/labels/bulk", post(api::add_labels_bulk))
        .route("/api/vetting", get(api::vetting))
        .route("/api/overrides", get(overrides::list).post(overrides::add))
        .route("/api/overrides/{id}", delete(overrides::delete))
        .route("/v1/overrides", get(overrides::feed_handler))
        .route("/overrides", get(overrides::page))
        .route("/api/domains/{domain}", get(api::domain))
        .route("/api/clients/{client}", get(api::client))
        .route("/", get(pages::root))
        .route("/login", get(pages::login))
        .route("/overview", get(pages::overview))
        .route("/log", get(pages::log))
        .route("/verdicts/{id}", get(pages::verdict))
        .route("/domains/{domain}", get(pages::domain))
        .route("/vetting", get(pages::vetting))
        .route("/clients/{client}", get(pages::client))
        .route("/static/{file}", get(pages::static_file))
        .route("/assets/{file}", get(pages::asset))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
