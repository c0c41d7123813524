//! Server-rendered pages (minijinja templates compiled into the binary) and the static
//! files. Pages read data through the same functions as the JSON API; scripts
//! (`static/app.js`) only draw the chart, log in, and post labels with the CSRF token. The
//! chart library (uPlot) is served from the assets folder that set-up fills with `npm ci`:
//! nothing is fetched from elsewhere at run time.

use std::collections::BTreeMap;

use axum::{
    extract::{Path, Query, State},
    http::{header, StatusCode},
    response::{Html, IntoResponse, Redirect, Response},
};
use minijinja::{context, Environment};

use crate::{api, app::AppState, auth::Session, error::ApiError, time_range::PRESETS};

pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    for (name, source) in [
        ("base.html", include_str!("../templates/base.html")),
        ("login.html", include_str!("../templates/login.html")),
        ("overview.html", include_str!("../templates/overview.html")),
        ("log.html", include_str!("../templates/log.html")),
        ("verdict.html", include_str!("../templates/verdict.html")),
        ("error.html", include_str!("../templates/error.html")),
        ("domain.html", include_str!("../templates/domain.html")),
        ("client.html", include_str!("../templates/client.html")),
        ("vetting.html", include_str!("../templates/vetting.html")),
        ("account.html", include_str!("../templates/account.html")),
        ("models.html", include_str!("../templates/models.html")),
        (
            "overrides.html",
            include_str!("../templates/overrides.html"),
        ),
    ] {
        env.add_template(name, source)
            .expect("the console's templates parse");
    }
    env
}

pub(crate) fn render(state: &AppState, name: &str, ctx: minijinja::Value) -> Response {
    match state.pages.get_template(name).and_then(|t| t.render(ctx)) {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, template = name, "rendering failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "page rendering failed").into_response()
        }
    }
}

/// A page's answer to an error: to the login page when there is no valid session, else
/// the error page with the same message the API gives.
pub(crate) fn page_error(state: &AppState, session: Option<&Session>, e: ApiError) -> Response {
    match e {
        ApiError::NotLoggedIn => Redirect::to("/login").into_response(),
        ApiError::SessionExpired => Redirect::to("/login?expired=1").into_response(),
        other => {
            let status = other.status();
            let mut r = render(
                state,
                "error.html",
                context! { user => session.map(|s| s.username.clone()), role => session.map(|s| s.role.as_str()),
                csrf => session.map(|s| s.csrf_token.clone()),
                title => "Error", status => status.as_u16(), detail => other.to_string() },
            );
            *r.status_mut() = status;
            r
        }
    }
}

type Params = Query<BTreeMap<String, String>>;

pub async fn root() -> Redirect {
    Redirect::to("/overview")
}

pub async fn login(State(state): State<AppState>, Query(q): Params) -> Response {
    render(
        &state,
        "login.html",
        context! { title => "Log in", expired => q.contains_key("expired") },
    )
}

pub async fn overview(
    State(state): State<AppState>,
    session: Result<Session, ApiError>,
    Query(q): Params,
) -> Response {
    let session = match session {
        Ok(s) => s,
        Err(e) => return page_error(&state, None, e),
    };
    match api::overview_data(&state, &q).await {
        Ok((filter, data)) => render(
            &state,
            "overview.html",
            context! {
                title => "Overview", user => &session.username, role => session.role.as_str(), csrf => &session.csrf_token,
                data => minijinja::Value::from_serialize(&data),
                timeline_json => serde_json::to_string(&data.timeline).expect("serialises"),
                presets => PRESETS.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
                range => filter.to_query().into_iter().find(|(k, _)| *k == "range").map(|(_, v)| v),
                log_href => filter.link(&[]),
            },
        ),
        Err(e) => page_error(&state, Some(&session), e),
    }
}

pub async fn log(
    State(state): State<AppState>,
    session: Result<Session, ApiError>,
    Query(q): Params,
) -> Response {
    let session = match session {
        Ok(s) => s,
        Err(e) => return page_error(&state, None, e),
    };
    match api::log_page(&state, &q).await {
        Ok((filter, page)) => {
            let export = crate::query_log::encode_query(&filter.to_query());
            render(
                &state,
                "log.html",
                context! {
                    title => "Query log", user => &session.username, role => session.role.as_str(), csrf => &session.csrf_token,
                    page => minijinja::Value::from_serialize(&page), q => &q, export_query => export,
                    presets => PRESETS.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
                },
            )
        }
        // Bad filter input: the form again, with the message and the field marked.
        Err(ApiError::BadInput { field, detail }) => {
            let message = ApiError::bad(field.clone(), detail).to_string();
            let mut r = render(
                &state,
                "log.html",
                context! {
                    title => "Query log", user => &session.username, role => session.role.as_str(), csrf => &session.csrf_token,
                    page => context! { total => "–", rows => Vec::<()>::new() }, q => &q, export_query => "",
                    presets => PRESETS.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
                    problem => message, problem_field => field,
                },
            );
            *r.status_mut() = StatusCode::BAD_REQUEST;
            r
        }
        Err(e) => page_error(&state, Some(&session), e),
    }
}

