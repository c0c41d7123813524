//! Credentials for a secured Elasticsearch: an API key, or basic auth, each read from a file
//! or from one environment variable, never from the configuration text or the command line.
//!
//! [`Credential::load`] turns the configuration into the `Authorization` header value sent with
//! every request (marked sensitive, so the HTTP stack never logs it). A file-based secret is
//! re-read by [`Credential::reload`]: the sink calls it while Elasticsearch refuses the
//! credential, so rewriting the key file fixes a revoked or expired key without a restart.
//! Errors name the configuration key and never contain the secret; [`Secret`]'s `Debug`
//! prints `[redacted]`.

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use elasticsearch::http::headers::HeaderValue;
use thiserror::Error;

use crate::config::{ElasticsearchConfig, ENV_PREFIX};

/// Environment variable holding an API key (read as is: not parsed by the config layers).
pub const API_KEY_ENV: &str = "DOHGUARD_SCORER_ELASTICSEARCH__API_KEY";
/// Environment variable holding the basic-auth password.
pub const PASSWORD_ENV: &str = "DOHGUARD_SCORER_ELASTICSEARCH__PASSWORD";

/// The keys of [`API_KEY_ENV`] and [`PASSWORD_ENV`] as the config loader sees them (after the
/// prefix), so it leaves them alone.
pub fn env_keys_to_ignore() -> [&'static str; 2] {
    [
        &API_KEY_ENV[ENV_PREFIX.len()..],
        &PASSWORD_ENV[ENV_PREFIX.len()..],
    ]
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("scorer: configuration {key}: {problem}")]
pub struct AuthError {
    pub key: &'static str,
    pub problem: String,
}

fn problem(key: &'static str, problem: impl Into<String>) -> AuthError {
    AuthError {
        key,
        problem: problem.into(),
    }
}

/// A secret string: `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    File {
        key: &'static str,
        path: PathBuf,
    },
    Env {
        key: &'static str,
        var: &'static str,
    },
}

impl Source {
    fn key(&self) -> &'static str {
        match self {
            Self::File { key, .. } | Self::Env { key, .. } => key,
        }
    }

    fn read(&self) -> Result<Secret, AuthError> {
        let raw = match self {
            Self::File { key, path } => std::fs::read_to_string(path)
                .map_err(|e| problem(key, format!("reading {}: {e}", path.display())))?,
            Self::Env { key, var } => std::env::var(var)
                .map_err(|_| problem(key, format!("{var} is not set or not UTF-8")))?,
        };
        // A trailing newline is what editors and `echo` leave; anything else is kept as is.
        let value = raw.trim_end_matches(['\n', '\r']);
        if value.is_empty() {
            return Err(problem(self.key(), "the secret is empty"));
        }
        if value.chars().any(char::is_control) {
            return Err(problem(
                self.key(),
                "the secret contains a control character (more than one line?)",
            ));
        }
        Ok(Secret::new(value))
    }
}

/// How the sink authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scheme {
    /// `ApiKey <base64>`: the file or variable holds the encoded key Elasticsearch returns
    /// (`encoded`), or `id:api_key`.
    ApiKey(Source),
    /// `Basic <base64(username:password)>`.
    Basic { username: String, password: Source },
}

/// The credential the sink sends, reloadable from its file.
#[derive(Debug)]
pub struct Credential {
    scheme: Scheme,
    header: Mutex<HeaderValue>,
}

impl Credential {
    /// Reads the credential the configuration names, if any. Errors name the key; a
    /// credential on a cleartext `http://` URL to another host is refused.
    pub fn load(config: &ElasticsearchConfig) -> Result<Option<Self>, AuthError> {
        let Some(scheme) = scheme(config, |var| std::env::var_os(var).is_some())? else {
            return Ok(None);
        };
        if let Some(url) = &config.url {
            if !url_may_carry_credentials(url) {
                return Err(problem(
                    "elasticsearch.url",
                    "a credential would travel in clear: http:// to a non-loopback host; \
                     use https://",
                ));
            }
        }
        let header = header_for(&scheme)?;
        Ok(Some(Self {
            scheme,
            header: Mutex::new(header),
        }))
    }

