//! The shared state and the router, as values: tests drive [`app`] directly
//! (`tower::ServiceExt::oneshot`), the binary serves it.

use std::sync::Arc;

use axum::{
    routing::{delete, get, post},
    Router,
};
use tower_http::trace::TraceLayer;

use crate::{account, api, config::Config, overrides, pages, store::Store, users};

#[derive(Clone, Debug)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub pages: Arc<minijinja::Environment<'static>>,
    pub http: reqwest::Client,
    /// The overview's minute cache (absent when `overview_cache.enabled` is off).
    pub overview_cache: Option<Arc<crate::overview_cache::OverviewCache>>,
    /// The retrain job slot (one at a time).
    pub retrain: crate::retrain::Jobs,
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
        let overview_cache = config.overview_cache.enabled.then(|| {
            Arc::new(crate::overview_cache::OverviewCache::new(
                config.overview_cache.clone(),
            ))
        });
        Ok(Self {
            overview_cache,
            config: Arc::new(config),
            store,
            pages: Arc::new(pages::environment()),
            http,
            retrain: Default::default(),
        })
    }

    /// Creates the console's indices and, at first start, the initial admin (whose
    /// generated password is returned, to be shown once).
    pub async fn prepare(&self) -> anyhow::Result<Option<String>> {
        self.store.ensure_indices().await?;
        crate::auth::ensure_initial_admin(self).await
    }

    /// Refreshes the overview's minute cache every `overview_cache.tick_s` (a failed refresh
    /// is logged and retried at the next tick; the overview meanwhile reads the documents).
    pub fn spawn_overview_cache(&self) -> Option<tokio::task::JoinHandle<()>> {
        let cache = self.overview_cache.clone()?;
        let store = self.store.clone();
        let tick = std::time::Duration::from_secs(cache.config().tick_s);
        Some(tokio::spawn(async move {
            loop {
                let started = std::time::Instant::now();
                let index = store.indices.verdicts.clone();
                match cache
                    .refresh(&store, &index, time::OffsetDateTime::now_utc())
                    .await
                {
                    Ok(r) if r.filled_minutes > 1 || r.refilled_minutes > 0 => {
                        tracing::info!(
                            ?r,
                            took_ms = started.elapsed().as_millis() as u64,
                            "overview cache refreshed"
                        )
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "overview cache refresh failed"),
                }
                tokio::time::sleep(tick).await;
            }
        }))
    }
}

pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(api::readyz))
        .route("/api/login", post(api::login))
        .route("/api/logout", post(api::logout))
        .route("/api/me", get(api::me))
        .route(
            "/api/users",
            post(api::create_user).get(account::list_users),
        )
        .route("/api/me/password", post(account::change_password))
        .route(
            "/api/users/{username}/password",
            post(account::reset_password),
        )
        .route("/api/users/{username}/disable", post(users::disable))
        .route("/api/users/{username}/enable", post(users::enable))
        .route("/account", get(account::page))
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
        .route("/api/cache/flush", post(overrides::flush_handler))
        .route("/v1/overrides", get(overrides::feed_handler))
        .route("/overrides", get(overrides::page))
        .route("/api/domains/{domain}", get(api::domain))
        .route("/api/clients/{client}", get(api::client))
        .merge(crate::retrain_api::routes())
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
