//! Layered configuration: built-in defaults, a TOML file (`--config`), environment variables
//! `<PREFIX><SECTION>__<KEY>`, later wins (command-line flags are applied by each part after
//! this). Unknown keys and wrong types are errors naming the key and the layer they came from.

use std::path::Path;

use figment::{
    providers::{Env, Format, Serialized, Toml},
    Figment,
};
use serde::{de::DeserializeOwned, Serialize};

/// A rejected setting: `key` (dotted, empty for the document as a whole) and the problem.
/// Each part shows it in its own shape (`<part>: configuration <key>: <problem>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub key: String,
    pub problem: String,
}

/// The operator's layers without the defaults: the TOML file when given, then the environment
/// variables starting with `env_prefix` (`<PREFIX>CONFIG`, which names the file, and the keys
/// in `env_ignore` are left out). `user.contains(key)` then says whether a key was set.
pub fn user_layers(
    file: Option<&Path>,
    env_prefix: &str,
    env_ignore: &[&str],
) -> Result<Figment, Invalid> {
    let mut user = Figment::new();
    if let Some(path) = file {
        if !path.is_file() {
            return Err(Invalid {
                key: "--config".into(),
                problem: format!("{} is not a readable file", path.display()),
            });
        }
        user = user.merge(Toml::file(path));
    }
    let mut ignored = vec!["config"];
    ignored.extend_from_slice(env_ignore);
    Ok(user.merge(Env::prefixed(env_prefix).ignore(&ignored).split("__")))
}

/// `defaults` with the operator's layers over them.
pub fn extract<T: Serialize + DeserializeOwned>(defaults: T, user: Figment) -> Result<T, Invalid> {
    Figment::from(Serialized::defaults(defaults))
        .merge(user)
        .extract()
        .map_err(from_figment)
}

/// [`user_layers`] over `T::default()`.
pub fn load<T: Default + Serialize + DeserializeOwned>(
    file: Option<&Path>,
    env_prefix: &str,
) -> Result<T, Invalid> {
    extract(T::default(), user_layers(file, env_prefix, &[])?)
}

fn invalid(key: &str, problem: impl Into<String>) -> Invalid {
    Invalid {
        key: key.to_owned(),
        problem: problem.into(),
    }
}

/// `value` must be greater than 0.
pub fn positive(key: &str, value: u64) -> Result<(), Invalid> {
    if value == 0 {
        return Err(invalid(key, "must be greater than 0"));
    }
    Ok(())
}

/// `value` must not be empty.
pub fn not_empty(key: &str, value: &str) -> Result<(), Invalid> {
    if value.is_empty() {
        return Err(invalid(key, "must not be empty"));
    }
    Ok(())
}

/// A service URL (Elasticsearch, Prometheus): http or https, with no credentials in it (they
/// go in the credential files). The error shows the URL with any user info redacted.
pub fn service_url(key: &str, url: &str) -> Result<(), Invalid> {
    let shown = redact_userinfo(url);
    let parsed = url::Url::parse(url).map_err(|e| invalid(key, format!("{shown:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(
            key,
            format!("{shown:?}: scheme must be http or https"),
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid(
            key,
            format!("{shown:?}: no credentials in the URL; see api_key_file, password_file"),
        ));
    }
    Ok(())
}

/// `url` with its user info (`user:secret@`) replaced, for messages.
fn redact_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://[redacted]{}", &rest[at..]),
        None => url.to_owned(),
    }
}

/// The Elasticsearch client's retry delays: `elasticsearch.retry_max_ms` at least
/// `elasticsearch.retry_base_ms` (which [`positive`] checks).
pub fn retry_bounds(retry_base_ms: u64, retry_max_ms: u64) -> Result<(), Invalid> {
    if retry_max_ms < retry_base_ms {
        return Err(invalid(
            "elasticsearch.retry_max_ms",
            "must be at least elasticsearch.retry_base_ms",
        ));
    }
    Ok(())
}

/// An Elasticsearch index (or data stream) name: not empty, lower case, none of
/// `* , / \ ? " < > | #` or a space.
pub fn index_name(key: &str, index: &str) -> Result<(), Invalid> {
    if index.is_empty()
        || index != index.to_lowercase()
        || index.contains(['*', ',', ' ', '/', '\\', '?', '"', '<', '>', '|', '#'])
    {
        return Err(invalid(
            key,
            format!("{index:?} is not a valid lower-case index name"),
        ));
    }
    Ok(())
}

