//! Dynamic micro-batching: one dedicated inference thread owns the ONNX Runtime session and
//! coalesces whatever requests are waiting into one model call.
//!
//! The thread blocks for the first job, then takes every job already queued (up to
//! `max_batch` names). It waits up to `max_wait` for more only when the previous batch was
//! itself a coalesced one, i.e. when the service is under load: a lone request on an idle
//! service runs at once. Inference never runs on the async runtime's threads.

use std::{
    sync::{
        mpsc::{self, RecvTimeoutError, SyncSender, TryRecvError, TrySendError},
        Arc,
    },
    time::{Duration, Instant},
};

use tokio::sync::oneshot;

use super::{LoadedSession, ModelError, ModelInfo, Scored};
use crate::metrics::Metrics;

#[derive(Debug, Clone, Copy)]
pub struct BatcherConfig {
    pub max_batch: usize,
    pub max_wait: Duration,
    /// Jobs (requests) that may wait for the thread.
    pub queue_capacity: usize,
}

struct Job {
    texts: Vec<String>,
    reply: oneshot::Sender<Result<Scored, ModelError>>,
}

enum Message {
    Job(Job),
    Swap {
        session: Box<LoadedSession>,
        info: Arc<ModelInfo>,
        done: mpsc::Sender<()>,
    },
}

/// Handle to the inference thread; cheap to clone. The thread stops when every handle is gone.
#[derive(Clone)]
pub struct Batcher {
    tx: SyncSender<Message>,
    metrics: Metrics,
}

impl Batcher {
    pub fn start(
        session: LoadedSession,
        info: Arc<ModelInfo>,
        config: BatcherConfig,
        metrics: Metrics,
    ) -> Result<Self, ModelError> {
        let (tx, rx) = mpsc::sync_channel(config.queue_capacity);
        let thread_metrics = metrics.clone();
        std::thread::Builder::new()
            .name("dohguard-inference".into())
            .spawn(move || inference_loop(rx, session, info, config, thread_metrics))
            .map_err(|e| ModelError::Runtime(format!("cannot start the inference thread: {e}")))?;
        Ok(Self { tx, metrics })
    }

    pub async fn score(&self, texts: Vec<String>) -> Result<Scored, ModelError> {
        let n = texts.len() as i64;
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send(Message::Job(Job { texts, reply })) {
            Ok(()) => self.metrics.queue_depth.inc_by(n),
            Err(TrySendError::Full(_)) => return Err(ModelError::Overloaded),
            Err(TrySendError::Disconnected(_)) => return Err(ModelError::Stopped),
        };
        rx.await.map_err(|_| ModelError::Stopped)?
    }

    /// Hands a new session to the thread; returns once it serves.
    pub fn swap_blocking(
        &self,
        session: LoadedSession,
        info: Arc<ModelInfo>,
    ) -> Result<(), ModelError> {
        let (done, wait) = mpsc::channel();
        self.tx
            .send(Message::Swap {
                session: Box::new(session),
                info,
                done,
            })
            .map_err(|_| ModelError::Stopped)?;
        wait.recv().map_err(|_| ModelError::Stopped)
    }
}

fn inference_loop(
    rx: mpsc::Receiver<Message>,
    session: LoadedSession,
    info: Arc<ModelInfo>,
    config: BatcherConfig,
    metrics: Metrics,
) {
    let mut session = Box::new(session);
    let mut info = info;
    let mut pending: Option<Message> = None;
    let mut under_load = false;
    let mut ids: Vec<i64> = Vec::new();
    loop {
        let first = match pending.take().map(Ok).unwrap_or_else(|| rx.recv()) {
            Ok(Message::Job(job)) => job,
            Ok(Message::Swap {
                session: s,
                info: i,
                done,
            }) => {
                session = s;
                info = i;
                let _ = done.send(());
                continue;
            }
            Err(_) => return, // every handle dropped: shut down
        };
        let mut rows = first.texts.len();
        let mut jobs = vec![first];
        let deadline = Instant::now() + config.max_wait;
        while rows < config.max_batch {
            let next = match rx.try_recv() {
                Ok(m) => Some(m),
                Err(TryRecvError::Empty) if under_load && !config.max_wait.is_zero() => {
                    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                        Ok(m) => Some(m),
                        Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                            None
                        }
                    }
                }
                Err(_) => None,
            };
            match next {
                Some(Message::Job(job)) => {
                    rows += job.texts.len();
                    jobs.push(job);
                }
                Some(swap) => {
                    // Finish this batch with the old model, swap right after.
                    pending = Some(swap);
                    break;
                }
                None => break,
            }
        }
        under_load = jobs.len() > 1;
        metrics.queue_depth.dec_by(rows as i64);
        run_batch(
            &mut session,
            &info,
            jobs,
            rows,
            config.max_batch,
            &mut ids,
            &metrics,
        );
    }
}

/// Encodes and runs `jobs` (in chunks of `max_batch` rows) and answers each job.
fn run_batch(
    session: &mut LoadedSession,
    info: &Arc<ModelInfo>,
    jobs: Vec<Job>,
    rows: usize,
    max_batch: usize,
    ids: &mut Vec<i64>,
    metrics: &Metrics,
) {
    let started = Instant::now();
    let mut scores = Vec::with_capacity(rows);
    let mut failure = None;
    let texts = jobs.iter().flat_map(|j| j.texts.iter());
    let all: Vec<&String> = texts.collect();
    for chunk in all.chunks(max_batch) {
        ids.clear();
        for text in chunk {
            info.encoder.encode_into(text, ids);
        }
        metrics.batch_size.observe(chunk.len() as f64);
        match session.run(ids) {
            Ok(s) => scores.extend(s),
            Err(e) => {
                failure = Some(e.to_string());
                break;
            }
        }
    }
    metrics
        .inference_seconds
        .observe(started.elapsed().as_secs_f64());
    let mut offset = 0;
    for job in jobs {
        let n = job.texts.len();
        let result = match &failure {
            Some(e) => Err(ModelError::Runtime(e.clone())),
            None => Ok(Scored {
                scores: scores[offset..offset + n].to_vec(),
                model: info.clone(),
            }),
        };
        offset += n;
        let _ = job.reply.send(result); // the caller may have timed out: nothing to do
    }
}
