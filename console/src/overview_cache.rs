//! The overview's minute cache: per-minute partial aggregates of the verdicts, kept in the
//! console's memory, so the 24-hour overview reads a minute or two of documents from the
//! store instead of aggregating every document of the day on every request.
//!
//! - A [`Minute`] holds, for one minute of `@timestamp`, the query count, the count per
//!   verdict, per registered domain and per client (each split by verdict), and per model
//!   version. Merging minutes is exact (counts add, sets unite), so the overview built from
//!   them equals the one aggregated from the documents (tested against it).
//! - [`OverviewCache::refresh`] (on a tick, `overview_cache.tick_s`) fills the minutes that
//!   ended at least `overview_cache.grace_s` ago, `overview_cache.fill_chunk_min` minutes per
//!   search, and drops those older than `overview_cache.window_h`. It then counts the
//!   documents of the cached window in the store: when the count differs from the cached
//!   total (documents that arrived late, for example replayed from the scorer's spool, or
//!   deleted ones), the minutes whose counts differ are filled again.
//! - [`OverviewCache::overview`] answers an overview whose filter is a time range only and
//!   whose histogram interval is whole minutes (the 24 h and 7 d presets, custom ranges of
//!   two hours or more) when the cache covers the range: cached minutes, plus one search over
//!   the uncovered edges (the partial first minute and the minutes since the last fill).
//!   The minutes of each whole hour are also kept merged, so a 24-hour overview merges at
//!   most 24 hours and 118 minutes of domain and client counts (the timeline still comes
//!   from every minute's three verdict counts).
//!   Anything else (other filters, the 15 min and 1 h presets with their sub-minute
//!   intervals, ranges older than the window) is aggregated from the documents as before.
//!
//! The cache belongs to one console process and costs no writes to the store. On a real
//! cluster the same minute rows would come from a transform (or the writer) into a rollup
//! index; the merge below would read that index instead.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::sync::{Mutex, RwLock};

use crate::{
    overview::{Bucket, Overview, Point, TOP},
    query_log::LogFilter,
    store::{Store, StoreError},
    time_range::rfc3339,
};

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
/// Largest `terms` size asked per minute (distinct domains or clients in one minute).
const TERMS_PER_MINUTE: usize = 100_000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OverviewCacheConfig {
    /// Keep the minute cache (off: every overview aggregates the documents).
    pub enabled: bool,
    /// Hours of minutes kept (ranges reaching further back are aggregated from the documents).
    pub window_h: u64,
    /// A minute is cached once it ended this long ago (documents still arriving for it).
    pub grace_s: u64,
    /// Seconds between refreshes.
    pub tick_s: u64,
    /// Minutes filled per search.
    pub fill_chunk_min: u64,
}

impl Default for OverviewCacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            window_h: 25,
            grace_s: 30,
            tick_s: 5,
            fill_chunk_min: 60,
        }
    }
}

/// Verdict index in the per-verdict arrays.
fn verdict_index(v: &str) -> Option<usize> {
    match v {
        "allow" => Some(0),
        "monitor" => Some(1),
        "block" => Some(2),
        _ => None,
    }
}
const VERDICTS: [&str; 3] = ["allow", "monitor", "block"];

/// One minute's partial aggregates (or the uncovered edges of a range, merged the same way).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Minute {
    pub total: u64,
    pub verdicts: [u64; 3],
    /// Registered domain -> queries per verdict (a domain queried with no verdict is present
    /// with zeros: it still counts as a unique domain).
    pub domains: HashMap<String, [u64; 3]>,
    pub clients: HashMap<String, [u64; 3]>,
    pub models: HashMap<String, u64>,
}

