//! The production configuration of the parts, rendered from the same templates the launcher
//! uses (`envoy/gateway.yaml.j2`, `envoy/unbound.conf.j2`), the scorer's `deploy/scorer.toml.j2`
//! and the filter configuration `deploy/filter.json`, so there is no second copy that can drift.
//!
//! A [`Profile`] says where the files live and which addresses and ports the parts use.
//! `cargo xtask render` writes the committed files under `deploy/` ([`committed_files`]) from
//! [`Profile::systemd`] and [`Profile::kubernetes`]; `tests/tests/deploy.rs` checks that they
//! are current, and runs the systemd units' own command lines ([`UnitCommands`], parsed from
//! `deploy/systemd/*.service`) on the same files rendered for a temporary directory and
//! ephemeral ports.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::envoy::{GatewayLimits, SCORER_CLUSTER};
use crate::paths::repo_root;
use crate::unbound::GATEWAY_SOURCE;
use crate::LaunchError;

/// Folder of the committed deployment files, relative to the repository root.
pub const DEPLOY_DIR: &str = "deploy";
/// The filter configuration every profile embeds in Envoy's configuration.
pub const FILTER_CONFIG: &str = "deploy/filter.json";
/// Where the systemd units live (relative to the repository root).
pub const SYSTEMD_DIR: &str = "deploy/systemd";

/// The ports of one installation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// Envoy admin (loopback only).
    pub admin: u16,
    /// DoH over cleartext HTTP.
    pub http: u16,
    /// DoH over TLS.
    pub https: u16,
    /// Envoy's readiness listener (GET /ready forwarded to admin), for orchestrators.
    pub ready: Option<u16>,
    /// unbound's cleartext HTTP/2 DoH port (what Envoy proxies to).
    pub unbound_doh: u16,
    /// unbound's classic DNS port.
    pub unbound_dns: u16,
    /// The scorer's HTTP port.
    pub scorer: u16,
}

impl Ports {
    /// The documented ports (the same as `cargo xtask up`'s defaults).
    pub const DEFAULT: Ports = Ports {
        admin: 9901,
        http: 8080,
        https: 8443,
        ready: None,
        unbound_doh: 8053,
        unbound_dns: 5353,
        scorer: 8090,
    };
}

/// Where things live and how the parts reach each other in one kind of installation.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Address of Envoy's DoH (and readiness) listeners.
    pub listen_address: String,
    pub ports: Ports,
    /// The filter module Envoy loads.
    pub wasm: PathBuf,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// Host (IP or DNS name) Envoy's scorer cluster points at.
    pub scorer_host: String,
    /// Envoy cluster discovery of the scorer: `STATIC` for an IP, `STRICT_DNS` for a name.
    pub scorer_discovery: &'static str,
    /// Address the scorer binds (its port is `ports.scorer`).
    pub scorer_bind: String,
    pub model_card: PathBuf,
    /// The extra detectors' cards (`model.detector_cards`): the shipped tunnel model.
    pub detector_cards: Vec<PathBuf>,
    /// `None`: not in the file (spool only, or set through the environment).
    pub elasticsearch_url: Option<String>,
    /// Real Elasticsearch 8.x: write to a data stream.
    pub data_stream: bool,
    pub spool_dir: PathBuf,
    /// unbound's working directory.
    pub unbound_dir: PathBuf,
    /// File or glob unbound includes (the installation's own local zones).
    pub unbound_include: Option<String>,
    pub unbound_threads: u32,
    /// Recurse to the internet for names outside the local zones.
    pub recursion: bool,
}

impl Profile {
    /// Stand-alone hosts with the units in `deploy/systemd/`: everything on loopback, configs
    /// in `/etc/dohguard`, binaries in `/usr/local`, the TLS key handed over by systemd
    /// (`LoadCredential=`), the spool in the scorer's `StateDirectory=`.
    pub fn systemd() -> Self {
        Self {
            listen_address: "127.0.0.1".into(),
            ports: Ports::DEFAULT,
            wasm: "/usr/local/lib/dohguard/dohguard_filter.wasm".into(),
            tls_cert: "/etc/dohguard/tls/cert.pem".into(),
            tls_key: "/run/credentials/dohguard-envoy.service/tls-key".into(),
            scorer_host: "127.0.0.1".into(),
            scorer_discovery: "STATIC",
            scorer_bind: "127.0.0.1".into(),
            model_card: "/usr/local/share/dohguard/models/dga-cnn/model.card.json".into(),
            detector_cards: vec![
                "/usr/local/share/dohguard/models/tunnel-v1/model.card.json".into()
            ],
            elasticsearch_url: Some("http://127.0.0.1:9200".into()),
            data_stream: true,
            spool_dir: "/var/lib/dohguard-scorer/spool".into(),
            unbound_dir: "/run/dohguard-unbound".into(),
            unbound_include: Some("/etc/dohguard/unbound.d/*.conf".into()),
            unbound_threads: 2,
            recursion: true,
        }
    }

