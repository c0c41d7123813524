//! The on-disk spool, which is also the sink's write-ahead journal: verdict documents are kept
//! here, in order, until Elasticsearch has confirmed them.
//!
//! Layout: `<dir>/segment-<16-digit sequence>.ndjson`, one JSON object per line
//! (`{"_index", "_id", "source"}`), append-only, one `write` per append. Only the newest
//! segment is written to; it is *sealed* (closed, and a new one opened) when it reaches
//! `segment_bytes`, when the replayer needs it, or when everything in it is confirmed.
//! Documents Elasticsearch refused as invalid go to `<dir>/rejected.ndjson` (`super::dead_letter`).
//!
//! Journal (`spool.journal = true`, default): every accepted document is appended here
//! *before* the caller is answered ([`Track::Live`]), then also queued in memory for live
//! delivery. Each document keeps a [`Slot`] (segment, line); the sink reports it
//! [settled](Spool::settle) once Elasticsearch confirmed it (201, 409 or dead-lettered), or
//! [marks it for replay](Spool::mark_replay) when live delivery failed or the memory queue was
//! full. A sealed segment whose lines are all settled is deleted. Segments found at start (a
//! crash, a kill, a shutdown past its deadline) are replayed whole: documents Elasticsearch
//! already has answer 409 to `create` with the same `_id`, so nothing is stored twice.
//! Without the journal only documents that could not be delivered are appended
//! ([`Track::Replay`]).
//!
//! Bounds and faults:
//! - the spool holds at most `max_bytes`; an append past it is refused with
//!   [`AppendError::Full`] (a warning is logged at 80%, an error at the bound, an info line when
//!   it is back under 70%);
//! - a failed append (ENOSPC, EIO) is cut back to the last whole line (`ftruncate`), so the next
//!   append never lands after a partial line; if even that fails, appends are refused until it
//!   succeeds;
//! - a segment that cannot be read, or holds lines that do not parse, is *quarantined*: its good
//!   lines are replayed, then it is moved to `<dir>/quarantine/` for an operator, and replay goes
//!   on with the next segment.
//!
//! fsync policy (`spool.fsync`): a process crash (SIGKILL included) loses nothing that was
//! appended. Against power loss: `always` fsyncs each append; `interval` (default) at most once
//! per `fsync_interval_ms` (and on seal and shutdown), so up to that much is at risk; `never`
//! leaves it to the kernel.

use std::{
    collections::BTreeMap,
    fs::{File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant},
};

use thiserror::Error;

use super::document::Doc;
use crate::config::FsyncPolicy;

const PREFIX: &str = "segment-";
const SUFFIX: &str = ".ndjson";
/// Folder (inside the spool) that unreadable or corrupt segments are moved to.
pub const QUARANTINE: &str = "quarantine";

/// Where a journaled document sits: its segment and line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slot {
    pub seq: u64,
    pub line: u32,
}

/// What the spool does with appended documents until they are settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    /// Also queued for live delivery: the sink settles or re-marks each one by its [`Slot`].
    Live,
    /// Waits for the replayer.
    Replay,
}

/// Why an append did not happen; nothing of it is on disk.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AppendError {
    #[error("spool full: {used} + {want} bytes would pass spool.max_bytes = {max}")]
    Full { used: u64, want: u64, max: u64 },
    #[error("spool write failed: {0}")]
    Io(#[from] io::Error),
}

/// The first slot of an append; document `i` of it sits at line `first + i`.
#[derive(Debug, Clone, Copy)]
pub struct Appended {
    pub seq: u64,
    pub first: u32,
}

struct Current {
    file: File,
    path: PathBuf,
    seq: u64,
    bytes: u64,
    synced_at: Instant,
    dirty: bool,
    /// A failed append could not be cut back: the length to cut to before the next append.
    truncate_to: Option<u64>,
}