impl Minute {
    pub fn merge(&mut self, other: &Minute) {
        self.total += other.total;
        for i in 0..3 {
            self.verdicts[i] += other.verdicts[i];
        }
        for (map, from) in [
            (&mut self.domains, &other.domains),
            (&mut self.clients, &other.clients),
        ] {
            for (k, v) in from {
                let e = map.entry(k.clone()).or_default();
                for i in 0..3 {
                    e[i] += v[i];
                }
            }
        }
        for (k, v) in &other.models {
            *self.models.entry(k.clone()).or_default() += v;
        }
    }
}

/// The search that yields per-minute aggregates for `query`.
pub fn minutes_body(query: Value) -> Value {
    let by_verdict = json!({"v": {"terms": {"field": "dohguard.verdict", "size": 3}}});
    json!({
        "size": 0,
        "track_total_hits": true,
        "query": query,
        "aggs": {"minutes": {
            "date_histogram": {"field": "@timestamp", "fixed_interval": "1m", "min_doc_count": 1},
            "aggs": {
                "v": {"terms": {"field": "dohguard.verdict", "size": 3}},
                "d": {"terms": {"field": "dns.question.registered_domain", "size": TERMS_PER_MINUTE}, "aggs": by_verdict},
                "c": {"terms": {"field": "client.ip", "size": TERMS_PER_MINUTE}, "aggs": by_verdict},
                "m": {"terms": {"field": "dohguard.model_version", "size": 1000}}
            }
        }}
    })
}

fn key_of(b: &Value) -> Result<String, String> {
    match &b["key"] {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Err("bucket without key".into()),
        other => Ok(other.to_string()),
    }
}

fn count_of(b: &Value) -> Result<u64, String> {
    b["doc_count"]
        .as_u64()
        .ok_or_else(|| format!("bucket without doc_count: {b}"))
}

fn per_verdict(b: &Value) -> Result<[u64; 3], String> {
    let mut out = [0; 3];
    for v in b["v"]["buckets"]
        .as_array()
        .ok_or("bucket without its verdict split")?
    {
        if let Some(i) = v["key"].as_str().and_then(verdict_index) {
            out[i] = count_of(v)?;
        }
    }
    Ok(out)
}

/// Reads a [`minutes_body`] reply: minute start (epoch ms) -> aggregates. A reply without
/// aggregations is empty only when it has no hits.
pub fn parse_minutes(reply: &Value) -> Result<BTreeMap<i64, Minute>, String> {
    let Some(aggs) = reply.get("aggregations") else {
        return match reply["hits"]["total"]["value"].as_u64() {
            Some(0) => Ok(BTreeMap::new()),
            _ => Err("the reply has no aggregations".into()),
        };
    };
    let mut out = BTreeMap::new();
    for b in aggs["minutes"]["buckets"]
        .as_array()
        .ok_or("the reply lacks the minutes aggregation")?
    {
        let t = b["key"].as_i64().ok_or("minute without key")?;
        let mut m = Minute {
            total: count_of(b)?,
            verdicts: per_verdict(b)?,
            ..Minute::default()
        };
        for (agg, map) in [("d", &mut m.domains), ("c", &mut m.clients)] {
            for x in b[agg]["buckets"]
                .as_array()
                .ok_or_else(|| format!("minute without {agg}"))?
            {
                map.insert(key_of(x)?, per_verdict(x)?);
            }
        }
        for x in b["m"]["buckets"].as_array().ok_or("minute without m")? {
            m.models.insert(key_of(x)?, count_of(x)?);
        }
        out.insert(t, m);
    }
    Ok(out)
}

fn ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn at(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .expect("a cached minute is a valid time")
}

/// `[from, to)` over the documents that are queries (gap markers have no `event.id`).
fn window_query(from_ms: i64, to_ms: i64) -> Value {
    json!({"bool": {"filter": [
        {"range": {"@timestamp": {"gte": rfc3339(at(from_ms)), "lt": rfc3339(at(to_ms))}}},
        {"exists": {"field": "event.id"}}
    ]}})
}

