//! The Elasticsearch sink: every verdict becomes one ECS document, and nothing is lost.
//!
//! [`Sink::submit`] never waits: it puts the document on a bounded memory queue, or, when the
//! queue is full, appends it to the on-disk [`spool`]. The *writer* task drains the queue
//! into bulk requests (flushed by count, bytes or age), keeps up to `max_in_flight` of them
//! running, and retries 429/5xx/connection failures with exponential backoff; what still
//! fails is spooled and the sink switches to *spooling* mode, in which new batches go
//! straight to the spool so the spool keeps arrival order. The *replayer* task probes
//! Elasticsearch, re-installs the index template, replays sealed spool segments oldest
//! first, deletes each once confirmed, and switches back to live mode when the spool is
//! empty. Deterministic `_id`s plus the bulk `create` action make replays idempotent.
//!
//! With the journal on (`spool.journal`, default) every document is appended to the spool
//! *before* `submit` returns (so before `POST /v1/events` answers 202), and the queue carries
//! its [`spool::Slot`]: a confirmed document is settled, a failed one is marked for replay
//! instead of being written again. A SIGKILL then loses nothing that was acknowledged; at
//! start the journal left behind is replayed (409s for what was already stored). When the
//! spool is at `spool.max_bytes` (or the disk fails) new documents are refused: `/v1/events`
//! answers 503 and the filter keeps and resends the batch; direct `/v1/score` verdicts are
//! counted as dropped and a scorer gap marker is written once there is room again. Shutdown
//! is bounded by `spool.shutdown_timeout_ms`; what is not delivered by then stays spooled.
//!
//! A whole request refused with 401/403 (a revoked key, a missing privilege) puts the sink in
//! the *auth failed* state: nothing is dead-lettered, everything goes to the spool, one log
//! line and `sink_auth_failed` say why, and the replayer re-reads the credential file and
//! probes until it works. A refused template install is counted and delivery goes on.
//! Per-document refusals go to the [`dead_letter`] file.

pub mod auth;
pub mod bulk;
pub mod dead_letter;
pub mod document;
mod gate;
pub mod spool;
pub mod template;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use thiserror::Error;
use tokio::{
    sync::{mpsc, watch, Notify, Semaphore},
    task::JoinSet,
};

pub use bulk::EsClient;
pub use document::{Doc, VerdictEvent};
pub use spool::{AppendError, Spool};
use spool::{Slot, Track};

use crate::{
    config::{ElasticsearchConfig, SpoolConfig},
    metrics::Metrics,
};
use gate::{auth_ok, auth_refused, come_back, ensure_template};

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SinkError {
    #[error("Elasticsearch client: {0}")]
    Client(String),
    #[error("Elasticsearch unavailable: {0}")]
    Unavailable(String),
    #[error("Elasticsearch refused the credential ({status}): {reason}")]
    Unauthorized { status: u16, reason: String },
    #[error(transparent)]
    Credentials(#[from] auth::AuthError),
    #[error("scorer: configuration elasticsearch.tls_ca_file: {}: {source}", path.display())]
    CaFile {
        path: std::path::PathBuf,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("installing the index template: {0}")]
    Template(String),
    #[error("spool {path}: {source}")]
    Spool {
        path: String,
        source: std::io::Error,
    },
}

/// State shared by the handle, the writer and the replayer.
struct Shared {
    es: Option<EsClient>,
    spool: Spool,
    config: ElasticsearchConfig,
    replay_interval: Duration,
    metrics: Metrics,
    /// Live mode: batches go to Elasticsearch. Off while it is down or the spool is draining.
    live: AtomicBool,
    /// Wakes the replayer early (a batch was just spooled).
    wake: Notify,
    /// Documents are journaled before they are acknowledged (`spool.journal`).
    journal: bool,
    /// Direct-API documents refused by the spool, for the next scorer gap marker.
    pending_gap: AtomicU64,
    /// Documents in bulk requests now (lost if a shutdown abandons them without the journal).
    in_flight_docs: AtomicU64,
    /// Set when the shutdown deadline passes: the writer stops and spools what it holds.
    stop: watch::Sender<bool>,
    shutdown_timeout: Duration,
    /// Elasticsearch refused the credential (401/403); delivery waits for it to work.
    auth_failed: AtomicBool,
    /// The last template install was refused (logged once per streak).
    template_refused: AtomicBool,
}

/// How the sink is doing, for `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkState {
    /// Elasticsearch takes documents.
    Live,
    /// Elasticsearch is away or the spool is being replayed: documents go to the spool.
    Spooling,
    /// No Elasticsearch configured: documents only go to the spool.
    SpoolOnly,
    /// Elasticsearch refused the credential (401/403): documents go to the spool until it works.
    AuthFailed,
}