/// Per-segment bookkeeping.
#[derive(Debug, Default)]
struct SegState {
    bytes: u64,
    lines: u32,
    settled: u32,
    /// Lines waiting for the replayer.
    replay: Vec<u32>,
    /// Found at start: every line is replayed (counts unknown until read).
    whole: bool,
    /// Lines did not parse: moved to quarantine once the good ones are settled.
    corrupt: bool,
}

struct Inner {
    current: Current,
    segments: BTreeMap<u64, SegState>,
    total: u64,
    near_warned: bool,
    full_logged: bool,
}

/// The spool; all methods are blocking (small local writes) and thread-safe.
pub struct Spool {
    dir: PathBuf,
    policy: FsyncPolicy,
    fsync_interval: Duration,
    segment_bytes: u64,
    max_bytes: u64,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Documents read back for the replayer, each with its [`Slot`] set.
#[derive(Debug, Default)]
pub struct Taken {
    pub docs: Vec<Doc>,
    /// Lines that did not parse (the segment will be quarantined).
    pub bad_lines: usize,
}

/// What [`Spool::collect`] did.
#[derive(Debug, Default)]
pub struct Collected {
    pub deleted: usize,
    /// Corrupt segments moved to the quarantine folder (new path).
    pub quarantined: Vec<PathBuf>,
}

/// A segment that could not be read at all; already moved to the quarantine folder.
#[derive(Debug, Error)]
#[error("spool segment {path} unreadable ({error}); quarantined as {moved_to}")]
pub struct Unreadable {
    pub path: PathBuf,
    pub moved_to: String,
    pub error: io::Error,
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
    let bytes = file.metadata()?.len();
    Ok(Current {
        file,
        path,
        seq,
        bytes,
        synced_at: Instant::now(),
        dirty: false,
        truncate_to: None,
    })
}

/// Parses one segment's bytes: `(line number, document)` for every line that parses, and how
/// many did not. Line numbers count every non-empty line, parsed or not.
pub fn parse_segment(bytes: &[u8]) -> (Vec<(u32, Doc)>, usize) {
    let mut docs = Vec::new();
    let mut bad = 0;
    let lines = bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty());
    for (n, line) in lines.enumerate() {
        match serde_json::from_slice::<Doc>(line) {
            Ok(doc) => docs.push((n as u32, doc)),
            Err(_) => bad += 1,
        }
    }
    (docs, bad)
}

