//! Hot reload on file change: polls the modification times of the model card and its ONNX
//! file and reloads when either changes. Polling (rather than inotify through `notify`) is
//! deliberate: it sees atomic renames, files replaced on bind mounts and NFS alike, and a
//! one-second poll of two `stat` calls costs nothing.

use std::{
    path::Path,
    time::{Duration, SystemTime},
};

use super::Model;

fn stamp(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn stamps(model: &Model) -> (Option<SystemTime>, Option<SystemTime>) {
    let info = model.info();
    let onnx = info.card.onnx_path(&info.card_path);
    (stamp(&info.card_path), stamp(&onnx))
}

/// Returns the watch loop, which runs until its task is aborted. The files' current stamps are
/// read here, when `watch` is called, so any change made after this call is seen. A change
/// is acted on once the files have stopped changing for one interval (a writer may still be
/// copying them).
pub fn watch(model: Model, interval: Duration) -> impl std::future::Future<Output = ()> {
    let seen = stamps(&model);
    watch_from(model, interval, seen)
}

async fn watch_from(
    model: Model,
    interval: Duration,
    mut seen: (Option<SystemTime>, Option<SystemTime>),
) {
    let mut changed_at: Option<(Option<SystemTime>, Option<SystemTime>)> = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = stamps(&model);
        if now == seen {
            changed_at = None;
            continue;
        }
        if changed_at != Some(now) {
            changed_at = Some(now); // wait one more interval for the files to settle
            continue;
        }
        tracing::info!("model files changed on disk; reloading");
        // Success or failure, remember these stamps so a broken file is not retried in a loop;
        // the next change triggers the next attempt.
        let _ = model.reload(None).await;
        seen = now;
        changed_at = None;
    }
}