impl SinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Spooling => "spooling",
            Self::SpoolOnly => "spool_only",
            Self::AuthFailed => "auth_failed",
        }
    }
}

/// Handle for submitting verdicts; cheap to clone.
#[derive(Clone)]
pub struct Sink {
    tx: mpsc::Sender<Doc>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

/// The sink's background tasks; [`SinkTasks::shutdown`] flushes what is queued.
pub struct SinkTasks {
    writer: tokio::task::JoinHandle<()>,
    replayer: tokio::task::JoinHandle<()>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SinkTasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkTasks").finish_non_exhaustive()
    }
}

impl Sink {
    /// Opens the spool, installs the template (when Elasticsearch answers), and starts the
    /// writer and replayer tasks. Elasticsearch being down is not an error: the sink starts
    /// in spooling mode.
    pub async fn start(
        es: &ElasticsearchConfig,
        spool: &SpoolConfig,
        metrics: Metrics,
    ) -> Result<(Sink, SinkTasks), SinkError> {
        let spool_store = Spool::open(
            &spool.dir,
            spool.fsync,
            Duration::from_millis(spool.fsync_interval_ms),
            spool.segment_bytes,
            spool.max_bytes,
        )
        .map_err(|source| SinkError::Spool {
            path: spool.dir.display().to_string(),
            source,
        })?;
        let client = es
            .url
            .as_deref()
            .map(|u| EsClient::new(u, es))
            .transpose()?;
        metrics.spool_max_bytes.set(spool.max_bytes as i64);
        metrics.spool_bytes.set(spool_store.pending_bytes() as i64);
        let (stop, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            es: client,
            spool: spool_store,
            config: es.clone(),
            replay_interval: Duration::from_millis(spool.replay_interval_ms),
            metrics,
            live: AtomicBool::new(false),
            wake: Notify::new(),
            journal: spool.journal,
            pending_gap: AtomicU64::new(0),
            in_flight_docs: AtomicU64::new(0),
            stop,
            shutdown_timeout: Duration::from_millis(spool.shutdown_timeout_ms),
            auth_failed: AtomicBool::new(false),
            template_refused: AtomicBool::new(false),
        });
        if let Some(c) = &shared.es {
            match ensure_template(&shared, c).await {
                Ok(()) => shared
                    .live
                    .store(!shared.spool.needs_replay(), Ordering::SeqCst),
                Err(SinkError::Unauthorized { .. }) => {} // logged by ensure_template
                Err(e) => {
                    tracing::warn!(error = %e, "Elasticsearch not ready at start; spooling until it is")
                }
            }
        } else {
            tracing::warn!(dir = %spool.dir.display(), "no Elasticsearch configured: verdicts go to the spool only");
        }
        let (tx, rx) = mpsc::channel(es.queue_capacity);
        let writer = tokio::spawn(writer_loop(shared.clone(), rx, stop_rx));
        let replayer = tokio::spawn(replay_loop(shared.clone()));
        Ok((
            Sink {
                tx,
                shared: shared.clone(),
            },
            SinkTasks {
                writer,
                replayer,
                shared,
            },
        ))
    }

    /// Hands a verdict to the sink without waiting: journal and queue, else spool, else
    /// counted as dropped (and reported by a scorer gap marker later).
    pub fn submit(&self, event: VerdictEvent) {
        self.submit_all(std::iter::once(event));
    }

    /// [`Sink::submit`] for the verdicts of one request, in one append (one write).
    pub fn submit_all(&self, events: impl IntoIterator<Item = VerdictEvent>) {
        let index = &self.shared.config.index;
        let docs: Vec<Doc> = events.into_iter().map(|e| e.to_doc(index)).collect();
        let n = docs.len() as u64;
        if let Err(e) = self.submit_docs(docs) {
            // The caller has its verdict already and cannot resend: count the loss.
            self.shared.metrics.sink.dropped.inc_by(n);
            self.shared.pending_gap.fetch_add(n, Ordering::SeqCst);
            if !matches!(e, AppendError::Full { .. }) {
                tracing::error!(error = %e, docs = n, "verdict documents lost: the spool cannot be written");
            }
        }
    }

    /// The documents of one filter event batch (and its gap marker, when it reports drops);
    /// returns how many query documents were handed over. An error means none were taken
    /// (spool full or unwritable): the sender keeps the batch and sends it again.
    pub fn submit_batch(&self, batch: &dohguard_schema::EventBatch) -> Result<usize, AppendError> {
        let index = &self.shared.config.index;
        let gap = (batch.dropped > 0).then(|| document::gap_doc(index, batch));
        let docs: Vec<Doc> = batch
            .events
            .iter()
            .map(|e| document::query_doc(index, e))
            .chain(gap)
            .collect();
        let n = batch.events.len();
        self.submit_docs(docs).inspect_err(|e| {
            self.shared.metrics.sink.refused.inc_by(n as u64);
            tracing::warn!(error = %e, events = n, "event batch refused (503); the sender keeps it");
        })?;
        Ok(n)
    }

    /// Journals documents (when the journal is on) and queues them without waiting; what
    /// overflows the queue waits for the replayer. An error means nothing was taken.
    pub fn submit_docs(&self, docs: impl IntoIterator<Item = Doc>) -> Result<(), AppendError> {
        let m = &self.shared.metrics;
        let mut docs: Vec<Doc> = docs.into_iter().collect();
        if docs.is_empty() {
            return Ok(());
        }
        if self.shared.journal {
            let at = self.shared.spool.append(&docs, Track::Live)?;
            for (i, doc) in docs.iter_mut().enumerate() {
                doc.slot = Some(Slot {
                    seq: at.seq,
                    line: at.first + i as u32,
                });
            }
            m.sink.journaled.inc_by(docs.len() as u64);
            m.spool_bytes.set(self.shared.spool.pending_bytes() as i64);
        }
        let mut overflow = Vec::new();
        for doc in docs {
            match self.tx.try_send(doc) {
                Ok(()) => {
                    m.sink.queued.inc();
                    m.sink_queue_depth.inc();
                }
                Err(mpsc::error::TrySendError::Full(doc))
                | Err(mpsc::error::TrySendError::Closed(doc)) => overflow.push(doc),
            }
        }
        if !overflow.is_empty() {
            // Overflow only: Elasticsearch may be fine, so the sink stays live and the
            // replayer sends the spooled documents alongside the live batches.
            spool_docs(&self.shared, &overflow);
        }
        Ok(())
    }

    pub fn state(&self) -> SinkState {
        if self.shared.es.is_none() {
            SinkState::SpoolOnly
        } else if self.shared.auth_failed.load(Ordering::SeqCst) {
            SinkState::AuthFailed
        } else if self.shared.live.load(Ordering::SeqCst) {
            SinkState::Live
        } else {
            SinkState::Spooling
        }
    }

    /// The Elasticsearch client (for tests and tools), when one is configured.
    pub fn es(&self) -> Option<&EsClient> {
        self.shared.es.as_ref()
    }

    pub fn spool(&self) -> &Spool {
        &self.shared.spool
    }
}

