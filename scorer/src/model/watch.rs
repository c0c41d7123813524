//! Hot reload on file change: the model card and its ONNX file are watched
//! ([`dohguard_serving::watch`]: polled modification times, acted on once settled) and the
//! model is reloaded when either changes.

use std::{path::PathBuf, time::Duration};

use dohguard_serving::watch::FileWatch;

use super::Model;

fn files(model: &Model) -> Vec<PathBuf> {
    let info = model.info();
    vec![info.card_path.clone(), info.card.onnx_path(&info.card_path)]
}

/// Returns the watch loop, which runs until its task is aborted. The files' current stamps are
/// read here, when `watch` is called, so any change made after this call is seen. A change
/// is acted on once the files have stopped changing for one interval (a writer may still be
/// copying them).
pub fn watch(model: Model, interval: Duration) -> impl std::future::Future<Output = ()> {
    let mut watch = FileWatch::new(&files(&model), interval);
    async move {
        loop {
            watch.changed(|| files(&model)).await;
            tracing::info!("model files changed on disk; reloading");
            // Success or failure, the watch remembers these stamps so a broken file is not
            // retried in a loop; the next change triggers the next attempt.
            let _ = model.reload(None).await;
        }
    }
}
