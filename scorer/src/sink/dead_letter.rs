//! Dead letters: documents Elasticsearch refused one by one (a per-document 4xx in a bulk
//! response, e.g. a mapping error), kept for an operator in `<spool dir>/rejected.ndjson`,
//! one JSON object per line: `{"doc": {"_index", "_id", "source"}, "error": "...", "time": "RFC 3339"}`.
//!
//! After fixing the cause (the mapping, the template, the document's producer),
//! `dohguard-scorer replay-dead-letters --config ...` runs [`replay`]: it takes the file
//! (renamed to `rejected.replay-<ms>.ndjson` under an exclusive `flock`, so a running scorer
//! starts a fresh file meanwhile), sends every document again with `create` and its original
//! `_id` (a document stored in the meantime answers 409 and counts as done), appends what is
//! still refused or undeliverable back to `rejected.ndjson`, and deletes the taken file. A replay
//! cut short leaves the taken file, which the next replay picks up first.

use std::{
    fs::{File, OpenOptions},
    io::{self, BufRead, BufReader, Write},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::{bulk::EsClient, document::Doc, SinkError};
use crate::metrics::SinkCounters;

/// The dead-letter file in the spool folder.
pub const FILE: &str = "rejected.ndjson";
const TAKEN_PREFIX: &str = "rejected.replay-";

/// One refused document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetter {
    pub doc: Doc,
    /// Elasticsearch's error for this document.
    pub error: String,
    /// When it was refused (RFC 3339, UTC).
    pub time: String,
}

impl DeadLetter {
    pub fn now(doc: Doc, error: String) -> Self {
        let time = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .expect("UTC time formats as RFC 3339");
        Self { doc, error, time }
    }
}

fn lock(file: File) -> io::Result<Flock<File>> {
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| io::Error::from(errno))
}

/// Appends `letters` to `<dir>/rejected.ndjson` in one write, then syncs it. Holds the file's
/// lock, and reopens when a replay renamed the file between open and lock.
pub fn append(dir: &Path, letters: &[DeadLetter]) -> io::Result<()> {
    if letters.is_empty() {
        return Ok(());
    }
    let mut bytes = Vec::new();
    for letter in letters {
        serde_json::to_writer(&mut bytes, letter).map_err(io::Error::other)?;
        bytes.push(b'\n');
    }
    let path = dir.join(FILE);
    loop {
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let mut file = lock(file)?;
        let still_there = std::fs::metadata(&path)
            .is_ok_and(|m| m.ino() == file.metadata().map_or(0, |f| f.ino()));
        if !still_there {
            continue; // renamed away by a replay: write to the new file
        }
        file.write_all(&bytes)?;
        return file.sync_data();
    }
}

/// Reads a dead-letter file; lines that do not parse are counted, not fatal.
pub fn read(path: &Path) -> io::Result<(Vec<DeadLetter>, usize)> {
    let mut letters = Vec::new();
    let mut bad = 0;
    for line in BufReader::new(File::open(path)?).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(&line) {
            Ok(l) => letters.push(l),
            Err(e) => {
                bad += 1;
                tracing::error!(file = %path.display(), error = %e, "dead-letter line does not parse; left out");
            }
        }
    }
    Ok((letters, bad))
}

/// Takes the current dead-letter file for replay (renamed under its lock), and returns every
/// taken file, oldest first, including ones an earlier replay left behind.
fn take(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let path = dir.join(FILE);
    match OpenOptions::new().append(true).open(&path) {
        Ok(file) => {
            let _locked = lock(file)?;
            let mut ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis();
            let mut target = dir.join(format!("{TAKEN_PREFIX}{ms:016}.ndjson"));
            while target.exists() {
                ms += 1;
                target = dir.join(format!("{TAKEN_PREFIX}{ms:016}.ndjson"));
            }
            std::fs::rename(&path, target)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut taken: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(TAKEN_PREFIX) && n.ends_with(".ndjson"))
        })
        .collect();
    taken.sort();
    Ok(taken)
}

/// What a replay did, printed by the command as one JSON line.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ReplaySummary {
    /// Dead letters read.
    pub read: u64,
    /// Stored now.
    pub stored: u64,
    /// Already stored (409): done.
    pub duplicates: u64,
    /// Refused again: back in the dead-letter file with the new error.
    pub rejected_again: u64,
    /// Not delivered (Elasticsearch down, or the credential refused): back in the file as they were.
    pub kept: u64,
    /// Lines that did not parse (left in place of nothing; logged).
    pub unreadable: u64,
}