    /// The `Authorization` header value (marked sensitive).
    pub fn header(&self) -> HeaderValue {
        self.header.lock().expect("credential lock").clone()
    }

    /// Re-reads a file-based secret; `Ok(true)` when it changed. An environment variable
    /// cannot change under a running process, so those never do.
    pub fn reload(&self) -> Result<bool, AuthError> {
        let new = header_for(&self.scheme)?;
        let mut current = self.header.lock().expect("credential lock");
        if new.as_bytes() == current.as_bytes() {
            return Ok(false);
        }
        *current = new;
        Ok(true)
    }

    /// What kind of credential this is, for logs: `api_key` or `basic`.
    pub fn kind(&self) -> &'static str {
        match self.scheme {
            Scheme::ApiKey(_) => "api_key",
            Scheme::Basic { .. } => "basic",
        }
    }
}

/// Picks the scheme from the configuration (`env_set` says which variables exist): at most
/// one of an API key and basic auth, and each secret from exactly one place.
fn scheme(
    config: &ElasticsearchConfig,
    env_set: impl Fn(&str) -> bool,
) -> Result<Option<Scheme>, AuthError> {
    let api_key = one_source(
        "elasticsearch.api_key_file",
        config.api_key_file.as_deref(),
        API_KEY_ENV,
        env_set(API_KEY_ENV),
    )?;
    let password = one_source(
        "elasticsearch.password_file",
        config.password_file.as_deref(),
        PASSWORD_ENV,
        env_set(PASSWORD_ENV),
    )?;
    match (api_key, config.username.as_deref(), password) {
        (None, None, None) => Ok(None),
        (Some(source), None, None) => Ok(Some(Scheme::ApiKey(source))),
        (Some(_), _, _) => Err(problem(
            "elasticsearch.api_key_file",
            "an API key and basic auth (username/password) are both configured; choose one",
        )),
        (None, Some(username), Some(password)) => {
            let bad = |c: char| c == ':' || c.is_control();
            if username.is_empty() || username.contains(bad) {
                return Err(problem(
                    "elasticsearch.username",
                    "must be non-empty, without ':' or control characters",
                ));
            }
            Ok(Some(Scheme::Basic {
                username: username.to_owned(),
                password,
            }))
        }
        (None, Some(_), None) => Err(problem(
            "elasticsearch.password_file",
            format!("username is set but no password: set it or {PASSWORD_ENV}"),
        )),
        (None, None, Some(_)) => Err(problem(
            "elasticsearch.username",
            "a password is configured but no username",
        )),
    }
}

fn one_source(
    key: &'static str,
    file: Option<&Path>,
    var: &'static str,
    env_set: bool,
) -> Result<Option<Source>, AuthError> {
    match (file, env_set) {
        (Some(_), true) => Err(problem(
            key,
            format!("both the file and {var} are set; choose one"),
        )),
        (Some(path), false) => Ok(Some(Source::File {
            key,
            path: path.to_owned(),
        })),
        // Errors about an environment variable name the variable.
        (None, true) => Ok(Some(Source::Env { key: var, var })),
        (None, false) => Ok(None),
    }
}