/// Milliseconds of a histogram interval (`1m`, `15m`, `3h`, `1d`); `None` below a minute.
pub fn interval_ms(interval: &str) -> Option<i64> {
    let (n, unit) = interval.split_at(interval.len().checked_sub(1)?);
    let n: i64 = n.parse().ok()?;
    let unit = match unit {
        "m" => MINUTE_MS,
        "h" => 60 * MINUTE_MS,
        "d" => 24 * 60 * MINUTE_MS,
        _ => return None,
    };
    Some(n * unit)
}

#[derive(Debug, Default)]
struct Cached {
    /// Minute start -> aggregates, for every minute in `[start, end)` (absent: no queries).
    minutes: BTreeMap<i64, Minute>,
    /// Hour start -> its minutes merged, for every whole hour inside `[start, end)`: an
    /// overview merges at most 24 of these plus the minutes at the ends, not 1,440 minutes.
    hours: BTreeMap<i64, Minute>,
    /// First and one-past-last minute covered (equal while nothing is filled).
    start: i64,
    end: i64,
}

impl Cached {
    fn total(&self) -> u64 {
        self.minutes.values().map(|m| m.total).sum()
    }

    /// Merges the whole hours inside `[start, end)` that are not merged yet, and forgets
    /// those that no longer are inside.
    fn merge_hours(&mut self) {
        let first = (self.start + HOUR_MS - 1).div_euclid(HOUR_MS) * HOUR_MS;
        let (start, end) = (self.start, self.end);
        self.hours.retain(|h, _| *h >= start && *h + HOUR_MS <= end);
        let mut h = first;
        while h + HOUR_MS <= self.end {
            if !self.hours.contains_key(&h) {
                let mut merged = Minute::default();
                for m in self.minutes.range(h..h + HOUR_MS).map(|(_, m)| m) {
                    merged.merge(m);
                }
                self.hours.insert(h, merged);
            }
            h += HOUR_MS;
        }
    }
}

/// What a refresh did (for logs and tests).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RefreshReport {
    pub filled_minutes: u64,
    pub refilled_minutes: u64,
    pub dropped_minutes: u64,
    pub covered_from: Option<String>,
    pub covered_to: Option<String>,
}

#[derive(Debug)]
pub struct OverviewCache {
    config: OverviewCacheConfig,
    cached: RwLock<Cached>,
    /// One refresh at a time.
    refreshing: Mutex<()>,
}

impl OverviewCache {
    pub fn new(config: OverviewCacheConfig) -> Self {
        Self {
            config,
            cached: RwLock::new(Cached::default()),
            refreshing: Mutex::new(()),
        }
    }

    pub fn config(&self) -> &OverviewCacheConfig {
        &self.config
    }

    /// Brings the cache up to `now - grace` (see the module documentation).
    pub async fn refresh(
        &self,
        store: &Store,
        index: &str,
        now: OffsetDateTime,
    ) -> Result<RefreshReport, StoreError> {
        let _one = self.refreshing.lock().await;
        let mut report = RefreshReport::default();
        let now_ms = ms(now);
        let want_end =
            (now_ms - self.config.grace_s as i64 * 1000).div_euclid(MINUTE_MS) * MINUTE_MS;
        let want_start = want_end - self.config.window_h as i64 * 60 * MINUTE_MS;
        let (mut start, mut end) = {
            let c = self.cached.read().await;
            (c.start, c.end)
        };
        if end <= start || end < want_start || start > want_start {
            // Empty, or too old to extend: fill the whole window.
            start = want_start;
            end = want_start;
            let mut c = self.cached.write().await;
            report.dropped_minutes += c.minutes.len() as u64;
            *c = Cached {
                minutes: BTreeMap::new(),
                hours: BTreeMap::new(),
                start,
                end,
            };
        }
        let chunk = self.config.fill_chunk_min.max(1) as i64 * MINUTE_MS;
        while end < want_end {
            let to = (end + chunk).min(want_end);
            let filled = self.fill(store, index, end, to).await?;
            let mut c = self.cached.write().await;
            c.minutes.extend(filled);
            c.end = to;
            report.filled_minutes += ((to - end) / MINUTE_MS) as u64;
            end = to;
        }
        {
            let mut c = self.cached.write().await;
            let keep = c.minutes.split_off(&want_start);
            report.dropped_minutes += c.minutes.len() as u64;
            c.minutes = keep;
            c.start = c.start.max(want_start);
        }
        report.refilled_minutes = self.reconcile(store, index).await?;
        self.cached.write().await.merge_hours();
        let c = self.cached.read().await;
        if c.end > c.start {
            report.covered_from = Some(rfc3339(at(c.start)));
            report.covered_to = Some(rfc3339(at(c.end)));
        }
        Ok(report)
    }

