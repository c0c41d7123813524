//! The gateway's monitoring: a real Prometheus (Debian `prometheus`) scraping Envoy's
//! `/stats/prometheus`, the scorer's `/metrics` and Alertmanager, with the recording and
//! alerting rules of `anomaly/prometheus/rules.yml.j2`, and a real Alertmanager (Debian
//! `prometheus-alertmanager`) that routes the alerts to a webhook. Both bind 127.0.0.1 only
//! (Alertmanager's cluster port is turned off), keep their data in the run directory, and are
//! stopped by PID like the rest of the stack. The anomaly detector (`anomaly/`) runs beside
//! them when asked for: Prometheus scrapes it and it reads Prometheus.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::anomaly::{AnomalyDetector, AnomalyOptions};
use crate::http;
use crate::ports::free_port;
use crate::process::{http_ok, ManagedProcess};
use crate::stack::Stack;
use crate::template;
use crate::tools::{self, Tool};
use crate::LaunchError;

/// One scrape target on 127.0.0.1.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Target {
    pub job: String,
    pub port: u16,
    pub path: String,
}

impl Target {
    pub fn new(job: &str, port: u16, path: &str) -> Self {
        Self {
            job: job.to_owned(),
            port,
            path: path.to_owned(),
        }
    }
}

/// How often Prometheus scrapes and evaluates, and how quickly the static alerts fire.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Scrape and rule-evaluation interval, e.g. "1s".
    pub scrape_interval: String,
    /// The `rate()` window of the recording rules (a few scrapes at least).
    pub rate_window: String,
    /// The static alerts' `for:`.
    pub alert_for: String,
    /// How long Alertmanager waits before a new group's first notification (and between
    /// a group's notifications).
    pub group_wait: String,
}

impl Timing {
    /// For tests and data-set recording: 1 s scrapes, alerts after 3 s.
    pub fn fast() -> Self {
        Self {
            scrape_interval: "1s".into(),
            rate_window: "15s".into(),
            alert_for: "3s".into(),
            group_wait: "1s".into(),
        }
    }

    /// For `cargo xtask up`: 5 s scrapes, alerts after 1 minute.
    pub fn operator() -> Self {
        Self {
            scrape_interval: "5s".into(),
            rate_window: "1m".into(),
            alert_for: "1m".into(),
            group_wait: "10s".into(),
        }
    }
}

/// Renders the rules for `timing` into `dir/rules.yml`.
pub fn render_rules(dir: &Path, timing: &Timing) -> Result<PathBuf, LaunchError> {
    let rules = template::render(
        "anomaly/prometheus/rules.yml.j2",
        serde_json::json!({ "rate_window": timing.rate_window, "alert_for": timing.alert_for }),
    )?;
    let path = dir.join("rules.yml");
    std::fs::write(&path, rules).map_err(LaunchError::io(format!("writing {}", path.display())))?;
    Ok(path)
}

#[derive(Debug)]
pub struct Alertmanager {
    process: ManagedProcess,
    pub port: u16,
}

