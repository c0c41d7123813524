//! Finds the external programs the stack runs. Envoy and osmem-server come from the Python
//! environment (`ENVOY_BIN`, `OSMEM_BIN` set by `scripts/env.sh`), the rest from `PATH`
//! (Debian packages); `/usr/sbin` is searched too because `unbound` lives there and is not on
//! every user's `PATH`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::LaunchError;

/// A program the stack needs, with where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Envoy,
    Osmem,
    Unbound,
    Kdig,
    Openssl,
    Curl,
    Nghttp,
    H2load,
    Dnsdist,
    Dnsperf,
    Prometheus,
    Alertmanager,
    Promtool,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::Envoy => "envoy",
            Tool::Osmem => "osmem-server",
            Tool::Unbound => "unbound",
            Tool::Kdig => "kdig",
            Tool::Openssl => "openssl",
            Tool::Curl => "curl",
            Tool::Nghttp => "nghttp",
            Tool::H2load => "h2load",
            Tool::Dnsdist => "dnsdist",
            Tool::Dnsperf => "dnsperf",
            Tool::Prometheus => "prometheus",
            // Debian's name for the binary.
            Tool::Alertmanager => "prometheus-alertmanager",
            Tool::Promtool => "promtool",
        }
    }

    fn env_var(self) -> Option<&'static str> {
        match self {
            Tool::Envoy => Some("ENVOY_BIN"),
            Tool::Osmem => Some("OSMEM_BIN"),
            _ => None,
        }
    }
}

/// Path of `tool`: its environment variable when set, else `PATH`, else `/usr/sbin`.
pub fn find(tool: Tool) -> Result<PathBuf, LaunchError> {
    let from_env = tool.env_var().map(|var| (var, std::env::var_os(var)));
    find_in(
        tool,
        from_env,
        std::env::var_os("PATH"),
        Path::new("/usr/sbin"),
    )
}

fn find_in(
    tool: Tool,
    from_env: Option<(&str, Option<OsString>)>,
    path_var: Option<OsString>,
    sbin: &Path,
) -> Result<PathBuf, LaunchError> {
    let mut looked = Vec::new();
    if let Some((var, value)) = from_env {
        match value {
            Some(value) if !value.is_empty() => {
                let path = PathBuf::from(&value);
                if path.is_file() {
                    return Ok(path);
                }
                looked.push(format!("${var}={}", path.display()));
            }
            _ => looked.push(format!("${var} unset")),
        }
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    if let Ok(path) = which::which_in(tool.name(), path_var, cwd) {
        return Ok(path);
    }
    looked.push("PATH".to_owned());
    let in_sbin = sbin.join(tool.name());
    if in_sbin.is_file() {
        return Ok(in_sbin);
    }
    looked.push(sbin.display().to_string());
    Err(LaunchError::MissingTool {
        tool: tool.name(),
        looked: format!("looked in {}", looked.join(", ")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_names_itself_where_it_looked_and_the_fix() {
        let nowhere = Path::new("/nonexistent-dohguard");
        let err = find_in(
            Tool::Envoy,
            Some(("ENVOY_BIN", Some("/nonexistent-dohguard/envoy".into()))),
            Some(nowhere.as_os_str().to_owned()),
            nowhere,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(err.is_setup_problem());
        assert!(text.starts_with("envoy not found"), "{text}");
        assert!(
            text.contains("$ENVOY_BIN=/nonexistent-dohguard/envoy"),
            "{text}"
        );
        assert!(text.contains("run scripts/setup.sh"), "{text}");
    }

    #[test]
    fn the_environment_variable_wins_over_path() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("my-envoy");
        std::fs::write(&fake, "").unwrap();
        let found = find_in(
            Tool::Envoy,
            Some(("ENVOY_BIN", Some(fake.clone().into_os_string()))),
            None,
            dir.path(),
        )
        .unwrap();
        assert_eq!(found, fake);
    }
}