    async fn fill(
        &self,
        store: &Store,
        index: &str,
        from: i64,
        to: i64,
    ) -> Result<BTreeMap<i64, Minute>, StoreError> {
        let reply = store
            .search(index, minutes_body(window_query(from, to)))
            .await?;
        parse_minutes(&reply).map_err(StoreError::Unreadable)
    }

    /// Counts the cached window in the store; refills the minutes whose counts differ.
    async fn reconcile(&self, store: &Store, index: &str) -> Result<u64, StoreError> {
        let (start, end, cached_total) = {
            let c = self.cached.read().await;
            (c.start, c.end, c.total())
        };
        if end <= start {
            return Ok(0);
        }
        let reply = store
            .search(
                index,
                json!({"size": 0, "track_total_hits": true, "query": window_query(start, end)}),
            )
            .await?;
        let stored = reply["hits"]["total"]["value"]
            .as_u64()
            .ok_or_else(|| StoreError::Unreadable("count without hit total".into()))?;
        if stored == cached_total {
            return Ok(0);
        }
        // Which minutes: their counts alone (one cheap histogram), then those refilled.
        let reply = store
            .search(
                index,
                json!({"size": 0, "query": window_query(start, end), "aggs": {"minutes": {
                    "date_histogram": {"field": "@timestamp", "fixed_interval": "1m", "min_doc_count": 1}}}}),
            )
            .await?;
        let mut counts: BTreeMap<i64, u64> = BTreeMap::new();
        for b in reply["aggregations"]["minutes"]["buckets"]
            .as_array()
            .ok_or_else(|| StoreError::Unreadable("minute counts without buckets".into()))?
        {
            let t = b["key"]
                .as_i64()
                .ok_or_else(|| StoreError::Unreadable("minute without key".into()))?;
            counts.insert(t, count_of(b).map_err(StoreError::Unreadable)?);
        }
        let stale: Vec<i64> = {
            let c = self.cached.read().await;
            let mut keys: Vec<i64> = counts.keys().chain(c.minutes.keys()).copied().collect();
            keys.sort_unstable();
            keys.dedup();
            keys.into_iter()
                .filter(|t| {
                    counts.get(t).copied().unwrap_or(0) != c.minutes.get(t).map_or(0, |m| m.total)
                })
                .collect()
        };
        for t in &stale {
            let mut filled = self.fill(store, index, *t, *t + MINUTE_MS).await?;
            let mut c = self.cached.write().await;
            match filled.remove(t) {
                Some(m) => c.minutes.insert(*t, m),
                None => c.minutes.remove(t),
            };
            c.hours.remove(&(t.div_euclid(HOUR_MS) * HOUR_MS));
        }
        tracing::info!(
            minutes = stale.len(),
            stored,
            cached_total,
            "overview cache: late or removed documents, minutes refilled"
        );
        Ok(stale.len() as u64)
    }