    /// The manifests in `deploy/kubernetes/`: Envoy and unbound share the gateway pod (unbound
    /// on the pod's loopback), the scorer is a Service, the filter comes from an image volume,
    /// the certificate from a TLS Secret, the Elasticsearch URL from a Secret (environment).
    pub fn kubernetes() -> Self {
        Self {
            listen_address: "0.0.0.0".into(),
            ports: Ports {
                ready: Some(9902),
                ..Ports::DEFAULT
            },
            wasm: "/etc/dohguard/filter/plugin.wasm".into(),
            tls_cert: "/etc/dohguard/tls/tls.crt".into(),
            tls_key: "/etc/dohguard/tls/tls.key".into(),
            scorer_host: "dohguard-scorer.dns-gateway.svc.cluster.local".into(),
            scorer_discovery: "STRICT_DNS",
            scorer_bind: "0.0.0.0".into(),
            model_card: "/opt/dohguard/models/dga-cnn/model.card.json".into(),
            detector_cards: vec!["/opt/dohguard/models/tunnel-v1/model.card.json".into()],
            elasticsearch_url: None,
            data_stream: true,
            spool_dir: "/var/lib/dohguard-scorer/spool".into(),
            unbound_dir: "/run/unbound".into(),
            unbound_include: None,
            unbound_threads: 2,
            recursion: true,
        }
    }
}

/// The three configuration files of one installation.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub envoy_yaml: String,
    pub unbound_conf: String,
    pub scorer_toml: String,
}

