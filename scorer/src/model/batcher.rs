//! Dynamic micro-batching: one dedicated inference thread owns the ONNX Runtime session and
//! coalesces whatever requests are waiting into one model call.
//!
//! The thread blocks for the first job, then takes every job already queued (up to
//! `max_batch` names). It waits up to `max_wait` for more only when the previous batch was
//! itself a coalesced one, i.e. when the service is under load: a lone request on an idle
//! service runs at once. Inference never runs on the async runtime's threads.
//!
//! The queue is bounded in names, not jobs ([`Admission`]): a job that would take it past
//! `queue_capacity` names is refused at once ([`ModelError::Overloaded`], a 503 with
//! `Retry-After`), except on an empty queue, so one request of any allowed size always runs on
//! an idle service. Every job is looked at again when the thread takes it ([`triage`]): a job
//! whose caller has gone (its reply receiver was dropped, e.g. the HTTP request timed out) is
//! dropped without being computed, and one that waited longer than `max_age` is answered
//! [`ModelError::Expired`] without being computed: its caller (the filter's callout, 200 ms by
//! default) has given up or is about to, and computing it would only delay the jobs behind it.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc::{self, RecvTimeoutError, Sender, TryRecvError},
        Arc,
    },
    time::{Duration, Instant},
};

use tokio::sync::oneshot;

use super::{encode::Rows, LoadedSession, ModelError, ModelInfo, Scored};
use crate::metrics::{DropLabel, Metrics};

#[derive(Debug, Clone, Copy)]
pub struct BatcherConfig {
    pub max_batch: usize,
    pub max_wait: Duration,
    /// Names that may wait for the thread; a job that would go past it is refused (an empty
    /// queue admits any one job).
    pub queue_capacity: usize,
    /// A job that waited longer than this for the thread is answered [`ModelError::Expired`]
    /// instead of being computed.
    pub max_age: Duration,
}

/// The queue's bound in names: admission before a job is sent, release when the thread
/// takes it. Lock-free; shared by every [`Batcher`] handle.
#[derive(Debug)]
pub struct Admission {
    queued: AtomicUsize,
    capacity: usize,
}

impl Admission {
    pub fn new(capacity: usize) -> Self {
        Self {
            queued: AtomicUsize::new(0),
            capacity,
        }
    }

    /// Reserves room for `names`; false when the queue is full. An empty queue admits any
    /// `names`, so a request larger than the capacity is not refused forever.
    pub fn try_admit(&self, names: usize) -> bool {
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued == 0 || queued + names <= self.capacity).then_some(queued + names)
            })
            .is_ok()
    }

    /// Gives back the room of `names` admitted earlier (taken by the thread, or never sent).
    pub fn release(&self, names: usize) {
        self.queued.fetch_sub(names, Ordering::AcqRel);
    }

    /// Names admitted and not yet released.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}

struct Job {
    texts: Vec<String>,
    enqueued: Instant,
    reply: oneshot::Sender<Result<Scored, ModelError>>,
}

/// What the thread does with a job it takes from the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Run,
    /// Nobody waits for the answer: drop it, uncomputed.
    CallerGone,
    /// Waited past `max_age`: answer [`ModelError::Expired`], uncomputed.
    TooOld,
}

/// Decides a taken job's [`Fate`] from whether its caller still listens and how long it waited.
pub fn triage(caller_listening: bool, waited: Duration, max_age: Duration) -> Fate {
    if !caller_listening {
        Fate::CallerGone
    } else if waited > max_age {
        Fate::TooOld
    } else {
        Fate::Run
    }
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
    tx: Sender<Message>,
    admission: Arc<Admission>,
    metrics: Metrics,
}

