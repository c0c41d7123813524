//! Per-request cost of the real filter in the wasmtime host, and VM memory
//! with a large deny list. Prints figures; asserts only that each path does
//! what it should (so a broken filter cannot produce a fast-looking number).
//!
//! Run: `cargo bench -p dohguard-host-test --bench filter_cost` (release build).
//! Baseline: a request on a non-DoH path through the same filter and host in
//! the same run (context create, request/response headers, done/log/delete),
//! so the ratios isolate the filter's DoH work from the host's fixed cost.

use std::hint::black_box;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use dohguard_host_test::{dohguard_filter_wasm, Filter, Plugin};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{rdata, Name, RData, Record, RecordType};
use serde_json::json;

const SCORER: &str = "dohguard_scorer";
const DENY_LIST_SIZE: usize = 100_000;
const BLOCKED_NAME: &str = "blocked.deny.bench.test";
const CACHED_NAME: &str = "xjw3kq9z.com";
/// Measured requests per path; `DOHGUARD_BENCH_ITERATIONS` overrides it (a
/// smoke run of a debug build uses a few).
const DEFAULT_ITERATIONS: usize = 20_000;

fn iterations() -> usize {
    std::env::var("DOHGUARD_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_ITERATIONS)
}

fn main() {
    let path = dohguard_filter_wasm().unwrap_or_else(|e| fail(&e.to_string()));
    let compile_started = Instant::now();
    let plugin = Plugin::load(&path).unwrap_or_else(|e| fail(&e.to_string()));
    println!(
        "filter: {} (compiled in {:.2?})",
        path.display(),
        compile_started.elapsed()
    );

    let deny: Vec<String> = (1..DENY_LIST_SIZE)
        .map(|i| format!("host-{i:06}.deny.bench.test"))
        .chain([BLOCKED_NAME.to_owned()])
        .collect();
    let empty_config = json!({ "scorer": { "cluster": SCORER } }).to_string();
    let big_config = json!({ "deny": deny, "scorer": { "cluster": SCORER } }).to_string();

    let (mut empty_vm, empty_start) = start(&plugin, &empty_config);
    let (mut big_vm, big_start) = start(&plugin, &big_config);
    let empty_memory = empty_vm.memory_size();
    let big_memory = big_vm.memory_size();

    let baseline = measure(
        "pass-through (non-DoH path), baseline",
        &mut big_vm,
        pass_through,
    );
    let deny_hit = measure(
        "deny-list hit (100k list), answered locally",
        &mut big_vm,
        deny_list_hit,
    );
    let with_overrides = overrides_vm(&plugin, &deny).map(|mut vm| {
        warm_cache(&mut vm);
        measure(
            "verdict-cache hit, forwarded, 1,000 overrides in force (none matching)",
            &mut vm,
            cache_hit,
        )
    });
    warm_cache(&mut big_vm);
    let cache_hit = measure("verdict-cache hit, forwarded", &mut big_vm, cache_hit);
    let with_answer = measure(
        "verdict-cache hit, forwarded, upstream answer (A) delivered",
        &mut big_vm,
        cache_hit_with_answer,
    );
    let with_cname = measure(
        "verdict-cache hit, forwarded, upstream answer (2 CNAMEs + A) delivered",
        &mut big_vm,
        cache_hit_with_cname_answer,
    );
    let empty_baseline = measure("pass-through, empty list VM", &mut empty_vm, pass_through);
    let post_deny = measure(
        "POST deny-list hit (normal query), answered locally",
        &mut big_vm,
        post_deny_list_hit,
    );
    let post_hostile = measure(
        "POST hostile 64 KB body (QDCOUNT 10,878), refused 400",
        &mut big_vm,
        post_hostile_body,
    );

    println!();
    // Ratios use medians: on a shared 2-core machine the mean is dominated by
    // the odd preempted request.
    println!("| path | mean | p50 | p99 | p50 ratio to baseline | p50 added by the filter |");
    println!("|---|---|---|---|---|---|");
    for row in [&baseline, &deny_hit, &cache_hit, &with_answer, &with_cname]
        .into_iter()
        .chain(with_overrides.as_ref())
        .chain([&empty_baseline, &post_deny, &post_hostile])
    {
        println!(
            "| {} | {:.2?} | {:.2?} | {:.2?} | {:.2} | {:.2?} |",
            row.label,
            row.mean,
            row.p50,
            row.p99,
            row.p50.as_secs_f64() / baseline.p50.as_secs_f64(),
            row.p50.saturating_sub(baseline.p50),
        );
    }
    println!();
    println!(
        "hostile 64 KB body / normal POST query: {:.2} (p50 {:.2?} / {:.2?}; goal <= 2)",
        post_hostile.p50.as_secs_f64() / post_deny.p50.as_secs_f64(),
        post_hostile.p50,
        post_deny.p50
    );
    println!();
    cache_miss_rate(&plugin);
    println!();
    println!("| VM | linear memory | start-up (vm_start + configure) |");
    println!("|---|---|---|");
    println!(
        "| empty deny list | {} KiB | {empty_start:.2?} |",
        empty_memory / 1024
    );
    println!(
        "| {DENY_LIST_SIZE} deny entries | {} KiB | {big_start:.2?} |",
        big_memory / 1024
    );
    println!(
        "memory ratio {:.1}x, {:.0} bytes per entry",
        big_memory as f64 / empty_memory as f64,
        (big_memory - empty_memory) as f64 / DENY_LIST_SIZE as f64
    );
}

fn fail(message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(1)
}

/// The 100k-deny-list VM with the console's override feed configured and a set of 1,000
/// overrides (none on the measured names) delivered through its tick; `None` for a module
/// without overrides (the before figures).
fn overrides_vm(plugin: &Plugin, deny: &[String]) -> Option<Filter> {
    const CONSOLE: &str = "dohguard_console";
    let config = json!({
        "deny": deny, "scorer": { "cluster": SCORER },
        "overrides": { "cluster": CONSOLE, "token": "bench-token-0123456789" },
    });
    let mut vm = match plugin
        .vm()
        .configuration(config.to_string())
        .clusters(&[SCORER, CONSOLE])
        .start()
    {
        Ok(vm) => vm,
        Err(e) => {
            println!("overrides: not measured, this module refuses the configuration ({e})");
            return None;
        }
    };
    let overrides: Vec<_> = (0..1000)
        .map(|i| {
            json!({"id": format!("o{i}"), "action": if i % 2 == 0 { "allow" } else { "deny" },
                "match": if i % 3 == 0 { "exact" } else { "suffix" },
                "name": format!("site-{i}.override.bench.test"), "created_ms": i})
        })
        .collect();
    let set = json!({"version": 1, "overrides": overrides}).to_string();
    vm.tick().unwrap();
    let poll = vm
        .pending_http_calls()
        .into_iter()
        .find(|c| c.cluster == CONSOLE)
        .unwrap_or_else(|| fail("the overrides VM did not poll on its tick"));
    vm.deliver_http_call(
        poll.token,
        Some((
            dohguard_host_test::HeaderMap::from_pairs(&[(":status", "200")]),
            set.into_bytes(),
        )),
    )
    .unwrap();
    if vm.metric("dohguard.overrides.updated") != Some(1) {
        fail("the overrides VM did not apply the set");
    }
    Some(vm)
}

fn start(plugin: &Plugin, config: &str) -> (Filter, Duration) {
    let started = Instant::now();
    let vm = plugin
        .vm()
        .configuration(config)
        .clusters(&[SCORER])
        .start()
        .unwrap_or_else(|e| fail(&e.to_string()));
    (vm, started.elapsed())
}

struct Row {
    label: &'static str,
    mean: Duration,
    p50: Duration,
    p99: Duration,
}

fn measure(label: &'static str, vm: &mut Filter, request: fn(&mut Filter)) -> Row {
    let iterations = iterations();
    for _ in 0..iterations / 10 {
        request(vm);
    }
    let mut samples = Vec::with_capacity(iterations);
    let started = Instant::now();
    for _ in 0..iterations {
        let one = Instant::now();
        request(vm);
        samples.push(one.elapsed());
    }
    let mean = started.elapsed() / iterations as u32;
    samples.sort();
    vm.clear_logs(); // keep the capture from growing across cases
    Row {
        label,
        mean,
        p50: samples[iterations / 2],
        p99: samples[iterations * 99 / 100],
    }
}

fn dns_get_path(name: &str) -> String {
    let mut message = Message::new(0x4242, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    format!(
        "/dns-query?dns={}",
        URL_SAFE_NO_PAD.encode(message.to_vec().unwrap())
    )
}

fn pass_through(vm: &mut Filter) {
    let mut stream = vm.stream().unwrap();
    stream
        .request_headers(
            &[
                (":method", "GET"),
                (":authority", "doh.example"),
                (":path", "/healthz"),
            ],
            true,
        )
        .unwrap()
        .expect_continue();
    stream
        .response_headers(&[(":status", "200")], true)
        .unwrap()
        .expect_continue();
    stream.finish().unwrap();
}

fn deny_list_hit(vm: &mut Filter) {
    thread_local! { static PATH: String = dns_get_path(BLOCKED_NAME); }
    let path = PATH.with(Clone::clone);
    let mut stream = vm.stream().unwrap();
    let reply = stream
        .request_headers(
            &[
                (":method", "GET"),
                (":authority", "doh.example"),
                (":path", &path),
            ],
            true,
        )
        .unwrap()
        .expect_local_response(200);
    black_box(reply);
    stream.finish().unwrap();
}

fn warm_cache(vm: &mut Filter) {
    let path = dns_get_path(CACHED_NAME);
    let reply = json!({
        "name": CACHED_NAME, "registered_domain": CACHED_NAME, "score": 0.01,
        "verdict": "allow", "reason": "model", "scope": "registered_domain",
        "model_version": "bench", "ttl": 86_400,
    });
    let mut stream = vm.stream().unwrap();
    stream
        .request_headers(
            &[
                (":method", "GET"),
                (":authority", "doh.example"),
                (":path", &path),
            ],
            true,
        )
        .unwrap()
        .expect_http_call(SCORER)
        .returning(200, reply.to_string())
        .unwrap()
        .expect_continue();
    stream.finish().unwrap();
}

/// The upstream's answer to the cached name: an A record, or a chain of two CNAMEs.
fn upstream_answer(cnames: bool) -> Vec<u8> {
    let owner = Name::from_ascii(CACHED_NAME).unwrap();
    let mut message = Message::new(0x4242, MessageType::Response, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.metadata.recursion_available = true;
    message.add_query(Query::query(owner.clone(), RecordType::A));
    let mut last = owner;
    if cnames {
        for hop in ["edge.cdn.bench.test.", "pool.cdn.bench.test."] {
            let next = Name::from_ascii(hop).unwrap();
            message.add_answer(Record::from_rdata(
                last,
                300,
                RData::CNAME(rdata::CNAME(next.clone())),
            ));
            last = next;
        }
    }
    message.add_answer(Record::from_rdata(
        last,
        300,
        RData::A(rdata::A::new(192, 0, 2, 10)),
    ));
    message.to_vec().unwrap()
}

/// A cache hit whose upstream answer comes back with a body (headers, then the body with
/// end of stream), as unbound answers: the path the CNAME inspection adds work to.
fn forwarded_with_answer(vm: &mut Filter, answer: &[u8]) {
    thread_local! { static PATH: String = dns_get_path(CACHED_NAME); }
    let path = PATH.with(Clone::clone);
    let length = answer.len().to_string();
    let mut stream = vm.stream().unwrap();
    stream
        .request_headers(
            &[
                (":method", "GET"),
                (":authority", "doh.example"),
                (":path", &path),
            ],
            true,
        )
        .unwrap()
        .expect_no_http_call()
        .expect_continue();
    stream
        .response_headers(
            &[
                (":status", "200"),
                ("content-type", "application/dns-message"),
                ("content-length", &length),
            ],
            false,
        )
        .unwrap();
    stream
        .response_body(answer, true)
        .unwrap()
        .expect_continue();
    assert_eq!(stream.response_body_bytes(), answer, "forwarded unchanged");
    stream.finish().unwrap();
}

fn cache_hit_with_answer(vm: &mut Filter) {
    thread_local! { static ANSWER: Vec<u8> = upstream_answer(false); }
    ANSWER.with(|answer| forwarded_with_answer(vm, answer));
}

fn cache_hit_with_cname_answer(vm: &mut Filter) {
    thread_local! { static ANSWER: Vec<u8> = upstream_answer(true); }
    ANSWER.with(|answer| forwarded_with_answer(vm, answer));
}

fn cache_hit(vm: &mut Filter) {
    thread_local! { static PATH: String = dns_get_path(CACHED_NAME); }
    let path = PATH.with(Clone::clone);
    let mut stream = vm.stream().unwrap();
    stream
        .request_headers(
            &[
                (":method", "GET"),
                (":authority", "doh.example"),
                (":path", &path),
            ],
            true,
        )
        .unwrap()
        .expect_no_http_call()
        .expect_continue();
    stream
        .response_headers(&[(":status", "200")], true)
        .unwrap()
        .expect_continue();
    stream.finish().unwrap();
}

fn post_query(vm: &mut Filter, body: &[u8]) -> dohguard_host_test::LocalResponse {
    let length = body.len().to_string();
    let mut stream = vm.stream().unwrap();
    stream
        .request_headers(
            &[
                (":method", "POST"),
                (":authority", "doh.example"),
                (":path", "/dns-query"),
                ("content-type", "application/dns-message"),
                ("content-length", &length),
            ],
            false,
        )
        .unwrap()
        .expect_pause();
    let reply = stream
        .request_body(body, true)
        .unwrap()
        .expect_local_response(200..500);
    stream.finish().unwrap();
    reply
}

fn post_deny_list_hit(vm: &mut Filter) {
    thread_local! { static BODY: Vec<u8> = dns_query(BLOCKED_NAME); }
    let reply = BODY.with(|body| post_query(vm, body));
    assert_eq!(reply.status, 200);
    black_box(reply);
}

fn post_hostile_body(vm: &mut Filter) {
    thread_local! { static BODY: Vec<u8> = dohguard_filter::dns::hostile_question_flood(); }
    let reply = BODY.with(|body| post_query(vm, body));
    assert_eq!(reply.status, 400);
    black_box(reply);
}

fn dns_query(name: &str) -> Vec<u8> {
    let mut message = Message::new(0x4242, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    message.to_vec().unwrap()
}

/// The verdict cache's miss rate for a working set of half its default capacity (65,536):
/// 32,768 distinct names, each scored once (a callout answered with a 24 h verdict), then
/// asked again in two rounds; a miss is a request that made a callout again.
fn cache_miss_rate(plugin: &Plugin) {
    const CAPACITY: usize = 65_536;
    const WORKING_SET: usize = CAPACITY / 2;
    const ROUNDS: usize = 2;
    let config = json!({ "scorer": { "cluster": SCORER }, "cache": { "max_entries": CAPACITY } });
    let (mut vm, _) = start(plugin, &config.to_string());
    let names: Vec<String> = (0..WORKING_SET)
        .map(|i| format!("w{i}.site{}.bench.test", i % 1000))
        .collect();
    let paths: Vec<String> = names.iter().map(|n| dns_get_path(n)).collect();
    let ask = |vm: &mut Filter, i: usize| -> bool {
        let mut stream = vm.stream().unwrap();
        let outcome = stream
            .request_headers(
                &[
                    (":method", "GET"),
                    (":authority", "doh.example"),
                    (":path", &paths[i]),
                ],
                true,
            )
            .unwrap();
        let missed = !outcome.http_calls().is_empty();
        if missed {
            let reply = json!({
                "name": names[i], "registered_domain": format!("site{}.bench.test", i % 1000),
                "score": 0.01, "verdict": "allow", "reason": "model", "scope": "name",
                "model_version": "bench", "ttl": 86_400,
            });
            outcome
                .expect_http_call(SCORER)
                .returning(200, reply.to_string())
                .unwrap()
                .expect_continue();
        } else {
            outcome.expect_continue();
        }
        stream.finish().unwrap();
        missed
    };
    let filled = (0..WORKING_SET).filter(|&i| ask(&mut vm, i)).count();
    assert_eq!(
        filled, WORKING_SET,
        "every name is scored once to fill the cache"
    );
    let mut hits = Vec::with_capacity(ROUNDS * WORKING_SET);
    let mut misses = 0;
    for _ in 0..ROUNDS {
        for i in 0..WORKING_SET {
            let one = Instant::now();
            if ask(&mut vm, i) {
                misses += 1;
            } else {
                hits.push(one.elapsed());
            }
        }
    }
    hits.sort();
    let asked = ROUNDS * WORKING_SET;
    println!(
        "verdict cache, working set {WORKING_SET} names = half of max_entries {CAPACITY}: \
         {misses} misses in {asked} repeat requests = {:.3}% (goal <= 0.1%), \
         {} shared-data keys; a hit in this full cache: p50 {:.2?}, p99 {:.2?}",
        misses as f64 * 100.0 / asked as f64,
        vm.shared_data().len(),
        hits[hits.len() / 2],
        hits[hits.len() * 99 / 100],
    );
    vm.clear_logs();
}