/// Reads `deploy/filter.json` (the filter's plugin configuration, `filter/CONFIG.md`).
pub fn filter_config() -> Result<serde_json::Value, LaunchError> {
    let path = repo_root().join(FILTER_CONFIG);
    let text = std::fs::read_to_string(&path)
        .map_err(LaunchError::io(format!("reading {}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| LaunchError::Io {
        context: format!("parsing {}", path.display()),
        source: e.into(),
    })
}

/// Renders the three files for `profile` with `filter` as the filter's configuration.
pub fn render(profile: &Profile, filter: &serde_json::Value) -> Result<Rendered, LaunchError> {
    let ports = profile.ports;
    let envoy_yaml = crate::template::render(
        "envoy/gateway.yaml.j2",
        json!({
            "admin_port": ports.admin,
            "http_port": ports.http,
            "listen_address": profile.listen_address,
            "ready_port": ports.ready,
            "tls": {"port": ports.https, "cert": profile.tls_cert, "key": profile.tls_key},
            "upstream": {"kind": "unbound", "port": ports.unbound_doh},
            "filter": {
                "wasm": profile.wasm,
                "config_json": filter.to_string(),
                "vm_id": "dohguard",
            },
            "scorer": {
                "host": profile.scorer_host,
                "port": ports.scorer,
                "discovery": profile.scorer_discovery,
            },
            "scorer_cluster": SCORER_CLUSTER,
            // unbound answers only this source (docs/gateway.md); the product's limits.
            "upstream_source": GATEWAY_SOURCE,
            "limits": GatewayLimits::default(),
        }),
    )?;
    let unbound_conf = crate::template::render(
        "envoy/unbound.conf.j2",
        json!({
            "dir": profile.unbound_dir,
            "doh_port": ports.unbound_doh,
            "dns_port": ports.unbound_dns,
            "threads": profile.unbound_threads,
            "recursion": profile.recursion,
            "zones": [],
            "include": profile.unbound_include,
            "allow_from": [GATEWAY_SOURCE],
        }),
    )?;
    let scorer_toml = crate::template::render(
        "deploy/scorer.toml.j2",
        json!({
            "listen": format!("{}:{}", profile.scorer_bind, ports.scorer),
            "model_card": profile.model_card,
            "detector_cards": profile.detector_cards,
            "elasticsearch_url": profile.elasticsearch_url,
            "data_stream": profile.data_stream,
            "spool_dir": profile.spool_dir,
        }),
    )?;
    Ok(Rendered {
        envoy_yaml,
        unbound_conf,
        scorer_toml,
    })
}

/// Every generated file under `deploy/` (path relative to the repository root, content).
pub fn committed_files() -> Result<Vec<(PathBuf, String)>, LaunchError> {
    let filter = filter_config()?;
    let systemd = render(&Profile::systemd(), &filter)?;
    let kubernetes = render(&Profile::kubernetes(), &filter)?;
    let etc = Path::new(SYSTEMD_DIR).join("etc/dohguard");
    let generated = |sources: &str| {
        format!(
            "# GENERATED by `cargo xtask render` from {sources} (launcher/src/deploy.rs).\n\
             # Do not edit: change those and run `cargo xtask render`; tests/tests/deploy.rs fails while\n\
             # this file is stale.\n"
        )
    };
    let envoy_sources = "envoy/gateway.yaml.j2 and deploy/filter.json";
    Ok(vec![
        (
            etc.join("envoy.yaml"),
            generated(envoy_sources) + &systemd.envoy_yaml,
        ),
        (
            etc.join("unbound.conf"),
            generated("envoy/unbound.conf.j2") + &systemd.unbound_conf,
        ),
        (
            etc.join("scorer.toml"),
            generated("deploy/scorer.toml.j2") + &systemd.scorer_toml,
        ),
        (
            PathBuf::from("deploy/kubernetes/gateway-config.yaml"),
            generated(&format!("{envoy_sources}, envoy/unbound.conf.j2"))
                + &config_map(
                    "doh-gateway-config",
                    "doh-gateway",
                    &[
                        ("envoy.yaml", &kubernetes.envoy_yaml),
                        ("unbound.conf", &kubernetes.unbound_conf),
                    ],
                ),
        ),
        (
            PathBuf::from("deploy/kubernetes/scorer-config.yaml"),
            generated("deploy/scorer.toml.j2")
                + &config_map(
                    "dohguard-scorer-config",
                    "dohguard-scorer",
                    &[("scorer.toml", &kubernetes.scorer_toml)],
                ),
        ),
    ])
}

/// A ConfigMap in namespace `dns-gateway` holding `files` as literal block scalars.
fn config_map(name: &str, app: &str, files: &[(&str, &str)]) -> String {
    let mut out = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: dns-gateway\n  \
         labels:\n    app.kubernetes.io/name: {app}\n    app.kubernetes.io/part-of: dohguard\ndata:\n"
    );
    for (key, text) in files {
        out.push_str(&format!("  {key}: |\n"));
        for line in text.trim_matches('\n').lines() {
            match line.is_empty() {
                true => out.push('\n'),
                false => out.push_str(&format!("    {line}\n")),
            }
        }
    }
    out
}

/// What a systemd unit runs: its `Environment=` pairs, `ExecStartPre=` and `ExecStart=` lines
/// split into words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitCommands {
    pub environment: Vec<(String, String)>,
    pub exec_start_pre: Vec<Vec<String>>,
    pub exec_start: Vec<String>,
}

/// A unit line this parser does not handle; better an error than a silently different command.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{unit}, line {line}: {problem}")]
pub struct UnitError {
    pub unit: String,
    pub line: usize,
    pub problem: String,
}

impl UnitCommands {
    /// Reads `deploy/systemd/<unit>`.
    pub fn read(unit: &str) -> Result<Self, LaunchError> {
        let path = repo_root().join(SYSTEMD_DIR).join(unit);
        let text = std::fs::read_to_string(&path)
            .map_err(LaunchError::io(format!("reading {}", path.display())))?;
        Self::parse(unit, &text).map_err(|e| LaunchError::Io {
            context: format!("parsing {}", path.display()),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })
    }