impl Batcher {
    pub fn start(
        session: LoadedSession,
        info: Arc<ModelInfo>,
        config: BatcherConfig,
        metrics: Metrics,
    ) -> Result<Self, ModelError> {
        // Unbounded channel: the bound is `admission`, in names, checked before every send.
        let (tx, rx) = mpsc::channel();
        let admission = Arc::new(Admission::new(config.queue_capacity));
        let thread = Inference {
            rx,
            admission: admission.clone(),
            config,
            metrics: metrics.clone(),
        };
        std::thread::Builder::new()
            .name("dohguard-inference".into())
            .spawn(move || thread.run(session, info))
            .map_err(|e| ModelError::Runtime(format!("cannot start the inference thread: {e}")))?;
        Ok(Self {
            tx,
            admission,
            metrics,
        })
    }

    /// Queues `texts` for the thread and waits for their scores. Refused at once with
    /// [`ModelError::Overloaded`] when the queue has no room for them. Dropping the returned
    /// future (a timed-out caller) means the job is dropped uncomputed when its turn comes.
    pub async fn score(&self, texts: Vec<String>) -> Result<Scored, ModelError> {
        let n = texts.len();
        if !self.admission.try_admit(n) {
            self.metrics.queue_rejected.inc_by(n as u64);
            return Err(ModelError::Overloaded);
        }
        let (reply, rx) = oneshot::channel();
        let job = Job {
            texts,
            enqueued: Instant::now(),
            reply,
        };
        // Raised before the send: the thread lowers it when it takes the job.
        self.metrics.queue_depth.inc_by(n as i64);
        if self.tx.send(Message::Job(job)).is_err() {
            self.admission.release(n);
            self.metrics.queue_depth.dec_by(n as i64);
            return Err(ModelError::Stopped);
        }
        rx.await.map_err(|_| ModelError::Stopped)?
    }

