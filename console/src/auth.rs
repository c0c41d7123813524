//! Users, roles, passwords and sessions.
//!
//! - Roles are ordered: `viewer` (read) < `analyst` (label, override) < `admin` (users,
//!   models). [`Session::require`] refuses a lower role with 403.
//! - Passwords are stored as argon2id PHC strings (`argon2` defaults); a failed login costs
//!   the same hash whether or not the user exists.
//! - A session is a random 256-bit token in an `HttpOnly`, `SameSite=Strict` cookie (plus
//!   `Secure` when configured); the store keeps only its SHA-256 (`_id` in the sessions
//!   index), with the user, the role, the expiry and the session's CSRF token.
//! - CSRF: every state-changing request (any method but GET/HEAD) must carry the session's
//!   token in `x-csrf-token`; login itself only takes `application/json` (which a cross-site
//!   form cannot send) and the cookie is `SameSite=Strict`.

use argon2::{
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};
use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts, Method},
};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::{app::AppState, error::ApiError, store::StoreError, time_range::rfc3339};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "dohguard_session";
/// Header carrying the CSRF token on state-changing requests.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Shortest password accepted for a new user.
pub const MIN_PASSWORD_LEN: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Analyst,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// 1-64 characters of `a-z 0-9 . _ -`.
pub fn valid_username(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// `n` random bytes from the operating system, base64url without padding.
pub fn random_token(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).expect("the operating system's random source");
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters")
        .to_string()
}

/// Whether `password` matches the PHC string `hash` (false for an unreadable hash).
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A hash of a password nobody has, so a login for an unknown user costs the same.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&random_token(24)))
}

/// The stored id of a session token (its SHA-256, hex).
pub fn token_id(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A user document (`<prefix>-users`, `_id` = username).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub username: String,
    pub role: Role,
    pub password_hash: String,
    pub created_at: String,
    pub created_by: String,
    /// A disabled user cannot log in (their sessions were ended when they were disabled).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// Who last disabled or enabled the user, and when (absent for a user never changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_changed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_changed_by: Option<String>,
}

/// A session document (`<prefix>-sessions`, `_id` = SHA-256 of the cookie's token).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionDoc {
    pub username: String,
    pub role: Role,
    pub csrf_token: String,
    pub created_at: String,
    pub expires_at: String,
}

/// The logged-in user of a request; extracting it checks the session and, for
/// state-changing methods, the CSRF token.
#[derive(Debug, Clone)]
pub struct Session {
    pub username: String,
    pub role: Role,
    pub csrf_token: String,
    id: String,
}

impl Session {
    /// The stored id of this session (the SHA-256 of its token).
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn require(&self, needed: Role) -> Result<(), ApiError> {
        if self.role >= needed {
            Ok(())
        } else {
            Err(ApiError::Forbidden {
                needed,
                have: self.role,
            })
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(k, v)| (k == name).then_some(v))
}

impl FromRequestParts<AppState> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = cookie(parts, SESSION_COOKIE).ok_or(ApiError::NotLoggedIn)?;
        let id = token_id(token);
        let doc = state
            .store
            .get(&state.store.indices.sessions, &id)
            .await?
            .ok_or(ApiError::NotLoggedIn)?;
        let doc: SessionDoc = serde_json::from_value(doc)
            .map_err(|e| StoreError::Unreadable(format!("session document: {e}")))?;
        let expires = crate::time_range::parse_rfc3339(&doc.expires_at)
            .map_err(|e| StoreError::Unreadable(format!("session expiry: {e}")))?;
        if expires <= OffsetDateTime::now_utc() {
            state
                .store
                .delete(&state.store.indices.sessions, &id)
                .await?;
            return Err(ApiError::SessionExpired);
        }
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .map(|v| v.as_bytes())
                .unwrap_or_default();
            if !constant_time_eq(sent, doc.csrf_token.as_bytes()) {
                return Err(ApiError::Csrf);
            }
        }
        Ok(Session {
            username: doc.username,
            role: doc.role,
            csrf_token: doc.csrf_token,
            id,
        })
    }
}

/// A new session: the cookie token (given to the browser only) and the stored document.
#[derive(Debug)]
pub struct NewSession {
    pub token: String,
    pub doc: SessionDoc,
}

