//! The durable on-disk spool: verdict documents Elasticsearch could not take (down, failing,
//! or the memory queue full), kept in order until they can be replayed.
//!
//! Layout: `<dir>/segment-<16-digit sequence>.ndjson`, one JSON object per line
//! (`{"_index", "_id", "source"}`), append-only. Only the newest segment is written to; it is
//! *sealed* (closed, and a new one opened) when it reaches `segment_bytes` or when the
//! replayer asks for it. Sealed segments are replayed oldest first and deleted once every
//! document in them is confirmed stored, so a crash mid-replay replays a segment again (the
//! `create` action with the same `_id` makes that harmless). Segments left by a previous
//! process are found and replayed at start. Rejected documents go to `<dir>/rejected.ndjson` (`super::dead_letter`).
//!
//! fsync policy (`spool.fsync`): every append is one `write` of whole lines, so a process
//! crash loses nothing that was appended. Against power loss: `always` fsyncs each append;
//! `interval` (default) fsyncs at most once per `fsync_interval_ms` (and on seal and on
//! shutdown), so up to that much is at risk; `never` leaves it to the kernel. A torn last
//! line (power loss mid-write) is skipped on replay and logged.

use std::{
    fs::{File, OpenOptions},
    io::{self, BufRead, BufReader, Write},
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant},
};

use super::document::Doc;
use crate::config::FsyncPolicy;

const PREFIX: &str = "segment-";
const SUFFIX: &str = ".ndjson";

struct Current {
    file: File,
    path: PathBuf,
    seq: u64,
    bytes: u64,
    synced_at: Instant,
    dirty: bool,
}

/// The spool; all methods are blocking (small local writes) and thread-safe.
pub struct Spool {
    dir: PathBuf,
    policy: FsyncPolicy,
    fsync_interval: Duration,
    segment_bytes: u64,
    current: Mutex<Current>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{seq:016}{SUFFIX}"))
}

fn segment_seq(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    name.strip_prefix(PREFIX)?
        .strip_suffix(SUFFIX)?
        .parse()
        .ok()
}

fn open_segment(dir: &Path, seq: u64) -> io::Result<Current> {
    let path = segment_path(dir, seq);
    let file = OpenOptions::new().create(true).append(true).open(&path)?;
    Ok(Current {
        file,
        path,
        seq,
        bytes: 0,
        synced_at: Instant::now(),
        dirty: false,
    })
}

/// What reading a segment found.
#[derive(Debug, Default)]
pub struct SegmentContents {
    pub docs: Vec<Doc>,
    /// Lines that did not parse (a torn write); logged and skipped.
    pub bad_lines: usize,
}