    /// Names waiting for the thread now.
    pub fn queued_names(&self) -> usize {
        self.admission.queued()
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

/// The inference thread's state: its end of the queue, the shared bound, settings, metrics.
struct Inference {
    rx: mpsc::Receiver<Message>,
    admission: Arc<Admission>,
    config: BatcherConfig,
    metrics: Metrics,
}

impl Inference {
    fn run(self, session: LoadedSession, info: Arc<ModelInfo>) {
        let config = self.config;
        let mut session = Box::new(session);
        let mut info = info;
        let mut pending: Option<Message> = None;
        let mut under_load = false;
        let mut rows_buf = info.encoder.rows();
        loop {
            let first = match pending.take().map(Ok).unwrap_or_else(|| self.rx.recv()) {
                Ok(Message::Job(job)) => job,
                Ok(Message::Swap {
                    session: s,
                    info: i,
                    done,
                }) => {
                    session = s;
                    info = i;
                    rows_buf = info.encoder.rows();
                    let _ = done.send(());
                    continue;
                }
                Err(_) => return, // every handle dropped: shut down
            };
            let mut jobs = Vec::new();
            let mut rows = 0;
            if let Some(job) = self.take(first) {
                rows += job.texts.len();
                jobs.push(job);
            }
            let deadline = Instant::now() + config.max_wait;
            while rows < config.max_batch {
                let next = match self.rx.try_recv() {
                    Ok(m) => Some(m),
                    Err(TryRecvError::Empty)
                        if under_load && !jobs.is_empty() && !config.max_wait.is_zero() =>
                    {
                        match self
                            .rx
                            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                        {
                            Ok(m) => Some(m),
                            Err(RecvTimeoutError::Timeout)
                            | Err(RecvTimeoutError::Disconnected) => None,
                        }
                    }
                    Err(_) => None,
                };
                match next {
                    Some(Message::Job(job)) => {
                        if let Some(job) = self.take(job) {
                            rows += job.texts.len();
                            jobs.push(job);
                        }
                    }
                    Some(swap) => {
                        // Finish this batch with the old model, swap right after.
                        pending = Some(swap);
                        break;
                    }
                    None => break,
                }
            }
            if jobs.is_empty() {
                continue; // everything taken was dropped: nothing to compute
            }
            under_load = jobs.len() > 1;
            run_batch(
                &mut session,
                &info,
                jobs,
                rows,
                config.max_batch,
                &mut rows_buf,
                &self.metrics,
            );
        }
    }

    /// Takes `job` off the queue (its names leave the bound) and returns it when it is still
    /// worth computing; otherwise drops or answers it here, counted.
    fn take(&self, job: Job) -> Option<Job> {
        let n = job.texts.len();
        self.admission.release(n);
        self.metrics.queue_depth.dec_by(n as i64);
        let fate = triage(
            !job.reply.is_closed(),
            job.enqueued.elapsed(),
            self.config.max_age,
        );
        if fate == Fate::Run {
            return Some(job);
        }
        // Counted before the caller hears of it, so a caller that reads the metrics next
        // sees its own drop.
        self.metrics
            .queue_dropped
            .get_or_create(&DropLabel::of(fate))
            .inc_by(n as u64);
        if fate == Fate::TooOld {
            let _ = job.reply.send(Err(ModelError::Expired)); // the caller may just have gone
        }
        None
    }
}

/// Encodes and runs `jobs` (in chunks of `max_batch` rows) and answers each job.
fn run_batch(
    session: &mut LoadedSession,
    info: &Arc<ModelInfo>,
    jobs: Vec<Job>,
    rows: usize,
    max_batch: usize,
    buf: &mut Rows,
    metrics: &Metrics,
) {
    let started = Instant::now();
    let mut scores = Vec::with_capacity(rows);
    let mut failure = None;
    let texts = jobs.iter().flat_map(|j| j.texts.iter());
    let all: Vec<&String> = texts.collect();
    for chunk in all.chunks(max_batch) {
        buf.clear();
        for text in chunk {
            info.encoder.push_row(text, buf);
        }
        metrics.batch_size.observe(chunk.len() as f64);
        match session.run_rows(buf) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_is_bounded_in_names_and_an_empty_queue_admits_any_job() {
        let a = Admission::new(10);
        assert!(a.try_admit(4));
        assert!(a.try_admit(6), "exactly full is allowed");
        assert!(!a.try_admit(1), "one name past the bound is refused");
        assert_eq!(a.queued(), 10, "a refusal reserves nothing");
        a.release(6);
        assert!(!a.try_admit(7));
        assert!(a.try_admit(6));
        a.release(10);
        assert_eq!(a.queued(), 0);
        assert!(
            a.try_admit(50),
            "an empty queue takes a job larger than the bound"
        );
        assert!(!a.try_admit(1));
    }

    #[test]
    fn admission_holds_its_bound_under_concurrent_callers() {
        let a = Arc::new(Admission::new(1000));
        let admitted: usize = (0..8)
            .map(|_| {
                let a = a.clone();
                std::thread::spawn(move || (0..1000).filter(|_| a.try_admit(3)).count())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(admitted, 333, "floor(1000 / 3) jobs of 3 names fit");
        assert_eq!(a.queued(), 999);
    }

    #[test]
    fn triage_drops_abandoned_jobs_and_expires_old_ones() {
        let max = Duration::from_millis(200);
        assert_eq!(triage(true, Duration::from_millis(10), max), Fate::Run);
        assert_eq!(
            triage(true, max, max),
            Fate::Run,
            "exactly max_age still runs"
        );
        assert_eq!(triage(true, Duration::from_millis(201), max), Fate::TooOld);
        assert_eq!(triage(false, Duration::ZERO, max), Fate::CallerGone);
        assert_eq!(
            triage(false, Duration::from_secs(9), max),
            Fate::CallerGone,
            "nobody to answer: dropped, not answered"
        );
    }

    #[test]
    fn a_dropped_receiver_is_seen_by_the_thread() {
        // What `take` relies on: the sender learns that the caller's future was dropped.
        let (tx, rx) = oneshot::channel::<Result<Scored, ModelError>>();
        assert!(!tx.is_closed());
        drop(rx);
        assert!(tx.is_closed());
    }
}
