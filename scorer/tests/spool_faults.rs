//! The spool under faults, with the real scorer sink and a real `osmem-server`: the byte bound
//! (503 for filter batches, a gap marker for direct verdicts), a full disk (a 2 MiB tmpfs:
//! needs root, as `./dohguard test` runs here), and a corrupt segment. Each ends with every
//! expected document present exactly once.

mod common;

use std::{path::Path, process::Command, time::Duration};

use common::*;
use dohguard_scorer::{
    config::{Config, FsyncPolicy, DEFAULT_INDEX},
    sink::{spool::Track, Spool, VerdictEvent},
};

const SETTLE: Duration = Duration::from_secs(60);

/// A loopback port nobody listens on (yet).
fn free_port() -> u16 {
    dohguard_launcher::ports::free_port().expect("a free loopback port")
}

/// Every line of every segment in `dir` parses: no partial line anywhere.
fn assert_segments_whole(dir: &Path) -> usize {
    let mut lines = 0;
    for path in dohguard_scorer::sink::spool::list_segments(dir).unwrap() {
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            bytes.is_empty() || bytes.ends_with(b"\n"),
            "{} ends inside a line",
            path.display()
        );
        let (docs, bad) = dohguard_scorer::sink::spool::parse_segment(&bytes);
        assert_eq!(bad, 0, "{} has lines that do not parse", path.display());
        lines += docs.len();
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_byte_bound_batches_get_503_and_direct_verdicts_a_gap_marker() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let spool = tempfile::tempdir().unwrap();
    let mut config: Config = test_config(Some(&url), spool.path());
    config.spool.max_bytes = 96 * 1024;
    config.spool.segment_bytes = 16 * 1024;
    let (app, _tasks) = start(config).await;
    let router = dohguard_scorer::router(app.clone());
    assert_eq!(
        metric(&app, "dohguard_scorer_sink_spool_max_bytes"),
        96.0 * 1024.0
    );

    // Elasticsearch is away: batches are journaled until the bound refuses one.
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for seq in 0..40 {
        let batch = event_batch("bound", seq, 20);
        match post_events(&router, &batch).await {
            202 => accepted.push(batch),
            503 => refused.push(batch),
            s => panic!("status {s}"),
        }
    }
    assert!(
        !accepted.is_empty() && !refused.is_empty(),
        "{} accepted, {} refused",
        accepted.len(),
        refused.len()
    );
    let bytes = metric(&app, "dohguard_scorer_sink_spool_bytes");
    assert!(
        bytes <= 96.0 * 1024.0 && bytes > 48.0 * 1024.0,
        "spool bytes {bytes}"
    );
    assert_eq!(
        metric(&app, "dohguard_scorer_sink_refused_total"),
        (refused.len() * 20) as f64
    );
    // Direct verdicts at the bound: each caller has its answer and cannot resend; the first
    // that does not fit is counted as dropped and reported by a gap marker once there is room.
    let mut direct = 0;
    while app.metrics.sink.dropped.get() == 0 {
        assert!(direct < 500, "the spool never refused a direct verdict");
        app.scorer
            .score(vec![dohguard_core::contract::ScoreRequest {
                name: format!("d{direct}.at-bound.example"),
                qtype: "A".into(),
                client: None,
                caller_records: false,
            }])
            .await
            .unwrap();
        direct += 1;
    }
    assert_eq!(app.metrics.sink.dropped.get(), 1);
    let direct_stored = direct - 1;

    // Elasticsearch comes back; the spool drains; the filter's resends are taken.
    let osmem = Osmem::start_on(port, None);
    let es = Es::new(&osmem.url);
    for batch in &refused {
        eventually(
            "a refused batch is taken once the spool drains",
            SETTLE,
            || {
                let router = router.clone();
                async move { post_events(&router, batch).await == 202 }
            },
        )
        .await;
    }
    let mut ids: Vec<String> = accepted
        .iter()
        .chain(&refused)
        .flat_map(batch_ids)
        .collect();
    eventually(
        "every event and one scorer gap marker stored",
        SETTLE,
        || {
            let es = &es;
            let want = (ids.len() + direct_stored + 1) as u64;
            async move { es.count_if_exists(DEFAULT_INDEX).await == Some(want) }
        },
    )
    .await;
    let docs = es.all(DEFAULT_INDEX).await;
    let gaps: Vec<_> = docs
        .iter()
        .filter(|(id, _)| id.starts_with("gap-scorer-"))
        .collect();
    assert_eq!(gaps.len(), 1, "one scorer gap marker");
    assert_eq!(gaps[0].1["dohguard"]["gap"]["dropped"], 1);
    assert_eq!(gaps[0].1["dohguard"]["gap"]["source"], "scorer");
    ids.push(gaps[0].0.clone());
    let direct_ids: Vec<String> = docs
        .iter()
        .filter(|(_, d)| {
            d["dns"]["question"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with(".at-bound.example"))
        })
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(
        direct_ids.len(),
        direct_stored,
        "direct verdicts that fitted"
    );
    ids.extend(direct_ids);
    assert_ids_exactly_once(&es, DEFAULT_INDEX, &ids).await;
    assert_eq!(app.metrics.sink.rejected.get(), 0);
}