impl Alertmanager {
    /// Starts Alertmanager routing every alert to `webhook_url` (firing and resolved), or
    /// nowhere but its own UI when `None`.
    pub fn start(
        dir: &Path,
        webhook_url: Option<&str>,
        group_wait: &str,
        port: Option<u16>,
    ) -> Result<Self, LaunchError> {
        let port = port.map_or_else(free_port, Ok)?;
        let config = template::render(
            "anomaly/prometheus/alertmanager.yml.j2",
            serde_json::json!({ "webhook_url": webhook_url, "group_wait": group_wait }),
        )?;
        let config_path = dir.join("alertmanager.yml");
        std::fs::write(&config_path, config).map_err(LaunchError::io(format!(
            "writing {}",
            config_path.display()
        )))?;
        let data = dir.join("alertmanager-data");
        std::fs::create_dir_all(&data)
            .map_err(LaunchError::io(format!("creating {}", data.display())))?;
        let mut command = Command::new(tools::find(Tool::Alertmanager)?);
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // No gossip port on 0.0.0.0: a single Alertmanager.
            .arg("--cluster.listen-address=");
        let mut process =
            ManagedProcess::spawn("alertmanager", command, &dir.join("alertmanager.log"))?;
        let ready = format!("http://127.0.0.1:{port}/-/ready");
        process.wait_ready(Duration::from_secs(30), || http_ok(&ready))?;
        Ok(Self { process, port })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn process(&mut self) -> &mut ManagedProcess {
        &mut self.process
    }
}

#[derive(Debug)]
pub struct Prometheus {
    process: ManagedProcess,
    pub port: u16,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets`, with the rules for `timing`, sending alerts to
    /// the Alertmanager on `alertmanager_port` when given.
    pub fn start(
        dir: &Path,
        targets: &[Target],
        timing: &Timing,
        alertmanager_port: Option<u16>,
        port: Option<u16>,
    ) -> Result<Self, LaunchError> {
        let port = port.map_or_else(free_port, Ok)?;
        let rules = render_rules(dir, timing)?;
        let config = template::render(
            "anomaly/prometheus/prometheus.yml.j2",
            serde_json::json!({
                "scrape_interval": timing.scrape_interval,
                "rules_file": rules,
                "alertmanager_port": alertmanager_port,
                "targets": targets,
            }),
        )?;
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).map_err(LaunchError::io(format!(
            "writing {}",
            config_path.display()
        )))?;
        let data = dir.join("prometheus-data");
        std::fs::create_dir_all(&data)
            .map_err(LaunchError::io(format!("creating {}", data.display())))?;
        let mut command = Command::new(tools::find(Tool::Prometheus)?);
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let mut process =
            ManagedProcess::spawn("prometheus", command, &dir.join("prometheus.log"))?;
        let ready = format!("http://127.0.0.1:{port}/-/ready");
        process.wait_ready(Duration::from_secs(30), || http_ok(&ready))?;
        Ok(Self { process, port })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn process(&mut self) -> &mut ManagedProcess {
        &mut self.process
    }

    /// An instant query: the result vector as `(labels, value)` pairs. A query Prometheus
    /// refuses is an error, not an empty result.
    pub fn query(&self, promql: &str) -> Result<Vec<(serde_json::Value, f64)>, LaunchError> {
        let url = format!("{}/api/v1/query", self.url());
        let (status, body) = http::get_text_with_query(&url, &[("query", promql)])?;
        let fail = |message: String| LaunchError::Http {
            url: url.clone(),
            message,
        };
        let reply: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| fail(format!("status {status}, not JSON ({e}): {body}")))?;
        if status != 200 || reply["status"] != "success" {
            return Err(fail(format!("status {status}: {body}")));
        }
        let Some(result) = reply["data"]["result"].as_array() else {
            return Err(fail(format!("no result vector: {body}")));
        };
        result
            .iter()
            .map(|sample| {
                let value = sample["value"][1]
                    .as_str()
                    .and_then(|v| v.parse::<f64>().ok())
                    .ok_or_else(|| fail(format!("sample without a value: {sample}")))?;
                Ok((sample["metric"].clone(), value))
            })
            .collect()
    }

    /// The scrape targets' health, as `(job, health)` pairs.
    pub fn target_health(&self) -> Result<Vec<(String, String)>, LaunchError> {
        let url = format!("{}/api/v1/targets", self.url());
        let (status, body) = http::get_text(&url)?;
        let reply: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| LaunchError::Http {
                url: url.clone(),
                message: format!("status {status}, not JSON ({e})"),
            })?;
        Ok(reply["data"]["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                (
                    t["labels"]["job"].as_str().unwrap_or("?").to_owned(),
                    t["health"].as_str().unwrap_or("?").to_owned(),
                )
            })
            .collect())
    }
}

/// Prometheus and Alertmanager watching a running [`Stack`]: Envoy's admin
/// `/stats/prometheus`, the scorer's `/metrics` when it runs, Alertmanager itself, and the
/// anomaly detector when one is asked for ([`Monitoring::start_with_detector`]).
#[derive(Debug)]
pub struct Monitoring {
    /// Field order is drop order: the detector stops before the Prometheus it reads,
    /// Prometheus before the Alertmanager it sends to.
    pub anomaly: Option<AnomalyDetector>,
    pub prometheus: Prometheus,
    pub alertmanager: Alertmanager,
    /// What Prometheus scrapes.
    pub targets: Vec<Target>,
}

/// Fixed ports for `cargo xtask up`; ephemeral ones when `None`.
#[derive(Debug, Clone, Copy)]
pub struct MonitoringPorts {
    pub prometheus: u16,
    pub alertmanager: u16,
}

/// The anomaly detector to run beside Prometheus.
#[derive(Debug, Clone)]
pub struct DetectorSetup {
    pub model_card: PathBuf,
    /// Evaluation interval (1000 ms in tests, 5000 ms in `up`).
    pub interval_ms: u64,
    /// Fixed port (for `cargo xtask up`); ephemeral when `None`.
    pub port: Option<u16>,
    /// Token file of its `POST /admin/reload`; off when `None`.
    pub admin_token_file: Option<PathBuf>,
}

impl Monitoring {
    pub fn start_for(
        stack: &Stack,
        timing: &Timing,
        webhook_url: Option<&str>,
        ports: Option<MonitoringPorts>,
    ) -> Result<Self, LaunchError> {
        Self::start_with_detector(stack, timing, webhook_url, ports, None)
    }

    /// Like [`Monitoring::start_for`], plus the anomaly detector (`detector`): Prometheus
    /// scrapes it (job `anomaly`), it reads Prometheus and writes anomalies to the stack's
    /// store when there is one.
    pub fn start_with_detector(
        stack: &Stack,
        timing: &Timing,
        webhook_url: Option<&str>,
        ports: Option<MonitoringPorts>,
        detector: Option<&DetectorSetup>,
    ) -> Result<Self, LaunchError> {
        let dir = stack.dir();
        let alertmanager = Alertmanager::start(
            dir,
            webhook_url,
            &timing.group_wait,
            ports.map(|p| p.alertmanager),
        )?;
        let mut targets = vec![
            Target::new("envoy", stack.envoy.ports.admin, "/stats/prometheus"),
            Target::new("alertmanager", alertmanager.port, "/metrics"),
        ];
        if let Some(scorer) = &stack.scorer {
            targets.push(Target::new("scorer", scorer.port, "/metrics"));
        }
        // The detector's port is chosen first: Prometheus scrapes it, and it reads Prometheus.
        let detector_port = match detector {
            Some(d) => Some(d.port.map_or_else(free_port, Ok)?),
            None => None,
        };
        if let Some(port) = detector_port {
            targets.push(Target::new("anomaly", port, "/metrics"));
        }
        let prometheus = Prometheus::start(
            dir,
            &targets,
            timing,
            Some(alertmanager.port),
            ports.map(|p| p.prometheus),
        )?;
        let anomaly = match (detector, detector_port) {
            (Some(d), Some(port)) => Some(AnomalyDetector::start(
                dir,
                &prometheus.url(),
                &AnomalyOptions {
                    model_card: d.model_card.clone(),
                    elasticsearch_url: stack.osmem.as_ref().map(|s| s.url()),
                    interval_ms: d.interval_ms,
                    port,
                    admin_token_file: d.admin_token_file.clone(),
                },
            )?),
            _ => None,
        };
        Ok(Self {
            anomaly,
            prometheus,
            alertmanager,
            targets,
        })
    }

    /// Errors if Prometheus, Alertmanager or the detector has exited.
    pub fn check_running(&mut self) -> Result<(), LaunchError> {
        if let Some(detector) = self.anomaly.as_mut() {
            detector.process().check_running()?;
        }
        self.prometheus.process().check_running()?;
        self.alertmanager.process().check_running()
    }
}