pub async fn verdict(
    State(state): State<AppState>,
    session: Result<Session, ApiError>,
    Path(id): Path<String>,
) -> Response {
    let session = match session {
        Ok(s) => s,
        Err(e) => return page_error(&state, None, e),
    };
    match api::verdict_data(&state, &id).await {
        Ok(data) => render(
            &state,
            "verdict.html",
            context! {
                title => "Why this verdict", user => &session.username, role => session.role.as_str(), csrf => &session.csrf_token,
                can_label => session.role >= crate::auth::Role::Analyst,
                v => minijinja::Value::from_serialize(&data),
                document_json => serde_json::to_string_pretty(&data["document"]).expect("serialises"),
            },
        ),
        Err(e) => page_error(&state, Some(&session), e),
    }
}

pub async fn domain(
    State(state): State<AppState>,
    session: Result<Session, ApiError>,
    Path(domain): Path<String>,
    Query(q): Params,
) -> Response {
    let session = match session {
        Ok(s) => s,
        Err(e) => return page_error(&state, None, e),
    };
    match api::domain_data(&state, &domain, &q).await {
        Ok(view) => render(
            &state,
            "domain.html",
            context! {
                title => format!("Domain {}", view.domain), user => &session.username, role => session.role.as_str(), csrf => &session.csrf_token,
                can_label => session.role >= crate::auth::Role::Analyst,
                d => minijinja::Value::from_serialize(&view),
                timeline_json => serde_json::to_string(&view.timeline).expect("serialises"),
                presets => PRESETS.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
                range => q.get("range").cloned().unwrap_or_else(|| "24h".into()),
            },
        ),
        Err(e) => page_error(&state, Some(&session), e),
    }
}

pub async fn client(
    State(state): State<AppState>,
    session: Result<Session, ApiError>,
    Path(client): Path<String>,
    Query(q): Params,
) -> Response {
    let session = match session {
        Ok(s) => s,
        Err(e) => return page_error(&state, None, e),
    };
    match api::client_data(&state, &client, &q).await {
        Ok(view) => render(
            &state,
            "client.html",
            context! {
                title => format!("Client {}", view.client), user => &session.username, role => session.role.as_str(), csrf => &session.csrf_token,
                c => minijinja::Value::from_serialize(&view),
                timeline_json => serde_json::to_string(&view.timeline).expect("serialises"),
                risk_json => serde_json::to_string(&view.risk).expect("serialises"),
                presets => PRESETS.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
                range => q.get("range").cloned().unwrap_or_else(|| "24h".into()),
            },
        ),
        Err(e) => page_error(&state, Some(&session), e),
    }
}

pub async fn vetting(
    State(state): State<AppState>,
    session: Result<Session, ApiError>,
    Query(q): Params,
) -> Response {
    let session = match session {
        Ok(s) => s,
        Err(e) => return page_error(&state, None, e),
    };
    match api::vetting_data(&state, &q).await {
        Ok(items) => render(
            &state,
            "vetting.html",
            context! {
                title => "Vetting queue", user => &session.username, role => session.role.as_str(), csrf => &session.csrf_token,
                can_label => session.role >= crate::auth::Role::Analyst,
                items => minijinja::Value::from_serialize(&items),
                presets => PRESETS.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
                range => q.get("range").cloned().unwrap_or_else(|| "7d".into()),
            },
        ),
        Err(e) => page_error(&state, Some(&session), e),
    }
}

/// The console's own script and style sheet (compiled in).
pub async fn static_file(Path(file): Path<String>) -> Response {
    let (body, content_type) = match file.as_str() {
        "app.js" => (
            include_str!("../static/app.js"),
            "text/javascript; charset=utf-8",
        ),
        "overrides.js" => (
            include_str!("../static/overrides.js"),
            "text/javascript; charset=utf-8",
        ),
        "style.css" => (
            include_str!("../static/style.css"),
            "text/css; charset=utf-8",
        ),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Third-party assets installed by set-up (`npm ci` in `console/web`); only the files
/// listed here are served.
pub async fn asset(State(state): State<AppState>, Path(file): Path<String>) -> Response {
    let (path, content_type) = match file.as_str() {
        "uPlot.iife.min.js" => (
            "uplot/dist/uPlot.iife.min.js",
            "text/javascript; charset=utf-8",
        ),
        "uPlot.min.css" => ("uplot/dist/uPlot.min.css", "text/css; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let full = state.config.assets_dir.join(path);
    match tokio::fs::read(&full).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, content_type)], bytes).into_response(),
        Err(e) => {
            tracing::warn!(path = %full.display(), error = %e, "asset missing: run scripts/setup.sh (npm ci in console/web)");
            (StatusCode::NOT_FOUND, "asset missing: run scripts/setup.sh").into_response()
        }
    }
}