impl ReplaySummary {
    /// True when every dead letter is now stored.
    pub fn all_stored(&self) -> bool {
        self.rejected_again == 0 && self.kept == 0 && self.unreadable == 0
    }
}

/// Replays the dead letters of spool folder `dir` through `es` in chunks of `chunk`.
pub async fn replay(es: &EsClient, dir: &Path, chunk: usize) -> Result<ReplaySummary, SinkError> {
    let io_err = |source| SinkError::Spool {
        path: dir.display().to_string(),
        source,
    };
    let counters = SinkCounters::default();
    let mut summary = ReplaySummary::default();
    let mut stopped = false;
    for taken in take(dir).map_err(io_err)? {
        let (letters, bad) = read(&taken).map_err(io_err)?;
        summary.read += letters.len() as u64;
        summary.unreadable += bad as u64;
        let mut back = Vec::new();
        for part in letters.chunks(chunk.max(1)) {
            if stopped {
                // Elasticsearch is away or refuses the credential: keep the rest untouched.
                summary.kept += part.len() as u64;
                back.extend(part.iter().cloned());
                continue;
            }
            let docs = part.iter().map(|l| l.doc.clone()).collect();
            let d = es.deliver(docs, &counters).await;
            summary.stored += d.stored;
            summary.duplicates += d.duplicates;
            summary.rejected_again += d.rejected.len() as u64;
            summary.kept += d.undelivered.len() as u64;
            stopped = !d.undelivered.is_empty();
            if let Some(r) = &d.refused {
                tracing::error!(status = r.status, reason = %r.reason, "Elasticsearch refused the credential; dead letters kept");
            }
            back.extend(
                d.rejected
                    .into_iter()
                    .map(|(doc, e)| DeadLetter::now(doc, e)),
            );
            let undelivered: std::collections::HashSet<&str> =
                d.undelivered.iter().map(|doc| doc.id.as_str()).collect();
            back.extend(
                part.iter()
                    .filter(|l| undelivered.contains(l.doc.id.as_str()))
                    .cloned(),
            );
        }
        append(dir, &back).map_err(io_err)?;
        if bad > 0 {
            // Keep what could not be read for a person to look at; it is not replayed again.
            let kept = taken.with_extension("unreadable");
            std::fs::rename(&taken, &kept).map_err(io_err)?;
        } else {
            std::fs::remove_file(&taken).map_err(io_err)?;
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn letter(i: usize) -> DeadLetter {
        DeadLetter::now(
            Doc {
                index: "logs-t-default".into(),
                id: format!("id-{i}"),
                source: RawValue::from_string(format!("{{\"n\":{i}}}")).unwrap(),
                slot: None,
            },
            "mapper_parsing_exception".into(),
        )
    }

    #[test]
    fn append_take_and_append_again() {
        let dir = tempfile::tempdir().unwrap();
        append(dir.path(), &[letter(1), letter(2)]).unwrap();
        append(dir.path(), &[letter(3)]).unwrap();
        let (read_back, bad) = read(&dir.path().join(FILE)).unwrap();
        assert_eq!(bad, 0);
        let ids: Vec<&str> = read_back.iter().map(|l| l.doc.id.as_str()).collect();
        assert_eq!(ids, ["id-1", "id-2", "id-3"]);
        assert!(read_back[0].time.ends_with('Z'), "{}", read_back[0].time);
        assert_eq!(read_back[0].error, "mapper_parsing_exception");

        let taken = take(dir.path()).unwrap();
        assert_eq!(taken.len(), 1);
        assert!(!dir.path().join(FILE).exists(), "taken away");
        // A writer after the take starts a new file; the taken one is untouched.
        append(dir.path(), &[letter(4)]).unwrap();
        assert_eq!(read(&taken[0]).unwrap().0.len(), 3);
        assert_eq!(read(&dir.path().join(FILE)).unwrap().0.len(), 1);
        // A second take finds the left-over taken file first, then the new one.
        let again = take(dir.path()).unwrap();
        assert_eq!(again.len(), 2);
        assert_eq!(again[0], taken[0]);
    }
}