/// Checks the password and opens a session; `LoginFailed` for an unknown user or a wrong
/// password alike; `AccountDisabled` for the right password of a disabled user (said only
/// to whoever knows the password).
pub async fn login(
    state: &AppState,
    username: &str,
    password: &str,
) -> Result<NewSession, ApiError> {
    let user = match valid_username(username) {
        true => {
            state
                .store
                .get(&state.store.indices.users, username)
                .await?
        }
        false => None,
    };
    let user: Option<User> = user
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| StoreError::Unreadable(format!("user document: {e}")))?;
    let hash = user
        .as_ref()
        .map_or(dummy_hash(), |u| u.password_hash.as_str())
        .to_owned();
    let password = password.to_owned();
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let user = match (ok, user) {
        (true, Some(user)) if user.disabled => return Err(ApiError::AccountDisabled),
        (true, Some(user)) => user,
        _ => return Err(ApiError::LoginFailed),
    };
    let now = OffsetDateTime::now_utc();
    let expires = now + time::Duration::seconds(state.config.session.ttl_s as i64);
    let token = random_token(32);
    let doc = SessionDoc {
        username: user.username,
        role: user.role,
        csrf_token: random_token(32),
        created_at: rfc3339(now),
        expires_at: rfc3339(expires),
    };
    let stored = serde_json::to_value(&doc).expect("a session serialises");
    let id = token_id(&token);
    state
        .store
        .create(&state.store.indices.sessions, &id, &stored)
        .await?;
    // A disable that ran while the password was being checked: it either found this session
    // (and deleted it) or wrote the flag before this read, which then sees it.
    if disabled_now(state, &doc.username).await? {
        state
            .store
            .delete(&state.store.indices.sessions, &id)
            .await?;
        return Err(ApiError::AccountDisabled);
    }
    Ok(NewSession { token, doc })
}

/// Whether `username`'s stored document says disabled now.
async fn disabled_now(state: &AppState, username: &str) -> Result<bool, ApiError> {
    let doc = state
        .store
        .get(&state.store.indices.users, username)
        .await?;
    Ok(doc.is_some_and(|d| d["disabled"] == true))
}

pub async fn logout(state: &AppState, session: &Session) -> Result<(), ApiError> {
    state
        .store
        .delete(&state.store.indices.sessions, &session.id)
        .await?;
    Ok(())
}

/// The `Set-Cookie` value for a session token (`max_age_s` 0 clears it).
pub fn session_cookie(token: &str, max_age_s: u64, secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Stores a new user; `Ok(false)` when the name is taken.
pub async fn create_user(
    state: &AppState,
    username: &str,
    role: Role,
    password: &str,
    created_by: &str,
) -> Result<bool, ApiError> {
    if !valid_username(username) {
        return Err(ApiError::bad(
            "username",
            "1-64 characters of a-z, 0-9, '.', '_', '-'",
        ));
    }
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(ApiError::bad(
            "password",
            format!("at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    let password = password.to_owned();
    let password_hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| ApiError::BadRequest(format!("hashing failed: {e}")))?;
    let user = User {
        username: username.to_owned(),
        role,
        password_hash,
        created_at: rfc3339(OffsetDateTime::now_utc()),
        created_by: created_by.to_owned(),
        disabled: false,
        status_changed_at: None,
        status_changed_by: None,
    };
    let doc = serde_json::to_value(&user).expect("a user serialises");
    Ok(state
        .store
        .create(&state.store.indices.users, username, &doc)
        .await?)
}

/// At first start (no user named `admin.initial_user`): creates that admin with a generated
/// password, writes the password to `admin.password_file` (mode 0600) and returns it, to be
/// shown once. `None` when the user exists already.
pub async fn ensure_initial_admin(state: &AppState) -> anyhow::Result<Option<String>> {
    let name = &state.config.admin.initial_user;
    if state
        .store
        .get(&state.store.indices.users, name)
        .await?
        .is_some()
    {
        return Ok(None);
    }
    let password = random_token(18);
    if !create_user(state, name, Role::Admin, &password, "first-start").await? {
        return Ok(None); // another console instance won the race
    }
    write_secret(&state.config.admin.password_file, &password)?;
    crate::audit::record(
        state,
        "first-start",
        "user.create",
        "success",
        name,
        None,
        json!({"role": "admin"}),
    )
    .await?;
    Ok(Some(password))
}

/// Writes `secret` to `path` readable by the owner only (created 0600, never widened).
fn write_secret(path: &std::path::Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    writeln!(file, "{secret}")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_and_wrong_ones_do_not() {
        let h = hash_password("correct horse battery");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterY", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Admin > Role::Analyst && Role::Analyst > Role::Viewer);
    }

    #[test]
    fn usernames() {
        assert!(valid_username("alice.b-2"));
        assert!(!valid_username("Alice"));
        assert!(!valid_username(""));
        assert!(!valid_username("a b"));
    }

    #[test]
    fn the_cookie_is_http_only_and_strict() {
        let c = session_cookie("t", 60, true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("Secure"));
        assert!(!session_cookie("t", 60, false).contains("Secure"));
    }
}