    /// The overview of `filter` at `now` from the cache, or `None` when the cache cannot
    /// answer it (see the module documentation).
    pub async fn overview(
        &self,
        store: &Store,
        index: &str,
        filter: &LogFilter,
        now: OffsetDateTime,
    ) -> Result<Option<Overview>, StoreError> {
        if !filter.is_range_only() {
            return Ok(None);
        }
        let interval = filter.range.interval(now);
        let Some(step) = interval_ms(interval) else {
            return Ok(None);
        };
        let (from, to) = filter.range.bounds(now);
        let (from_ms, to_ms) = (ms(from), ms(to));
        let first_full = (from_ms + MINUTE_MS - 1).div_euclid(MINUTE_MS) * MINUTE_MS;
        let covered_end = {
            let c = self.cached.read().await;
            let covered_end = c.end.min((to_ms + 1).div_euclid(MINUTE_MS) * MINUTE_MS);
            if c.end <= c.start || first_full < c.start || covered_end <= first_full {
                return Ok(None);
            }
            covered_end
        };
        // The range's own bounds (`lte to`, as the live overview), less the cached minutes.
        let edges = json!({"bool": {
            "filter": filter.query(now)["bool"]["filter"].clone(),
            "must_not": [{"range": {"@timestamp": {"gte": rfc3339(at(first_full)), "lt": rfc3339(at(covered_end))}}}]
        }});
        let edge_minutes = {
            let reply = store.search(index, minutes_body(edges)).await?;
            parse_minutes(&reply).map_err(StoreError::Unreadable)?
        };
        // Timeline buckets as the date_histogram with extended bounds gives them.
        let first_bucket = from_ms.div_euclid(step) * step;
        let last_bucket = to_ms.div_euclid(step) * step;
        let mut timeline: BTreeMap<i64, Point> = (0..)
            .map(|i| first_bucket + i * step)
            .take_while(|t| *t <= last_bucket)
            .map(|t| {
                (
                    t,
                    Point {
                        t,
                        allow: 0,
                        monitor: 0,
                        block: 0,
                    },
                )
            })
            .collect();
        // The lock is not held across the search; the cache may have moved meanwhile.
        let c = self.cached.read().await;
        if first_full < c.start || c.end < covered_end {
            return Ok(None);
        }
        let mut all = Minute::default();
        // Whole merged hours where they fit, single minutes elsewhere.
        let mut t = first_full;
        while t < covered_end {
            match c.hours.get(&t).filter(|_| t + HOUR_MS <= covered_end) {
                Some(hour) => {
                    all.merge(hour);
                    t += HOUR_MS;
                }
                None => {
                    if let Some(m) = c.minutes.get(&t) {
                        all.merge(m);
                    }
                    t += MINUTE_MS;
                }
            }
        }
        for m in edge_minutes.values() {
            all.merge(m);
        }
        // The timeline from every minute's verdict counts (three numbers each).
        let cached = c.minutes.range(first_full..covered_end);
        for (t, m) in cached.chain(edge_minutes.iter()) {
            let p = timeline
                .entry(t.div_euclid(step) * step)
                .or_insert_with(|| Point {
                    t: t.div_euclid(step) * step,
                    allow: 0,
                    monitor: 0,
                    block: 0,
                });
            p.allow += m.verdicts[0];
            p.monitor += m.verdicts[1];
            p.block += m.verdicts[2];
        }
        drop(c);
        Ok(Some(assemble(
            all,
            timeline.into_values().collect(),
            filter,
            now,
        )))
    }
}

/// The `TOP` keys by count (ties by key, as `terms` orders them), zero counts left out.
fn top(counts: impl Iterator<Item = (String, u64)>, n: usize) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = counts.filter(|(_, c)| *c > 0).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(n);
    v
}

