//! The Rust detector against the Python side's fixtures: for every model directory that
//! ships one (the test fixture and the shipped model, `anomaly/model/`), the windows of
//! `fixture.json` are filled by the detector's `ffill-then-median` and scored by its ONNX
//! Runtime session, and must give the scores and contributions the Python side wrote.
//! A model directory without `fixture.json` is a failure, not a skip.
//! Needs `ORT_DYLIB_PATH` (scripts/env.sh).

use std::path::{Path, PathBuf};

use dohguard_anomaly::model::LoadedModel;
use dohguard_anomaly::window::{fill, RawWindow};
use serde_json::Value;

fn model_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    vec![root.join("tests/fixtures/zscore"), root.join("model")]
}

fn close(a: f32, b: f64) -> bool {
    (f64::from(a) - b).abs() <= 1e-4 + 1e-4 * b.abs()
}

fn check_dir(dir: &Path) -> anyhow::Result<usize> {
    let fixture_path = dir.join("fixture.json");
    anyhow::ensure!(
        fixture_path.is_file(),
        "{} has a model but no fixture.json: the Python side must write one (contract 7)",
        dir.display()
    );
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(&fixture_path)?)?;
    let model = LoadedModel::load(&dir.join("model.card.json"))?;
    if let Some(features) = fixture.get("features") {
        let listed: Vec<String> = serde_json::from_value(features.clone())?;
        anyhow::ensure!(
            listed == model.card.features,
            "fixture and card list different features"
        );
    }
    let windows = fixture["windows"]
        .as_array()
        .filter(|w| !w.is_empty())
        .ok_or_else(|| anyhow::anyhow!("{}: no windows", fixture_path.display()))?;
    for (i, case) in windows.iter().enumerate() {
        let raw: Vec<Vec<Option<f64>>> = serde_json::from_value(case["window"].clone())?;
        anyhow::ensure!(
            raw.len() == model.card.features.len()
                && raw.iter().all(|r| r.len() == model.card.window),
            "window {i} is not features x window"
        );
        let filled = fill(&RawWindow::from_values(raw), &model.card.medians);
        if let Some(expected) = case.get("filled") {
            let expected: Vec<Vec<f64>> = serde_json::from_value(expected.clone())?;
            let flat: Vec<f64> = expected.into_iter().flatten().collect();
            anyhow::ensure!(
                filled.iter().zip(&flat).all(|(a, b)| close(*a, *b)),
                "window {i}: filling differs from the Python reference"
            );
        }
        let out = model.run(&filled)?;
        let score = case["score"]
            .as_f64()
            .ok_or_else(|| anyhow::anyhow!("window {i}: no score"))?;
        anyhow::ensure!(
            close(out.score, score),
            "window {i}: score {} vs {score}",
            out.score
        );
        let contributions: Vec<f64> = serde_json::from_value(case["contributions"].clone())?;
        anyhow::ensure!(
            contributions.len() == out.contributions.len(),
            "window {i}: contribution count"
        );
        for (f, (a, b)) in out.contributions.iter().zip(&contributions).enumerate() {
            anyhow::ensure!(
                close(*a, *b),
                "window {i} feature {f}: contribution {a} vs {b}"
            );
        }
    }
    Ok(windows.len())
}

#[test]
fn every_shipped_model_matches_its_python_fixture() -> anyhow::Result<()> {
    let mut checked = 0;
    for dir in model_dirs() {
        if !dir.join("model.card.json").is_file() {
            continue;
        }
        let n = check_dir(&dir).map_err(|e| e.context(dir.display().to_string()))?;
        checked += n;
    }
    assert!(
        checked >= 3,
        "the test fixture alone has 3 windows; checked {checked}"
    );
    Ok(())
}

#[test]
fn the_fixture_model_names_the_feature_that_moved() -> anyhow::Result<()> {
    let dir = &model_dirs()[0];
    let model = LoadedModel::load(&dir.join("model.card.json"))?;
    let card = &model.card;
    let nx = card
        .features
        .iter()
        .position(|f| f == "dohguard:nxdomain:ratio")
        .expect("the fixture reads the NXDOMAIN share");
    let mut raw = RawWindow::from_values(
        card.medians
            .iter()
            .map(|m| vec![Some(f64::from(*m)); card.window])
            .collect(),
    );
    let quiet = model.run(&fill(&raw, &card.medians))?;
    assert!(quiet.score < 0.01, "medians are normal: {}", quiet.score);
    for v in raw.values[nx].iter_mut().rev().take(5) {
        *v = Some(0.5);
    }
    let storm = model.run(&fill(&raw, &card.medians))?;
    assert!(
        storm.score > card.threshold,
        "an NXDOMAIN storm scores {}",
        storm.score
    );
    let top = dohguard_anomaly::decision::top_features(&storm.contributions, 1);
    assert_eq!(card.features[top[0]], "dohguard:nxdomain:ratio");
    Ok(())
}
