//! Hot reload on file change: polls the modification times of the model's files (its card
//! and ONNX file) and reports a change once the files have stopped changing for one interval
//! (a writer may still be copying them). Polling (rather than inotify through `notify`) is
//! deliberate: it sees atomic renames, files replaced on bind mounts and NFS alike, and a
//! one-second poll of two `stat` calls costs nothing.

use std::{
    path::PathBuf,
    time::{Duration, SystemTime},
};

/// The files' modification times, in order (`None`: the file cannot be read).
pub type Stamps = Vec<Option<SystemTime>>;

pub fn stamps(files: &[PathBuf]) -> Stamps {
    files
        .iter()
        .map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
        .collect()
}

/// Watches a set of files for a settled change.
#[derive(Debug)]
pub struct FileWatch {
    interval: Duration,
    ticker: Option<tokio::time::Interval>,
    seen: Stamps,
}

impl FileWatch {
    /// The stamps of `files` are read now, so any change made after this call is seen.
    pub fn new(files: &[PathBuf], interval: Duration) -> Self {
        Self {
            interval,
            ticker: None,
            seen: stamps(files),
        }
    }

    /// Returns once the stamps of `files()` (asked each interval: a reload may name other
    /// files) differ from the last seen and have stayed the same for one interval; those
    /// stamps are then the seen ones, whatever the caller's reload makes of the files, so a
    /// broken file is not retried in a loop: the next change triggers the next attempt.
    pub async fn changed(&mut self, files: impl Fn() -> Vec<PathBuf>) {
        let interval = self.interval;
        let ticker = self.ticker.get_or_insert_with(|| {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker
        });
        let mut changed_at: Option<Stamps> = None;
        loop {
            ticker.tick().await;
            let now = stamps(&files());
            if now == self.seen {
                changed_at = None;
                continue;
            }
            if changed_at.as_ref() != Some(&now) {
                changed_at = Some(now); // wait one more interval for the files to settle
                continue;
            }
            self.seen = now;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_change_is_reported_once_it_has_settled() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("model.card.json");
        std::fs::write(&file, "1").unwrap();
        let past = SystemTime::now() - Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .and_then(|f| f.set_modified(past))
            .unwrap();
        let files = vec![file.clone(), dir.path().join("absent.onnx")];
        let mut watch = FileWatch::new(&files, Duration::from_millis(10));
        std::fs::write(&file, "2").unwrap();
        let seen_before = stamps(&files);
        tokio::time::timeout(Duration::from_secs(10), watch.changed(|| files.clone()))
            .await
            .expect("the change is reported");
        assert_eq!(watch.seen, seen_before);
        assert_eq!(watch.seen[1], None, "a missing file is a stamp of its own");
        let quiet =
            tokio::time::timeout(Duration::from_millis(100), watch.changed(|| files.clone())).await;
        assert!(quiet.is_err(), "no change, no report");
    }
}