/// What a binary does with its loaded configuration: an error goes to stderr and the process
/// exits with status 2; with `print_config` (`--print-config`) the configuration goes to
/// stdout as pretty JSON and the process exits with status 0; else it is returned.
pub fn or_exit<T: Serialize, E: std::fmt::Display>(loaded: Result<T, E>, print_config: bool) -> T {
    let config = match loaded {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if print_config {
        match serde_json::to_string_pretty(&config) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("Error: {e}");
                std::process::exit(1);
            }
        }
        std::io::Write::flush(&mut std::io::stdout()).ok();
        std::process::exit(0);
    }
    config
}

/// A figment error (unknown key, wrong type, unreadable file); the layer it came from (file
/// or environment) is named after the problem.
fn from_figment(err: figment::Error) -> Invalid {
    let source = err.metadata.as_ref().map(|md| match &md.source {
        Some(source) => format!(" (from {} {source})", md.name),
        None => format!(" (from {})", md.name),
    });
    invalid(
        &err.path.join("."),
        format!("{}{}", err.kind, source.unwrap_or_default()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_url_is_http_without_credentials_and_never_shows_them() {
        service_url("k", "https://es.example:9200").unwrap();
        let e = service_url("k", "ftp://es.example").unwrap_err();
        assert_eq!(
            e.problem,
            "\"ftp://es.example\": scheme must be http or https"
        );
        let e = service_url("k", "https://elastic:s3cret@es.example:9200/").unwrap_err();
        assert_eq!(e.key, "k");
        assert!(!e.problem.contains("s3cret"), "{}", e.problem);
        assert!(e.problem.contains("[redacted]@es.example"), "{}", e.problem);
        assert!(service_url("k", "not a url").is_err());
    }

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Sample {
        top: u32,
        section: Section,
    }

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Section {
        a: u32,
        b: u32,
    }

    impl Default for Sample {
        fn default() -> Self {
            Self {
                top: 1,
                section: Section::default(),
            }
        }
    }

    impl Default for Section {
        fn default() -> Self {
            Self { a: 2, b: 3 }
        }
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure signature
    fn file_then_environment_over_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("s.toml", "[section]\na = 20\nb = 30\n")?;
            jail.set_env("DG_TEST_SECTION__B", "300");
            jail.set_env("DG_TEST_CONFIG", "ignored.toml");
            let s: Sample = load(Some(Path::new("s.toml")), "DG_TEST_").unwrap();
            assert_eq!(s.top, 1, "defaults stay where nothing is given");
            assert_eq!(s.section.a, 20, "file beats defaults");
            assert_eq!(s.section.b, 300, "environment beats file");
            let user = user_layers(Some(Path::new("s.toml")), "DG_TEST_", &[]).unwrap();
            assert!(user.contains("section.a") && !user.contains("top"));
            Ok(())
        });
    }

    #[test]
    fn checks_name_the_key() {
        assert!(positive("a.b", 1).is_ok());
        assert_eq!(
            positive("a.b", 0).unwrap_err(),
            invalid("a.b", "must be greater than 0")
        );
        assert!(not_empty("t", "x").is_ok());
        assert_eq!(
            not_empty("t", "").unwrap_err(),
            invalid("t", "must not be empty")
        );
        assert!(retry_bounds(100, 100).is_ok());
        assert_eq!(
            retry_bounds(100, 99).unwrap_err().key,
            "elasticsearch.retry_max_ms"
        );
        assert!(index_name("i", "logs-dohguard.verdicts-default").is_ok());
        for bad in ["", "Logs", "a,b", "a b", "a*", "a/b", "a#b"] {
            assert_eq!(
                index_name("i", bad).unwrap_err(),
                invalid("i", format!("{bad:?} is not a valid lower-case index name"))
            );
        }
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn errors_name_the_key_and_the_layer() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("typo.toml", "[section]\nc = 1\n")?;
            let err = load::<Sample>(Some(Path::new("typo.toml")), "DG_TEST_").unwrap_err();
            assert_eq!(err.key, "section.c");
            assert!(
                err.problem.contains("`c`") && err.problem.contains("typo.toml"),
                "{err:?}"
            );
            jail.set_env("DG_TEST_SECTION__A", "many");
            let err = load::<Sample>(None, "DG_TEST_").unwrap_err();
            assert_eq!(err.key, "section.a");
            assert!(
                err.problem
                    .ends_with("(from `DG_TEST_` environment variable(s))"),
                "{err:?}"
            );
            jail.set_env("DG_TEST_SECTION__A", "4");
            let err = load::<Sample>(Some(Path::new("missing.toml")), "DG_TEST_").unwrap_err();
            assert_eq!(err.key, "--config");
            assert_eq!(err.problem, "missing.toml is not a readable file");
            let ignored: Result<Sample, _> = extract(
                Sample::default(),
                user_layers(None, "DG_TEST_", &["section__a"]).unwrap(),
            );
            assert_eq!(ignored.unwrap().section.a, 2, "ignored keys are not read");
            Ok(())
        });
    }
}