impl Spool {
    /// Opens (creating) the spool folder. Segments found there are kept for replay; writing
    /// continues in a new segment after the newest one.
    pub fn open(
        dir: &Path,
        policy: FsyncPolicy,
        fsync_interval: Duration,
        segment_bytes: u64,
    ) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let next = list_segments(dir)?
            .last()
            .and_then(|p| segment_seq(p))
            .map_or(1, |s| s + 1);
        Ok(Self {
            dir: dir.to_owned(),
            policy,
            fsync_interval,
            segment_bytes,
            current: Mutex::new(open_segment(dir, next)?),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends documents, in order, in one write.
    pub fn append(&self, docs: &[Doc]) -> io::Result<()> {
        if docs.is_empty() {
            return Ok(());
        }
        let mut buf =
            Vec::with_capacity(docs.iter().map(Doc::approx_bytes).sum::<usize>() + docs.len());
        for doc in docs {
            serde_json::to_writer(&mut buf, doc).map_err(io::Error::other)?;
            buf.push(b'\n');
        }
        let mut cur = self.current.lock().expect("spool lock poisoned");
        cur.file.write_all(&buf)?;
        cur.bytes += buf.len() as u64;
        cur.dirty = true;
        match self.policy {
            FsyncPolicy::Always => sync(&mut cur)?,
            FsyncPolicy::Interval if cur.synced_at.elapsed() >= self.fsync_interval => {
                sync(&mut cur)?
            }
            _ => {}
        }
        if cur.bytes >= self.segment_bytes {
            self.rotate(&mut cur)?;
        }
        Ok(())
    }

    /// fsyncs the open segment if the interval policy says it is due (called periodically).
    pub fn sync_if_due(&self) -> io::Result<()> {
        let mut cur = self.current.lock().expect("spool lock poisoned");
        if self.policy != FsyncPolicy::Never
            && cur.dirty
            && cur.synced_at.elapsed() >= self.fsync_interval
        {
            sync(&mut cur)?;
        }
        Ok(())
    }

    /// fsyncs the open segment now (shutdown).
    pub fn sync_now(&self) -> io::Result<()> {
        let mut cur = self.current.lock().expect("spool lock poisoned");
        if cur.dirty {
            sync(&mut cur)?;
        }
        Ok(())
    }

    fn rotate(&self, cur: &mut Current) -> io::Result<()> {
        if self.policy != FsyncPolicy::Never {
            sync(cur)?;
        }
        *cur = open_segment(&self.dir, cur.seq + 1)?;
        Ok(())
    }

    /// Seals the open segment if it holds anything, then lists every sealed segment, oldest first.
    pub fn seal_and_list(&self) -> io::Result<Vec<PathBuf>> {
        let current_path = {
            let mut cur = self.current.lock().expect("spool lock poisoned");
            if cur.bytes > 0 {
                self.rotate(&mut cur)?;
            }
            cur.path.clone()
        };
        Ok(list_segments(&self.dir)?
            .into_iter()
            .filter(|p| *p != current_path)
            .collect())
    }

    /// Bytes waiting in the spool (sealed segments and the open one).
    pub fn pending_bytes(&self) -> u64 {
        list_segments(&self.dir)
            .unwrap_or_default()
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    /// True when nothing waits for replay.
    pub fn is_empty(&self) -> bool {
        self.pending_bytes() == 0
    }

    /// Reads a sealed segment.
    pub fn read_segment(path: &Path) -> io::Result<SegmentContents> {
        let mut out = SegmentContents::default();
        for line in BufReader::new(File::open(path)?).lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Doc>(&line) {
                Ok(doc) => out.docs.push(doc),
                Err(e) => {
                    out.bad_lines += 1;
                    tracing::error!(segment = %path.display(), error = %e, "spool line does not parse (torn write?); skipped");
                }
            }
        }
        Ok(out)
    }

    /// Deletes a fully replayed segment.
    pub fn remove_segment(path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
}

fn sync(cur: &mut Current) -> io::Result<()> {
    cur.file.sync_data()?;
    cur.synced_at = Instant::now();
    cur.dirty = false;
    Ok(())
}

fn list_segments(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| segment_seq(p).is_some())
        .collect();
    segments.sort_by_key(|p| segment_seq(p));
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn doc(i: usize) -> Doc {
        Doc {
            index: "logs-t-default".into(),
            id: format!("id-{i}"),
            source: RawValue::from_string(format!("{{\"n\":{i}}}")).unwrap(),
        }
    }

    #[test]
    fn appends_seals_and_reads_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let spool =
            Spool::open(dir.path(), FsyncPolicy::Always, Duration::from_secs(1), 150).unwrap();
        for i in 0..10 {
            spool.append(&[doc(i)]).unwrap();
        }
        let segments = spool.seal_and_list().unwrap();
        assert!(segments.len() > 1, "150-byte segments rotate");
        let ids: Vec<String> = segments
            .iter()
            .flat_map(|s| Spool::read_segment(s).unwrap().docs)
            .map(|d| d.id)
            .collect();
        assert_eq!(ids, (0..10).map(|i| format!("id-{i}")).collect::<Vec<_>>());
    }

    #[test]
    fn reopening_keeps_old_segments_and_skips_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spool = Spool::open(
                dir.path(),
                FsyncPolicy::Never,
                Duration::from_secs(1),
                1 << 20,
            )
            .unwrap();
            spool.append(&[doc(1), doc(2)]).unwrap();
        }
        // Simulate a torn write at the end of the old segment.
        let old = list_segments(dir.path()).unwrap().pop().unwrap();
        OpenOptions::new()
            .append(true)
            .open(&old)
            .unwrap()
            .write_all(b"{\"_index\":\"x\",\"_i")
            .unwrap();

        let spool = Spool::open(
            dir.path(),
            FsyncPolicy::Never,
            Duration::from_secs(1),
            1 << 20,
        )
        .unwrap();
        spool.append(&[doc(3)]).unwrap();
        let segments = spool.seal_and_list().unwrap();
        assert_eq!(segments.len(), 2);
        let first = Spool::read_segment(&segments[0]).unwrap();
        assert_eq!(first.docs.len(), 2);
        assert_eq!(first.bad_lines, 1);
        assert_eq!(
            Spool::read_segment(&segments[1]).unwrap().docs[0].id,
            "id-3"
        );
        for s in &segments {
            Spool::remove_segment(s).unwrap();
        }
        assert!(spool.is_empty());
    }
}