fn assemble(
    all: Minute,
    timeline: Vec<Point>,
    filter: &LogFilter,
    now: OffsetDateTime,
) -> Overview {
    let (from, to) = filter.range.bounds(now);
    let whole_seconds = |t: OffsetDateTime| t.replace_nanosecond(0).unwrap_or(t);
    let by = |map: &HashMap<String, [u64; 3]>, i: usize, key: &'static str| -> Vec<Bucket> {
        top(map.iter().map(|(k, v)| (k.clone(), v[i])), TOP)
            .into_iter()
            .map(|(k, count)| Bucket {
                href: filter.link(&[("verdict", VERDICTS[i]), (key, &k)]),
                key: k,
                count,
            })
            .collect()
    };
    Overview {
        from: rfc3339(whole_seconds(from)),
        to: rfc3339(whole_seconds(to)),
        interval: filter.range.interval(now),
        total: all.total,
        total_href: filter.link(&[]),
        by_verdict: top(
            VERDICTS
                .iter()
                .zip(all.verdicts)
                .map(|(v, c)| ((*v).to_owned(), c)),
            3,
        )
        .into_iter()
        .map(|(k, count)| Bucket {
            href: filter.link(&[("verdict", &k)]),
            key: k,
            count,
        })
        .collect(),
        timeline,
        top_blocked_domains: by(&all.domains, 2, "domain"),
        top_monitored_domains: by(&all.domains, 1, "domain"),
        top_allowed_domains: by(&all.domains, 0, "domain"),
        top_clients_blocked: by(&all.clients, 2, "client"),
        top_clients_monitored: by(&all.clients, 1, "client"),
        unique_domains: all.domains.len() as u64,
        unique_clients: all.clients.len() as u64,
        models: top(all.models.into_iter(), TOP)
            .into_iter()
            .map(|(k, count)| Bucket {
                href: filter.link(&[("model", &k)]),
                key: k,
                count,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_in_whole_minutes_only() {
        assert_eq!(interval_ms("15m"), Some(900_000));
        assert_eq!(interval_ms("3h"), Some(3 * 3_600_000));
        assert_eq!(interval_ms("1d"), Some(86_400_000));
        assert_eq!(interval_ms("30s"), None);
        assert_eq!(interval_ms(""), None);
    }

    #[test]
    fn minutes_merge_exactly() {
        let reply = json!({"hits": {"total": {"value": 3}}, "aggregations": {"minutes": {"buckets": [
            {"key": 60000, "doc_count": 3,
             "v": {"buckets": [{"key": "allow", "doc_count": 2}, {"key": "block", "doc_count": 1}]},
             "d": {"buckets": [{"key": "a.com", "doc_count": 2, "v": {"buckets": [{"key": "allow", "doc_count": 2}]}},
                               {"key": "b.com", "doc_count": 1, "v": {"buckets": [{"key": "block", "doc_count": 1}]}}]},
             "c": {"buckets": [{"key": "10.0.0.1", "doc_count": 3, "v": {"buckets": [
                 {"key": "allow", "doc_count": 2}, {"key": "block", "doc_count": 1}]}}]},
             "m": {"buckets": [{"key": "m1", "doc_count": 3}]}}
        ]}}});
        let minutes = parse_minutes(&reply).unwrap();
        let m = &minutes[&60000];
        let mut sum = m.clone();
        sum.merge(m);
        assert_eq!(sum.total, 6);
        assert_eq!(sum.verdicts, [4, 0, 2]);
        assert_eq!(sum.domains["b.com"], [0, 0, 2]);
        assert_eq!(sum.clients.len(), 1);
        assert_eq!(sum.models["m1"], 6);
        assert!(parse_minutes(&json!({"hits": {"total": {"value": 1}}})).is_err());
        assert!(parse_minutes(&json!({"hits": {"total": {"value": 0}}}))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn tops_order_by_count_then_key_and_drop_zeros() {
        let t = top(
            [("b", 2), ("a", 2), ("c", 5), ("z", 0)]
                .into_iter()
                .map(|(k, c)| (k.to_owned(), c)),
            3,
        );
        assert_eq!(t, vec![("c".into(), 5), ("a".into(), 2), ("b".into(), 2)]);
    }
}