impl SinkTasks {
    /// Waits for the writer to drain the queue (every [`Sink`] handle must be dropped first),
    /// for at most `spool.shutdown_timeout_ms`; past it the writer stops and what it still
    /// holds stays spooled (journaled, or appended now). Then stops the replayer, deletes
    /// what is confirmed, and fsyncs the spool.
    pub async fn shutdown(self) {
        let deadline = tokio::time::Instant::now() + self.shared.shutdown_timeout;
        self.shutdown_by(deadline).await;
    }

    /// [`SinkTasks::shutdown`] with an explicit deadline.
    pub async fn shutdown_by(self, deadline: tokio::time::Instant) {
        let mut writer = self.writer;
        if tokio::time::timeout_at(deadline, &mut writer)
            .await
            .is_err()
        {
            tracing::warn!(
                timeout_ms = self.shared.shutdown_timeout.as_millis() as u64,
                "shutdown deadline reached: undelivered verdicts stay in the spool"
            );
            let _ = self.shared.stop.send(true);
            let _ = writer.await;
        }
        self.replayer.abort();
        let _ = self.replayer.await;
        housekeeping(&self.shared);
        if let Err(e) = self.shared.spool.sync_now() {
            tracing::error!(error = %e, "final spool fsync failed");
        }
    }
}