impl Spool {
    /// Opens (creating) the spool folder. Segments found there are kept for replay (whole);
    /// writing continues in a new segment after the newest one.
    pub fn open(
        dir: &Path,
        policy: FsyncPolicy,
        fsync_interval: Duration,
        segment_bytes: u64,
        max_bytes: u64,
    ) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut segments = BTreeMap::new();
        let mut total = 0;
        let mut next = 1;
        for path in list_segments(dir)? {
            let seq = segment_seq(&path).expect("listed segments have a sequence");
            next = seq + 1;
            let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
            if bytes == 0 && path.is_file() {
                std::fs::remove_file(&path)?;
                continue;
            }
            total += bytes;
            segments.insert(
                seq,
                SegState {
                    bytes,
                    whole: true,
                    ..SegState::default()
                },
            );
        }
        if !segments.is_empty() {
            tracing::info!(dir = %dir.display(), segments = segments.len(), bytes = total, "spool: segments from an earlier run will be replayed");
        }
        let current = open_segment(dir, next)?;
        segments.insert(next, SegState::default());
        Ok(Self {
            dir: dir.to_owned(),
            policy,
            fsync_interval,
            segment_bytes,
            max_bytes,
            inner: Mutex::new(Inner {
                current,
                segments,
                total,
                near_warned: false,
                full_logged: false,
            }),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("spool lock poisoned")
    }

    /// Appends documents, in order, in one write; all of them or none. With [`Track::Live`]
    /// the caller gives each document its slot (`first + i`) and later settles it.
    pub fn append(&self, docs: &[Doc], track: Track) -> Result<Appended, AppendError> {
        let mut buf =
            Vec::with_capacity(docs.iter().map(Doc::approx_bytes).sum::<usize>() + docs.len());
        for doc in docs {
            serde_json::to_writer(&mut buf, doc).map_err(io::Error::other)?;
            buf.push(b'\n');
        }
        let want = buf.len() as u64;
        let mut inner = self.lock();
        let inner = &mut *inner;
        if inner.total + want > self.max_bytes {
            if !inner.full_logged {
                inner.full_logged = true;
                tracing::error!(dir = %self.dir.display(), max_bytes = self.max_bytes, "SPOOL FULL: new verdict documents are refused until Elasticsearch drains it");
            }
            return Err(AppendError::Full {
                used: inner.total,
                want,
                max: self.max_bytes,
            });
        }
        let cur = &mut inner.current;
        if let Some(good) = cur.truncate_to {
            cur.file.set_len(good)?;
            cur.truncate_to = None;
        }
        let good = cur.bytes;
        let sync_now = match self.policy {
            FsyncPolicy::Always => true,
            FsyncPolicy::Interval => cur.synced_at.elapsed() >= self.fsync_interval,
            FsyncPolicy::Never => false,
        };
        let written = cur.file.write_all(&buf).and_then(|()| {
            if sync_now {
                cur.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            // Cut the partial line off, so the next append starts on a line boundary.
            if let Err(t) = cur.file.set_len(good) {
                tracing::error!(segment = %cur.path.display(), error = %t, "cannot cut a failed spool append back; appends are refused until it can");
                cur.truncate_to = Some(good);
            }
            return Err(AppendError::Io(e));
        }
        cur.dirty = !sync_now;
        if sync_now {
            cur.synced_at = Instant::now();
        }
        cur.bytes += want;
        let seq = cur.seq;
        let state = inner.segments.entry(seq).or_default();
        let first = state.lines;
        state.lines += docs.len() as u32;
        state.bytes += want;
        if track == Track::Replay {
            state.replay.extend(first..state.lines);
        }
        inner.total += want;
        if !inner.near_warned && inner.total * 10 >= self.max_bytes * 8 {
            inner.near_warned = true;
            tracing::warn!(dir = %self.dir.display(), bytes = inner.total, max_bytes = self.max_bytes, "spool at 80% of spool.max_bytes: Elasticsearch is not keeping up");
        }
        if inner.current.bytes >= self.segment_bytes {
            self.rotate(inner)?;
        }
        Ok(Appended { seq, first })
    }

    /// Documents confirmed by Elasticsearch (stored, already there, or dead-lettered).
    pub fn settle(&self, slots: impl IntoIterator<Item = Slot>) {
        let mut inner = self.lock();
        for s in slots {
            if let Some(state) = inner.segments.get_mut(&s.seq) {
                state.settled += 1;
            }
        }
    }

    /// Documents whose live delivery failed (or never started): the replayer sends them.
    pub fn mark_replay(&self, slots: impl IntoIterator<Item = Slot>) {
        let mut inner = self.lock();
        for s in slots {
            if let Some(state) = inner.segments.get_mut(&s.seq) {
                state.replay.push(s.line);
            }
        }
    }

    /// True when documents wait for the replayer.
    pub fn needs_replay(&self) -> bool {
        self.lock()
            .segments
            .values()
            .any(|s| s.whole || !s.replay.is_empty())
    }

    /// Seals the open segment if it has replay work, then lists the sealed segments with
    /// replay work, oldest first.
    pub fn replay_queue(&self) -> io::Result<Vec<u64>> {
        let mut inner = self.lock();
        let cur = inner.current.seq;
        if inner
            .segments
            .get(&cur)
            .is_some_and(|s| !s.replay.is_empty())
        {
            self.rotate(&mut inner)?;
        }
        let cur = inner.current.seq;
        Ok(inner
            .segments
            .iter()
            .filter(|(seq, s)| **seq != cur && (s.whole || !s.replay.is_empty()))
            .map(|(seq, _)| *seq)
            .collect())
    }

    /// Takes the replay work of sealed segment `seq` and reads those documents back. A segment
    /// that cannot be read is moved to quarantine (its bytes leave the spool) and reported.
    pub fn take_replay(&self, seq: u64) -> Result<Taken, Unreadable> {
        let path = segment_path(&self.dir, seq);
        let (whole, mut lines) = {
            let mut inner = self.lock();
            let Some(state) = inner.segments.get_mut(&seq) else {
                return Ok(Taken::default());
            };
            (
                std::mem::take(&mut state.whole),
                std::mem::take(&mut state.replay),
            )
        };
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(error) => {
                let moved_to = self.quarantine(seq);
                return Err(Unreadable {
                    path,
                    moved_to,
                    error,
                });
            }
        };
        let (parsed, bad) = parse_segment(&bytes);
        let mut inner = self.lock();
        let Some(state) = inner.segments.get_mut(&seq) else {
            return Ok(Taken::default());
        };
        let all = whole || bad > 0;
        if whole || bad > 0 && !state.corrupt {
            // Every good line goes out (a stored one answers 409); bad ones count as settled.
            state.lines = (parsed.len() + bad) as u32;
            state.settled = bad as u32;
        }
        if bad > 0 {
            state.corrupt = true;
            tracing::error!(segment = %path.display(), bad_lines = bad, good_lines = parsed.len(), "spool segment has lines that do not parse; replaying the good ones, then quarantining it");
        }
        lines.sort_unstable();
        lines.dedup();
        let docs = parsed
            .into_iter()
            .filter(|(n, _)| all || lines.binary_search(n).is_ok())
            .map(|(line, mut doc)| {
                doc.slot = Some(Slot { seq, line });
                doc
            })
            .collect();
        Ok(Taken {
            docs,
            bad_lines: bad,
        })
    }

    /// Housekeeping: seals the open segment once everything in it is settled, deletes sealed
    /// segments whose lines are all settled, and quarantines settled corrupt ones.
    pub fn collect(&self) -> io::Result<Collected> {
        let mut out = Collected::default();
        let mut inner = self.lock();
        let cur = inner.current.seq;
        if inner
            .segments
            .get(&cur)
            .is_some_and(|s| s.lines > 0 && s.settled >= s.lines && s.replay.is_empty())
        {
            self.rotate(&mut inner)?;
        }
        let cur = inner.current.seq;
        let done: Vec<(u64, bool)> = inner
            .segments
            .iter()
            .filter(|(seq, s)| {
                **seq != cur && !s.whole && s.replay.is_empty() && s.settled >= s.lines
            })
            .map(|(seq, s)| (*seq, s.corrupt))
            .collect();
        drop(inner);
        for (seq, corrupt) in done {
            if corrupt {
                out.quarantined.push(PathBuf::from(self.quarantine(seq)));
            } else {
                let path = segment_path(&self.dir, seq);
                std::fs::remove_file(&path)?;
                let mut inner = self.lock();
                if let Some(s) = inner.segments.remove(&seq) {
                    inner.total -= s.bytes;
                }
                out.deleted += 1;
            }
        }
        self.note_level();
        Ok(out)
    }

    /// Moves segment `seq` to the quarantine folder and forgets it; returns where it went.
    fn quarantine(&self, seq: u64) -> String {
        let from = segment_path(&self.dir, seq);
        let folder = self.dir.join(QUARANTINE);
        let to = folder.join(from.file_name().expect("segment paths have a name"));
        let moved = std::fs::create_dir_all(&folder).and_then(|()| std::fs::rename(&from, &to));
        let mut inner = self.lock();
        if let Some(s) = inner.segments.remove(&seq) {
            inner.total -= s.bytes;
        }
        drop(inner);
        self.note_level();
        match moved {
            Ok(()) => to.display().to_string(),
            Err(e) => {
                tracing::error!(segment = %from.display(), error = %e, "could not move a bad spool segment to quarantine; it stays and is ignored until restart");
                format!("{} (not moved: {e})", from.display())
            }
        }
    }

    /// Logs the way back under the bound.
    fn note_level(&self) {
        let mut inner = self.lock();
        if (inner.near_warned || inner.full_logged) && inner.total * 10 < self.max_bytes * 7 {
            inner.near_warned = false;
            inner.full_logged = false;
            tracing::info!(
                bytes = inner.total,
                max_bytes = self.max_bytes,
                "spool back under 70% of spool.max_bytes"
            );
        }
    }

    /// fsyncs the open segment if the interval policy says it is due (called periodically).
    pub fn sync_if_due(&self) -> io::Result<()> {
        let mut inner = self.lock();
        let cur = &mut inner.current;
        if self.policy != FsyncPolicy::Never
            && cur.dirty
            && cur.synced_at.elapsed() >= self.fsync_interval
        {
            sync(cur)?;
        }
        Ok(())
    }

    /// fsyncs the open segment now (shutdown).
    pub fn sync_now(&self) -> io::Result<()> {
        let mut inner = self.lock();
        if inner.current.dirty {
            sync(&mut inner.current)?;
        }
        Ok(())
    }

    fn rotate(&self, inner: &mut Inner) -> io::Result<()> {
        if self.policy != FsyncPolicy::Never && inner.current.dirty {
            sync(&mut inner.current)?;
        }
        let next = inner.current.seq + 1;
        inner.current = open_segment(&self.dir, next)?;
        inner.segments.entry(next).or_default();
        Ok(())
    }

    /// Bytes in the spool: every segment not yet deleted (journaled documents included).
    pub fn pending_bytes(&self) -> u64 {
        self.lock().total
    }

    /// True when the spool holds nothing.
    pub fn is_empty(&self) -> bool {
        self.pending_bytes() == 0
    }
}

fn sync(cur: &mut Current) -> io::Result<()> {
    cur.file.sync_data()?;
    cur.synced_at = Instant::now();
    cur.dirty = false;
    Ok(())
}

/// Segment files in `dir`, oldest first.
pub fn list_segments(dir: &Path) -> io::Result<Vec<PathBuf>> {
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
            slot: None,
        }
    }