/// A tmpfs of `size` mounted on a fresh folder, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "mounting a {size} tmpfs needs root (this test fills a real small filesystem): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Writes zeros to `path` until the filesystem is full.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 4096];
    loop {
        if let Err(e) = f.write_all(&chunk) {
            assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC, got {e}");
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_leaves_no_partial_line_and_loses_nothing() {
    let fs = Tmpfs::mount("2m");
    let spool_dir = fs.path().join("spool");
    let port = free_port();
    let mut config = test_config(Some(&format!("http://127.0.0.1:{port}")), &spool_dir);
    config.spool.fsync = FsyncPolicy::Always;
    let (app, _tasks) = start(config).await;
    let router = dohguard_scorer::router(app.clone());

    let first = event_batch("disk", 0, 10);
    assert_eq!(post_events(&router, &first).await, 202);
    // Fill the disk, then free 32 KiB: a 100-event batch (~60 KB) gets part-way and fails.
    std::fs::write(fs.path().join("room"), vec![0u8; 32 * 1024]).unwrap();
    fill(&fs.path().join("filler"));
    std::fs::remove_file(fs.path().join("room")).unwrap();
    let big = event_batch("disk", 1, 100);
    let lines_before = assert_segments_whole(&spool_dir);
    assert_eq!(
        post_events(&router, &big).await,
        503,
        "a failed append is not acknowledged"
    );
    assert_eq!(
        assert_segments_whole(&spool_dir),
        lines_before,
        "the partial write was cut back"
    );
    // The next append starts on a clean line and is read back whole.
    let small = event_batch("disk", 2, 5);
    assert_eq!(post_events(&router, &small).await, 202);
    assert_eq!(assert_segments_whole(&spool_dir), lines_before + 5);
    let mut later = Vec::new();
    for seq in 3..6 {
        let b = event_batch("disk", seq, 100);
        if post_events(&router, &b).await != 202 {
            later.push(b);
        }
    }
    assert!(!later.is_empty(), "the disk is still full");
    assert_segments_whole(&spool_dir);

    // Space returns; the filter resends what was refused; Elasticsearch comes up.
    std::fs::remove_file(fs.path().join("filler")).unwrap();
    for b in std::iter::once(&big).chain(&later) {
        assert_eq!(post_events(&router, b).await, 202);
    }
    let osmem = Osmem::start_on(port, None);
    let es = Es::new(&osmem.url);
    let ids: Vec<String> = [&first, &big, &small]
        .into_iter()
        .chain(&later)
        .flat_map(batch_ids)
        .collect();
    let stored_ids = ids.clone();
    eventually("every acknowledged event stored", SETTLE, || {
        let es = &es;
        let n = stored_ids.len() as u64;
        async move {
            es.count_if_exists(DEFAULT_INDEX)
                .await
                .is_some_and(|c| c >= n)
        }
    })
    .await;
    assert_ids_exactly_once(&es, DEFAULT_INDEX, &ids).await;
    assert_eq!(app.metrics.sink.dropped.get(), 0);
    assert!(app.metrics.sink.refused.get() >= 100);
}

fn verdict(i: usize) -> VerdictEvent {
    VerdictEvent {
        timestamp: std::time::SystemTime::now(),
        name: format!("c{i}.corrupt.example"),
        qtype: "A".into(),
        client: None,
        registered_domain: Some("corrupt.example".into()),
        subdomain: Some(format!("c{i}")),
        top_level_domain: Some("example".into()),
        score: 0.5,
        verdict: dohguard_core::contract::Verdict::Allow,
        reason: dohguard_core::contract::Reason::Model,
        scope: dohguard_core::contract::Scope::Name,
        model_version: "test".into(),
        detector: None,
        latency_us: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_segment_is_quarantined_and_replay_goes_on() {
    let spool = tempfile::tempdir().unwrap();
    // Three segments of 10 documents each, left by an earlier run.
    let docs: Vec<_> = (0..30).map(|i| verdict(i).to_doc(DEFAULT_INDEX)).collect();
    {
        let s = Spool::open(
            spool.path(),
            FsyncPolicy::Always,
            Duration::from_secs(1),
            1,
            1 << 30,
        )
        .unwrap();
        for chunk in docs.chunks(10) {
            s.append(chunk, Track::Replay).unwrap(); // segment_bytes 1: one segment per append
        }
    }
    let segments: Vec<_> = dohguard_scorer::sink::spool::list_segments(spool.path())
        .unwrap()
        .into_iter()
        .filter(|p| std::fs::metadata(p).unwrap().len() > 0)
        .collect();
    assert_eq!(segments.len(), 3);
    // Garbage in the middle of the second one (between its 5th and 6th lines).
    let mut bytes = std::fs::read(&segments[1]).unwrap();
    let cut = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(4)
        .unwrap()
        .0
        + 1;
    bytes.splice(
        cut..cut,
        b"\x00\xff\xfegarbage{\"_index\":\n\x13\x37\n"
            .iter()
            .copied(),
    );
    std::fs::write(&segments[1], bytes).unwrap();

    let osmem = Osmem::start();
    let es = Es::new(&osmem.url);
    let (app, _tasks) = start(test_config(Some(&osmem.url), spool.path())).await;
    let ids: Vec<String> = docs.iter().map(|d| d.id.clone()).collect();
    eventually("30 documents stored", SETTLE, || {
        let es = &es;
        async move { es.count_if_exists(DEFAULT_INDEX).await == Some(30) }
    })
    .await;
    assert_ids_exactly_once(&es, DEFAULT_INDEX, &ids).await;
    let m = app.metrics.sink.clone();
    eventually("the corrupt segment quarantined", SETTLE, || {
        let q = m.quarantined.get();
        async move { q == 1 }
    })
    .await;
    assert_eq!(
        metric(&app, "dohguard_scorer_sink_spool_quarantined_total"),
        1.0
    );
    let quarantined: Vec<_> = std::fs::read_dir(spool.path().join("quarantine"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        quarantined,
        vec![segments[1].file_name().unwrap().to_owned()]
    );
    eventually("the good segments deleted once delivered", SETTLE, || {
        let gone = !segments[0].exists() && !segments[2].exists();
        async move { gone }
    })
    .await;
    assert_eq!(app.metrics.sink.dropped.get(), 0);
}
