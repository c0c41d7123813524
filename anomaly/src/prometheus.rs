//! Reading the features from Prometheus's HTTP API: one `query_range` per evaluation for all
//! of the card's features (`{__name__=~"f1|f2|..."}`, the recording rules of contract 5), on a
//! grid of `window` steps of `step_s` ending at the evaluation time. A feature Prometheus has
//! no series for comes back all `None` (missing); an unreachable Prometheus or a refused query
//! is an error, never an empty window.

use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::window::RawWindow;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PrometheusError {
    #[error("Prometheus at {url} is unreachable: {message}")]
    Unreachable { url: String, message: String },
    #[error("Prometheus refused the query ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("Prometheus answered something unexpected: {0}")]
    Unexpected(String),
}

#[derive(Debug, Clone)]
pub struct PrometheusClient {
    http: reqwest::Client,
    base: String,
}

#[derive(Deserialize)]
struct Reply {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<Series>,
}

#[derive(Deserialize)]
struct Series {
    metric: std::collections::HashMap<String, String>,
    values: Vec<(f64, String)>,
}

/// The grid of one evaluation: `window` steps of `step_s` seconds ending at `end_s` (a
/// multiple of `step_s`, so consecutive evaluations read the same points).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    pub end_s: i64,
    pub step_s: u32,
    pub window: usize,
}

impl Grid {
    /// The grid ending at the last step boundary at or before `now_s`.
    pub fn ending_at(now_s: i64, step_s: u32, window: usize) -> Self {
        let step = i64::from(step_s);
        Self {
            end_s: now_s - now_s.rem_euclid(step),
            step_s,
            window,
        }
    }

    pub fn start_s(&self) -> i64 {
        self.end_s - i64::from(self.step_s) * (self.window as i64 - 1)
    }

    /// The step a sample timestamp falls on, if it is on the grid.
    fn index_of(&self, t: f64) -> Option<usize> {
        let offset = (t - self.start_s() as f64) / f64::from(self.step_s);
        let i = offset.round();
        ((offset - i).abs() < 1e-3 && i >= 0.0 && (i as usize) < self.window).then_some(i as usize)
    }
}

impl PrometheusClient {
    pub fn new(base: &str, timeout: Duration) -> Result<Self, PrometheusError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .build()
            .map_err(|e| PrometheusError::Unexpected(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// The card's features on `grid`, in `features`' order.
    pub async fn features(
        &self,
        features: &[String],
        grid: Grid,
    ) -> Result<RawWindow, PrometheusError> {
        let query = format!("{{__name__=~\"{}\"}}", features.join("|"));
        let url = format!("{}/api/v1/query_range", self.base);
        let (start, end, step) = (
            grid.start_s().to_string(),
            grid.end_s.to_string(),
            grid.step_s.to_string(),
        );
        let response = self
            .http
            .get(&url)
            .query(&[
                ("query", query.as_str()),
                ("start", start.as_str()),
                ("end", end.as_str()),
                ("step", step.as_str()),
            ])
            .send()
            .await
            .map_err(|e| PrometheusError::Unreachable {
                url: self.base.clone(),
                message: error_chain(&e),
            })?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| PrometheusError::Unreachable {
                url: self.base.clone(),
                message: error_chain(&e),
            })?;
        let reply: Reply = serde_json::from_str(&text).map_err(|e| {
            PrometheusError::Unexpected(format!("status {status}, not the API's JSON ({e})"))
        })?;
        if status != 200 || reply.status != "success" {
            return Err(PrometheusError::Refused {
                status,
                message: reply.error.unwrap_or_else(|| reply.status.clone()),
            });
        }
        let data = reply
            .data
            .ok_or_else(|| PrometheusError::Unexpected("no data".into()))?;
        if data.result_type != "matrix" {
            return Err(PrometheusError::Unexpected(format!(
                "result type {}, expected matrix",
                data.result_type
            )));
        }
        to_window(features, grid, data.result)
    }
}

fn to_window(
    features: &[String],
    grid: Grid,
    result: Vec<Series>,
) -> Result<RawWindow, PrometheusError> {
    let mut window = RawWindow::empty(features.len(), grid.window);
    for series in result {
        let name = series.metric.get("__name__").map(String::as_str);
        let Some(f) = name.and_then(|n| features.iter().position(|x| x == n)) else {
            continue;
        };
        // A recording rule of contract 5 is one series; two mean the rules are not ours.
        if std::mem::replace(&mut window.present[f], true) {
            return Err(PrometheusError::Unexpected(format!(
                "feature {} has more than one series",
                features[f]
            )));
        }
        for (t, v) in series.values {
            if let Some(i) = grid.index_of(t) {
                // "NaN" parses as NaN: a gap, like a missing point.
                window.values[f][i] = v.parse::<f64>().ok().filter(|v| v.is_finite());
            }
        }
    }
    Ok(window)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_ends_on_a_step_boundary() {
        let g = Grid::ending_at(1007, 5, 4);
        assert_eq!(g.end_s, 1005);
        assert_eq!(g.start_s(), 990);
        assert_eq!(g.index_of(990.0), Some(0));
        assert_eq!(g.index_of(1005.0), Some(3));
        assert_eq!(g.index_of(1010.0), None);
        assert_eq!(g.index_of(992.0), None);
    }

    #[test]
    fn series_land_on_their_feature_and_nan_is_a_gap() {
        let features = vec!["a:x".to_owned(), "b:y".to_owned(), "c:z".to_owned()];
        let grid = Grid::ending_at(103, 1, 4);
        let body = r#"[
            {"metric": {"__name__": "b:y"}, "values": [[100, "1"], [101, "NaN"], [103, "3.5"]]},
            {"metric": {"__name__": "a:x"}, "values": [[102, "7"]]},
            {"metric": {"__name__": "c:z"}, "values": [[102, "NaN"]]},
            {"metric": {"__name__": "other"}, "values": [[102, "7"]]}
        ]"#;
        let w = to_window(&features, grid, serde_json::from_str(body).unwrap()).unwrap();
        assert_eq!(w.values[0], vec![None, None, Some(7.0), None]);
        assert_eq!(w.values[1], vec![Some(1.0), None, None, Some(3.5)]);
        assert_eq!(w.values[2], vec![None; 4]);
        assert_eq!(
            w.missing(),
            vec![false, false, false],
            "a NaN series is there"
        );
        let w = to_window(&features[..2], grid, serde_json::from_str(body).unwrap()).unwrap();
        assert_eq!(w.missing(), vec![false, false]);
        let none = to_window(&features, grid, Vec::new()).unwrap();
        assert_eq!(none.missing(), vec![true; 3]);

        let twice = r#"[
            {"metric": {"__name__": "a:x", "job": "1"}, "values": []},
            {"metric": {"__name__": "a:x", "job": "2"}, "values": []}
        ]"#;
        let err = to_window(&features, grid, serde_json::from_str(twice).unwrap()).unwrap_err();
        assert!(err.to_string().contains("more than one series"), "{err}");
    }
}