/// Sets documents aside for the replayer: journaled ones are marked (they are on disk
/// already), others are appended now.
fn spool_docs(shared: &Shared, docs: &[Doc]) {
    let slots: Vec<Slot> = docs.iter().filter_map(|d| d.slot).collect();
    let marked = slots.len();
    if marked > 0 {
        shared.spool.mark_replay(slots);
        shared.metrics.sink.spooled.inc_by(marked as u64);
    }
    let fresh: Vec<Doc> = docs.iter().filter(|d| d.slot.is_none()).cloned().collect();
    if !fresh.is_empty() {
        match shared.spool.append(&fresh, Track::Replay) {
            Ok(_) => {
                shared.metrics.sink.spooled.inc_by(fresh.len() as u64);
            }
            Err(e) => {
                shared.metrics.sink.dropped.inc_by(fresh.len() as u64);
                shared
                    .pending_gap
                    .fetch_add(fresh.len() as u64, Ordering::SeqCst);
                tracing::error!(error = %e, docs = fresh.len(), dir = %shared.spool.dir().display(), "SPOOL WRITE FAILED: verdict documents lost");
            }
        }
    }
    shared
        .metrics
        .spool_bytes
        .set(shared.spool.pending_bytes() as i64);
    shared.wake.notify_one();
}

/// Periodic spool upkeep: fsync when due, delete confirmed segments, quarantine corrupt
/// ones, write the scorer's gap marker when there is room again, update the gauge.
fn housekeeping(shared: &Shared) {
    if let Err(e) = shared.spool.sync_if_due() {
        tracing::error!(error = %e, "spool fsync failed");
    }
    match shared.spool.collect() {
        Ok(c) => {
            for path in &c.quarantined {
                shared.metrics.sink.quarantined.inc();
                tracing::error!(moved_to = %path.display(), "corrupt spool segment quarantined after its readable documents were delivered");
            }
        }
        Err(e) => tracing::error!(error = %e, "spool cleanup failed"),
    }
    let gap = shared.pending_gap.swap(0, Ordering::SeqCst);
    if gap > 0 {
        let doc = document::scorer_gap_doc(&shared.config.index, gap);
        if shared.spool.append(&[doc], Track::Replay).is_ok() {
            tracing::warn!(dropped = gap, "scorer gap marker written");
            shared.wake.notify_one();
        } else {
            shared.pending_gap.fetch_add(gap, Ordering::SeqCst);
        }
    }
    shared
        .metrics
        .spool_bytes
        .set(shared.spool.pending_bytes() as i64);
}

