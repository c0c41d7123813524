//! Finds the external programs the stack runs. Envoy and osmem-server come from the Python
//! environment (`ENVOY_BIN`, `OSMEM_BIN` set by `scripts/env.sh`), the rest from `PATH`
//! (Debian packages); `/usr/sbin` is searched too because `unbound` lives there and is not on
//! every user's `PATH`.

use std::path::PathBuf;

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
    H2load,
    Dnsdist,
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
            Tool::H2load => "h2load",
            Tool::Dnsdist => "dnsdist",
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
    let mut looked = Vec::new();
    if let Some(var) = tool.env_var() {
        match std::env::var_os(var) {
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
    if let Ok(path) = which::which(tool.name()) {
        return Ok(path);
    }
    looked.push("PATH".to_owned());
    let sbin = PathBuf::from("/usr/sbin").join(tool.name());
    if sbin.is_file() {
        return Ok(sbin);
    }
    looked.push("/usr/sbin".to_owned());
    Err(LaunchError::MissingTool {
        tool: tool.name(),
        looked: format!("looked in {}", looked.join(", ")),
    })
}