    /// Parses the `[Service]` lines that say what runs. Only plain words are accepted in
    /// command lines: quotes, `$` variables, `%` specifiers and `-`/`+`/`!`/`@` prefixes are
    /// refused, so the test never runs something other than what systemd would.
    pub fn parse(unit: &str, text: &str) -> Result<Self, UnitError> {
        let mut commands = UnitCommands {
            environment: Vec::new(),
            exec_start_pre: Vec::new(),
            exec_start: Vec::new(),
        };
        let mut section = String::new();
        for (line_no, line) in logical_lines(text) {
            let err = |problem: String| UnitError {
                unit: unit.to_owned(),
                line: line_no,
                problem,
            };
            if line.starts_with('[') {
                section = line.clone();
                continue;
            }
            if section != "[Service]" {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(err(format!("not `Key=value`: {line}")));
            };
            match key.trim() {
                "Environment" => {
                    for word in plain_words(value).map_err(err)? {
                        let (k, v) = word
                            .split_once('=')
                            .ok_or_else(|| err(format!("Environment word without `=`: {word}")))?;
                        commands.environment.push((k.to_owned(), v.to_owned()));
                    }
                }
                "ExecStartPre" => commands
                    .exec_start_pre
                    .push(plain_words(value).map_err(err)?),
                "ExecStart" if !commands.exec_start.is_empty() => {
                    return Err(err("a second ExecStart= (Type=exec runs one)".into()))
                }
                "ExecStart" => commands.exec_start = plain_words(value).map_err(err)?,
                _ => {}
            }
        }
        if commands.exec_start.is_empty() {
            return Err(UnitError {
                unit: unit.to_owned(),
                line: 0,
                problem: "no ExecStart= in [Service]".into(),
            });
        }
        Ok(commands)
    }
}

/// Lines without comments and blanks, with `\` continuations joined; numbered from 1 by the
/// line they start on.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (index, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if pending.is_none() && (trimmed.is_empty() || trimmed.starts_with(['#', ';'])) {
            continue;
        }
        let (start, mut joined) = pending.take().unwrap_or((index + 1, String::new()));
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                joined.push_str(head);
                joined.push(' ');
                pending = Some((start, joined));
            }
            None => {
                joined.push_str(trimmed);
                lines.push((start, joined));
            }
        }
    }
    lines.extend(pending);
    lines
}

fn plain_words(value: &str) -> Result<Vec<String>, String> {
    let words: Vec<String> = value.split_whitespace().map(str::to_owned).collect();
    if words.is_empty() {
        return Err("empty command line".into());
    }
    if let Some(word) = words
        .iter()
        .find(|w| w.contains(['"', '\'', '$', '%', ';']))
    {
        return Err(format!(
            "`{word}`: quotes, $variables, %specifiers and `;` are not handled by this parser"
        ));
    }
    if words[0].starts_with(['-', '+', '!', '@', ':']) {
        return Err(format!("`{}`: command prefixes are not handled", words[0]));
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_commands_come_from_the_service_section_with_continuations() {
        let unit = "[Unit]\nExecStart=/not/this\n[Service]\n# c\nEnvironment=A=1 B=2\n\
                    ExecStartPre=/bin/check -c /etc/x\nExecStart=/bin/run \\\n  --flag /etc/x\n";
        let commands = UnitCommands::parse("u.service", unit).unwrap();
        assert_eq!(
            commands.environment,
            [("A".into(), "1".into()), ("B".into(), "2".into())]
        );
        assert_eq!(commands.exec_start_pre, [["/bin/check", "-c", "/etc/x"]]);
        assert_eq!(commands.exec_start, ["/bin/run", "--flag", "/etc/x"]);
    }

    #[test]
    fn what_the_parser_cannot_reproduce_is_an_error_naming_the_line() {
        for (unit, line) in [
            ("[Service]\nExecStart=/bin/run \"a b\"\n", 2),
            ("[Service]\nExecStart=/bin/run $FLAGS\n", 2),
            ("[Service]\nExecStart=-/bin/run\n", 2),
            ("[Service]\n\nExecStart=/bin/a\nExecStart=/bin/b\n", 4),
            ("[Service]\nType=exec\n", 0),
        ] {
            let err = UnitCommands::parse("u.service", unit).unwrap_err();
            assert_eq!(err.line, line, "{unit:?}: {err}");
        }
    }

    #[test]
    fn config_maps_indent_every_line_and_keep_blank_lines_blank() {
        let text = config_map("c", "a", &[("f.conf", "x: 1\n\n  y\n")]);
        assert!(
            text.contains("data:\n  f.conf: |\n    x: 1\n\n      y\n"),
            "{text}"
        );
    }
}