    fn open(dir: &Path, segment_bytes: u64, max_bytes: u64) -> Spool {
        Spool::open(
            dir,
            FsyncPolicy::Always,
            Duration::from_secs(1),
            segment_bytes,
            max_bytes,
        )
        .unwrap()
    }

    fn replay_all(spool: &Spool) -> Vec<String> {
        let mut ids = Vec::new();
        for seq in spool.replay_queue().unwrap() {
            let taken = spool.take_replay(seq).unwrap();
            spool.settle(taken.docs.iter().filter_map(|d| d.slot));
            ids.extend(taken.docs.into_iter().map(|d| d.id));
        }
        ids
    }

    #[test]
    fn replays_in_order_and_deletes_settled_segments() {
        let dir = tempfile::tempdir().unwrap();
        let spool = open(dir.path(), 150, 1 << 20);
        for i in 0..10 {
            spool.append(&[doc(i)], Track::Replay).unwrap();
        }
        assert!(
            list_segments(dir.path()).unwrap().len() > 1,
            "150-byte segments rotate"
        );
        assert!(spool.needs_replay());
        let ids = replay_all(&spool);
        assert_eq!(ids, (0..10).map(|i| format!("id-{i}")).collect::<Vec<_>>());
        spool.collect().unwrap();
        assert!(!spool.needs_replay());
        assert!(spool.is_empty(), "{} bytes left", spool.pending_bytes());
    }