fn dead_letter(shared: &Shared, rejected: Vec<(Doc, String)>) {
    if rejected.is_empty() {
        return;
    }
    let n = rejected.len() as u64;
    shared.metrics.sink.rejected.inc_by(n);
    let letters: Vec<_> = rejected
        .into_iter()
        .map(|(doc, reason)| {
            tracing::error!(id = %doc.id, %reason, "Elasticsearch refused a verdict document: dead-lettered (see `replay-dead-letters`)");
            dead_letter::DeadLetter::now(doc, reason)
        })
        .collect();
    if let Err(e) = dead_letter::append(shared.spool.dir(), &letters) {
        shared.metrics.sink.dropped.inc_by(n);
        tracing::error!(error = %e, docs = n, "dead-letter write failed: documents lost");
    }
}

/// Collects batches from the queue and delivers them with bounded concurrency. When `stop`
/// turns true (the shutdown deadline) it abandons in-flight requests and sets aside what is
/// still queued.
async fn writer_loop(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Doc>,
    mut stop: watch::Receiver<bool>,
) {
    let cfg = &shared.config;
    let in_flight = Arc::new(Semaphore::new(cfg.max_in_flight));
    let flush = Duration::from_millis(cfg.flush_interval_ms);
    let mut tasks = JoinSet::new();
    let mut buf = Vec::with_capacity(cfg.bulk_max_docs);
    let mut stopped = false;
    loop {
        let first = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => { stopped = true; break }
            d = rx.recv() => match d { Some(d) => d, None => break },
        };
        let mut bytes = first.approx_bytes();
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + flush;
        let mut closed = false;
        while batch.len() < cfg.bulk_max_docs && bytes < cfg.bulk_max_bytes {
            buf.clear();
            let room = cfg.bulk_max_docs - batch.len();
            match tokio::time::timeout_at(deadline, rx.recv_many(&mut buf, room)).await {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(_) => {
                    bytes += buf.iter().map(Doc::approx_bytes).sum::<usize>();
                    batch.append(&mut buf);
                }
                Err(_) => break, // flush interval reached
            }
        }
        shared.metrics.sink_queue_depth.dec_by(batch.len() as i64);
        let permit = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => {
                spool_docs(&shared, &batch);
                stopped = true;
                break;
            }
            p = in_flight.clone().acquire_owned() => p.expect("semaphore never closed"),
        };
        while tasks.try_join_next().is_some() {}
        let shared = shared.clone();
        tasks.spawn(async move {
            deliver_live(&shared, batch).await;
            drop(permit);
        });
        if closed {
            break;
        }
    }
    if !stopped {
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => stopped = true,
            _ = async { while tasks.join_next().await.is_some() {} } => {}
        }
    }
    if stopped {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        if !shared.journal {
            // Without the journal, documents in abandoned requests exist nowhere else.
            let lost = shared.in_flight_docs.swap(0, Ordering::SeqCst);
            shared.metrics.sink.dropped.inc_by(lost);
        }
        let mut rest = Vec::new();
        while let Ok(doc) = rx.try_recv() {
            rest.push(doc);
        }
        shared.metrics.sink_queue_depth.dec_by(rest.len() as i64);
        if !rest.is_empty() {
            spool_docs(&shared, &rest);
        }
    }
}

async fn deliver_live(shared: &Shared, batch: Vec<Doc>) {
    let Some(es) = shared
        .es
        .as_ref()
        .filter(|_| shared.live.load(Ordering::SeqCst))
    else {
        spool_docs(shared, &batch);
        return;
    };
    let slots: Vec<Slot> = batch.iter().filter_map(|d| d.slot).collect();
    let n = batch.len() as u64;
    shared.in_flight_docs.fetch_add(n, Ordering::SeqCst);
    let d = es.deliver(batch, &shared.metrics.sink).await;
    shared.in_flight_docs.fetch_sub(n, Ordering::SeqCst);
    shared.metrics.sink.sent.inc_by(d.stored);
    shared.metrics.sink.duplicates.inc_by(d.duplicates);
    dead_letter(shared, d.rejected);
    if let Some(r) = &d.refused {
        // Spool first: the auth-failed state must never be seen with an empty spool (the
        // replayer would take "nothing to replay" for "the credential works").
        spool_docs(shared, &d.undelivered);
        auth_refused(shared, es, r.status, &r.reason);
    } else if !d.undelivered.is_empty() {
        if shared.live.swap(false, Ordering::SeqCst) {
            tracing::warn!("Elasticsearch unavailable: spooling verdicts to disk until it returns");
        }
        spool_docs(shared, &d.undelivered);
    }
    settle_all_but(shared, slots, &d.undelivered);
}