fn header_for(scheme: &Scheme) -> Result<HeaderValue, AuthError> {
    let (key, text) = match scheme {
        Scheme::ApiKey(source) => (source.key(), api_key_header(source.read()?.expose())),
        Scheme::Basic { username, password } => (
            password.key(),
            Some(basic_header(username, password.read()?.expose())),
        ),
    };
    let text = text.ok_or_else(|| {
        problem(
            key,
            "not an API key: expected the base64 `encoded` value or `id:api_key`",
        )
    })?;
    let mut value = HeaderValue::from_str(&text)
        .map_err(|_| problem(key, "the secret cannot be sent in an HTTP header"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// `ApiKey <encoded>` from either form Elasticsearch hands out: `id:api_key` is encoded here,
/// an already encoded key (base64 characters only) is used as is.
pub fn api_key_header(key: &str) -> Option<String> {
    if key.contains(':') {
        return Some(format!("ApiKey {}", STANDARD.encode(key)));
    }
    let base64_chars = key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_'));
    (base64_chars && !key.is_empty()).then(|| format!("ApiKey {key}"))
}

/// `Basic <base64(username:password)>`.
pub fn basic_header(username: &str, password: &str) -> String {
    format!(
        "Basic {}",
        STANDARD.encode(format!("{username}:{password}"))
    )
}

/// Cleartext http:// may carry a credential only to this host (loopback).
fn url_may_carry_credentials(url: &str) -> bool {
    let Ok(parsed) = url.parse::<elasticsearch::http::Url>() else {
        return true; // the URL's own validation reports it
    };
    if parsed.scheme() != "http" {
        return true;
    }
    match parsed.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ElasticsearchConfig {
        ElasticsearchConfig {
            url: Some("https://es.example:9200".into()),
            ..ElasticsearchConfig::default()
        }
    }

    #[test]
    fn api_key_forms() {
        assert_eq!(
            api_key_header("id1:secret").unwrap(),
            format!("ApiKey {}", STANDARD.encode("id1:secret"))
        );
        assert_eq!(
            api_key_header("aWQxOnNlY3JldA==").unwrap(),
            "ApiKey aWQxOnNlY3JldA=="
        );
        assert_eq!(api_key_header("not base64!"), None);
        assert_eq!(
            basic_header("u", "p"),
            format!("Basic {}", STANDARD.encode("u:p"))
        );
    }

    #[test]
    fn one_scheme_and_one_source_each() {
        let none = |_: &str| false;
        assert_eq!(scheme(&config(), none).unwrap(), None);

        let mut c = config();
        c.api_key_file = Some("/k".into());
        c.username = Some("u".into());
        assert_eq!(
            scheme(&c, none).unwrap_err().key,
            "elasticsearch.api_key_file"
        );

        let mut c = config();
        c.api_key_file = Some("/k".into());
        let err = scheme(&c, |v| v == API_KEY_ENV).unwrap_err();
        assert!(err.problem.contains(API_KEY_ENV), "{err}");

        let mut c = config();
        c.username = Some("u".into());
        assert_eq!(
            scheme(&c, none).unwrap_err().key,
            "elasticsearch.password_file"
        );
        assert!(matches!(
            scheme(&c, |v| v == PASSWORD_ENV).unwrap(),
            Some(Scheme::Basic { .. })
        ));

        let mut c = config();
        c.password_file = Some("/p".into());
        assert_eq!(scheme(&c, none).unwrap_err().key, "elasticsearch.username");
    }

    #[test]
    fn file_secrets_reload_and_are_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "kid:first-secret\n").unwrap();
        let mut c = config();
        c.api_key_file = Some(path.clone());
        let cred = Credential::load(&c).unwrap().unwrap();
        assert_eq!(
            cred.header().to_str().unwrap(),
            format!("ApiKey {}", STANDARD.encode("kid:first-secret"))
        );
        assert!(cred.header().is_sensitive());
        assert!(!format!("{cred:?}").contains("first-secret"));
        assert!(!format!("{:?}", Secret::new("first-secret")).contains("first-secret"));
        assert!(!cred.reload().unwrap(), "unchanged");
        std::fs::write(&path, "kid:second-secret").unwrap();
        assert!(cred.reload().unwrap(), "changed");
        assert!(!format!("{cred:?}").contains("second-secret"));

        // A bad secret: the error names the key and does not echo the value.
        std::fs::write(&path, "kid:bad\u{7}secret").unwrap();
        let err = cred.reload().unwrap_err().to_string();
        assert!(err.contains("elasticsearch.api_key_file"), "{err}");
        assert!(!err.contains("bad"), "{err}");
        std::fs::write(&path, "\n").unwrap();
        assert!(Credential::load(&c).unwrap_err().problem.contains("empty"));
    }

    #[test]
    fn cleartext_only_to_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "kid:secret").unwrap();
        let mut c = config();
        c.api_key_file = Some(path);
        c.url = Some("http://es.example:9200".into());
        assert_eq!(Credential::load(&c).unwrap_err().key, "elasticsearch.url");
        c.url = Some("http://127.0.0.1:9200".into());
        assert!(Credential::load(&c).unwrap().is_some());
    }
}