    #[test]
    fn live_documents_are_deleted_once_settled_and_replayed_when_marked() {
        let dir = tempfile::tempdir().unwrap();
        let spool = open(dir.path(), 1 << 20, 1 << 20);
        let a = spool
            .append(&[doc(0), doc(1), doc(2)], Track::Live)
            .unwrap();
        let slot = |i: u32| Slot {
            seq: a.seq,
            line: a.first + i,
        };
        spool.settle([slot(0), slot(2)]);
        spool.collect().unwrap();
        assert!(!spool.is_empty(), "line 1 is not settled");
        spool.mark_replay([slot(1)]);
        assert_eq!(replay_all(&spool), vec!["id-1"]);
        spool.collect().unwrap();
        assert!(spool.is_empty());
    }

    #[test]
    fn a_reopened_spool_replays_everything_left() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spool = open(dir.path(), 1 << 20, 1 << 20);
            let a = spool.append(&[doc(1), doc(2)], Track::Live).unwrap();
            spool.settle([Slot {
                seq: a.seq,
                line: 0,
            }]);
        } // killed: nothing deleted, the settled line is sent again (409 in Elasticsearch)
        let spool = open(dir.path(), 1 << 20, 1 << 20);
        spool.append(&[doc(3)], Track::Replay).unwrap();
        assert_eq!(replay_all(&spool), vec!["id-1", "id-2", "id-3"]);
        spool.collect().unwrap();
        assert!(spool.is_empty());
    }

    #[test]
    fn the_byte_bound_refuses_whole_appends() {
        let dir = tempfile::tempdir().unwrap();
        let one = serde_json::to_vec(&doc(0)).unwrap().len() as u64 + 1;
        let spool = open(dir.path(), 1 << 20, one * 3);
        spool.append(&[doc(0), doc(1)], Track::Replay).unwrap();
        let err = spool.append(&[doc(2), doc(3)], Track::Replay).unwrap_err();
        assert!(matches!(err, AppendError::Full { .. }), "{err}");
        spool.append(&[doc(4)], Track::Replay).unwrap();
        assert_eq!(spool.pending_bytes(), one * 3);
        assert_eq!(replay_all(&spool), vec!["id-0", "id-1", "id-4"]);
        spool.collect().unwrap();
        spool.append(&[doc(5), doc(6)], Track::Replay).unwrap();
    }

    #[test]
    fn a_corrupt_segment_is_replayed_around_and_quarantined() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spool = open(dir.path(), 1 << 20, 1 << 20);
            spool.append(&[doc(0), doc(1)], Track::Replay).unwrap();
        }
        let first = list_segments(dir.path()).unwrap().pop().unwrap();
        let mut bytes = std::fs::read(&first).unwrap();
        let cut = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
        bytes.splice(cut..cut, b"\xff\xfe garbage {\"_index\n".iter().copied());
        std::fs::write(&first, bytes).unwrap();
        // An unreadable one too: a folder where a segment file should be.
        std::fs::create_dir(dir.path().join("segment-0000000000000050.ndjson")).unwrap();
        let spool = open(dir.path(), 1 << 20, 1 << 20);
        spool.append(&[doc(2)], Track::Replay).unwrap();
        let mut ids = Vec::new();
        let mut unreadable = 0;
        for seq in spool.replay_queue().unwrap() {
            match spool.take_replay(seq) {
                Ok(t) => {
                    spool.settle(t.docs.iter().filter_map(|d| d.slot));
                    ids.extend(t.docs.into_iter().map(|d| d.id));
                }
                Err(_) => unreadable += 1,
            }
        }
        assert_eq!(ids, vec!["id-0", "id-1", "id-2"]);
        assert_eq!(unreadable, 1);
        let c = spool.collect().unwrap();
        assert_eq!(c.quarantined.len(), 1);
        assert!(spool.is_empty());
        let q: Vec<_> = std::fs::read_dir(dir.path().join(QUARANTINE))
            .unwrap()
            .collect();
        assert_eq!(q.len(), 2, "the corrupt and the unreadable segment");
    }
}