/// Settles the journal slots of a delivery, except those of documents still undelivered.
fn settle_all_but(shared: &Shared, slots: Vec<Slot>, undelivered: &[Doc]) {
    if slots.is_empty() {
        return;
    }
    let failed: std::collections::HashSet<Slot> =
        undelivered.iter().filter_map(|d| d.slot).collect();
    shared
        .spool
        .settle(slots.into_iter().filter(|s| !failed.contains(s)));
}

/// Replays the spool whenever Elasticsearch answers; flips the sink back to live mode.
async fn replay_loop(shared: Arc<Shared>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(shared.replay_interval) => {}
            _ = shared.wake.notified() => {
                // Give a burst of spooled batches a moment to land in the same segment.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        housekeeping(&shared);
        let Some(es) = &shared.es else { continue };
        if shared.live.load(Ordering::SeqCst) && !shared.spool.needs_replay() {
            continue;
        }
        if !shared.live.load(Ordering::SeqCst) && !come_back(&shared, es).await {
            continue;
        }
        match replay_spool(&shared, es).await {
            Ok(()) => {
                auth_ok(&shared, es);
                if !shared.live.swap(true, Ordering::SeqCst) {
                    tracing::info!("spool replayed: Elasticsearch back in live mode");
                }
            }
            Err(SinkError::Unauthorized { status, reason }) => {
                auth_refused(&shared, es, status, &reason);
            }
            Err(e) => {
                shared.live.store(false, Ordering::SeqCst);
                tracing::warn!(error = %e, "spool replay paused; will retry");
            }
        }
        housekeeping(&shared);
    }
}

/// Replays every segment with replay work, oldest first; stops at the first chunk that
/// cannot be delivered (its documents, and the rest, stay marked). An unreadable segment is
/// quarantined and skipped.
async fn replay_spool(shared: &Shared, es: &EsClient) -> Result<(), SinkError> {
    let segments = shared
        .spool
        .replay_queue()
        .map_err(|source| SinkError::Spool {
            path: shared.spool.dir().display().to_string(),
            source,
        })?;
    for seq in segments {
        let taken = match shared.spool.take_replay(seq) {
            Ok(t) => t,
            Err(e) => {
                shared.metrics.sink.quarantined.inc();
                tracing::error!(error = %e, "spool segment skipped");
                continue;
            }
        };
        let mut docs = taken.docs.into_iter().peekable();
        while docs.peek().is_some() {
            let chunk: Vec<Doc> = docs.by_ref().take(shared.config.bulk_max_docs).collect();
            let slots: Vec<Slot> = chunk.iter().filter_map(|d| d.slot).collect();
            let d = es.deliver(chunk, &shared.metrics.sink).await;
            shared.metrics.sink.replayed.inc_by(d.stored);
            shared.metrics.sink.duplicates.inc_by(d.duplicates);
            dead_letter(shared, d.rejected);
            settle_all_but(shared, slots, &d.undelivered);
            if d.refused.is_some() || !d.undelivered.is_empty() {
                // The chunk's undelivered documents and the rest stay marked for replay.
                let n = d.undelivered.len();
                let mut rest: Vec<Slot> = d.undelivered.iter().filter_map(|doc| doc.slot).collect();
                rest.extend(docs.filter_map(|doc| doc.slot));
                shared.spool.mark_replay(rest);
                if let Some(r) = d.refused {
                    return Err(r.into_error());
                }
                return Err(SinkError::Unavailable(format!(
                    "{n} spooled documents not delivered"
                )));
            }
        }
    }
    Ok(())
}
