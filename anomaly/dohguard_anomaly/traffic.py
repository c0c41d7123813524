"""Traffic for the metrics data set: several DoH clients with a compressed daily cycle, plus
fault injectors whose intervals are the labels.

Clients are distinct loopback source addresses (127.0.0.10 ...), so Envoy and the filter see
them as distinct clients. Queries are real DNS messages (dnspython) sent as DoH POSTs over
HTTP/2 (httpx, prior knowledge on the cleartext listener). Names are drawn from a Zipf law
over the demo zone's names and generated benign-looking names; the faults add their own names.

Process faults act on the real processes by PID: SIGSTOP/SIGCONT makes a part stop answering
(an outage that looks like a hang to its callers, which is what timeouts see), and a duty
cycle of short stops adds latency.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import math
import os
import random
import signal
import string
import time
from collections.abc import Callable

import dns.message
import dns.rdatatype
import httpx

# Fault classes (the `anomaly_class` column) and what each does.
FAULTS = {
    "flood": "one client sends intensity x the normal total rate of popular names",
    "random_subdomain": "random labels under one victim domain (water torture), intensity x normal rate",
    "nxdomain_storm": "one misconfigured client repeats a few non-existent names, intensity x normal rate",
    "dga_burst": "one infected host asks algorithmic names, intensity x 5 per second",
    "tunnel": "long high-entropy labels under one base domain, intensity per second, steady",
    "scorer_outage": "the scorer stops answering (SIGSTOP) for the interval",
    "upstream_outage": "unbound stops answering (SIGSTOP) for the interval",
    "upstream_latency": "unbound is stopped for intensity x 50 ms of every 250 ms (added latency)",
    "cache_flush": "the verdict cache is flushed through the console (POST /api/cache/flush) intensity times, evenly over the interval",
}

# Faults that need the console (its session in the environment, `ConsoleSession.from_env`).
CONSOLE_FAULTS = {"cache_flush"}


@dataclasses.dataclass(frozen=True)
class Fault:
    kind: str
    start_s: float
    duration_s: float
    intensity: float

    def active(self, t: float) -> bool:
        return self.start_s <= t < self.start_s + self.duration_s


def schedule(seed: int, minutes: float, warmup_s: float = 60.0, gap_s: float = 40.0,
             kinds: list[str] | None = None) -> list[Fault]:
    """A fault plan: every class (of `kinds`, default all) once per round, in a seeded order,
    at rotating intensities, each followed by a clean gap; the first `warmup_s` seconds are
    clean."""
    unknown = sorted(set(kinds or []) - set(FAULTS))
    if unknown:
        raise ValueError(f"unknown fault classes {unknown}; known: {sorted(FAULTS)}")
    rng = random.Random(seed)
    intensities = [1.0, 3.0, 6.0]
    faults: list[Fault] = []
    t = warmup_s
    end = minutes * 60.0
    round_no = 0
    while True:
        kinds_now = list(kinds or FAULTS)
        rng.shuffle(kinds_now)
        for kind in kinds_now:
            duration = rng.uniform(20.0, 45.0)
            if t + duration + gap_s > end:
                return faults
            faults.append(Fault(kind, t, duration, intensities[(round_no + len(faults)) % 3]))
            t += duration + rng.uniform(gap_s, 2 * gap_s)
        round_no += 1


class ConsoleSession:
    """A logged-in console session (its URL, cookie and CSRF token), for the faults that go
    through the console. `cargo xtask record-metrics` logs the initial admin in and hands the
    session over in the environment (never on the command line, never printed)."""

    ENV = ("DOHGUARD_CONSOLE_URL", "DOHGUARD_CONSOLE_COOKIE", "DOHGUARD_CONSOLE_CSRF")

    def __init__(self, url: str, cookie: str, csrf: str):
        self.url = url.rstrip("/") + "/"
        headers = {"cookie": cookie, "x-csrf-token": csrf, "content-type": "application/json"}
        self._client = httpx.AsyncClient(headers=headers, timeout=10.0)

    @classmethod
    def from_env(cls) -> ConsoleSession | None:
        values = [os.environ.get(k) for k in cls.ENV]
        return cls(*values) if all(values) else None

    async def flush_cache(self, reason: str) -> None:
        r = await self._client.post(self.url + "api/cache/flush", json={"reason": reason})
        if r.status_code != 202:
            raise RuntimeError(f"the console refused the cache flush: {r.status_code} {r.text}")

    async def close(self) -> None:
        await self._client.aclose()


def zipf_picker(names: list[str], rng: random.Random, s: float = 1.1) -> Callable[[], str]:
    """Draws names with probability proportional to 1 / rank**s."""
    # Cumulative once: random.choices then bisects instead of summing on every draw.
    cum_weights = list(itertools.accumulate(1.0 / (i + 1) ** s for i in range(len(names))))
    return lambda: rng.choices(names, cum_weights=cum_weights)[0]


def benign_names(zone_names: list[str], rng: random.Random, count: int = 300) -> list[str]:
    words = ["mail", "cdn", "api", "shop", "news", "static", "img", "login", "docs", "video"]
    sites = ["example.test", "example.org", "example.com", "example.net"]
    generated = {f"{rng.choice(words)}{i}.{rng.choice(sites)}" for i in range(count)}
    return zone_names + sorted(generated)


def algorithmic_name(rng: random.Random) -> str:
    length = rng.randint(10, 16)
    label = "".join(rng.choice(string.ascii_lowercase) for _ in range(length))
    return f"{label}.{rng.choice(['com', 'net', 'org', 'info', 'biz'])}"


def tunnel_name(rng: random.Random, base: str = "t.exfil.test") -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    labels = ["".join(rng.choice(alphabet) for _ in range(rng.randint(40, 60))) for _ in range(2)]
    return ".".join(labels + [base])


def message(name: str, qtype: str = "A") -> bytes:
    return dns.message.make_query(name, dns.rdatatype.from_text(qtype), use_edns=True).to_wire()


class Clients:
    """One HTTP/2 client per source address."""

    def __init__(self, doh_url: str, count: int, timeout_s: float = 3.0):
        self.doh_url = doh_url
        self.clients = [
            httpx.AsyncClient(
                http1=False,
                http2=True,
                timeout=timeout_s,
                transport=httpx.AsyncHTTPTransport(
                    http1=False, http2=True, local_address=f"127.0.0.{10 + i}"
                ),
            )
            for i in range(count)
        ]
        self.sent = 0
        self.failed = 0

    async def query(self, client: int, name: str, qtype: str = "A") -> None:
        self.sent += 1
        try:
            await self.clients[client].post(
                self.doh_url,
                content=message(name, qtype),
                headers={"content-type": "application/dns-message", "accept": "application/dns-message"},
            )
        except httpx.HTTPError:
            # A timeout during an outage is part of the data, not an error of the generator.
            self.failed += 1

    async def close(self) -> None:
        for c in self.clients:
            await c.aclose()


def daily_rate(base_rate: float, t: float, day_s: float) -> float:
    """Base rate modulated by a compressed day of `day_s` seconds: 0.2 x at 'midnight'
    (t = 0), 1.0 x at 'noon'."""
    return base_rate * (0.6 - 0.4 * math.cos(2 * math.pi * t / day_s))


class ProcessFault:
    """SIGSTOP/SIGCONT on a PID, always resumed at the end."""

    def __init__(self, pid: int | None):
        self.pid = pid
        self.stopped = False

    def stop(self) -> None:
        if self.pid and not self.stopped:
            os.kill(self.pid, signal.SIGSTOP)
            self.stopped = True

    def resume(self) -> None:
        if self.pid and self.stopped:
            os.kill(self.pid, signal.SIGCONT)
            self.stopped = False


async def run(
    doh_url: str,
    zone_names: list[str],
    minutes: float,
    seed: int,
    base_rate: float,
    clients: int,
    day_s: float,
    faults: list[Fault],
    scorer_pid: int | None,
    unbound_pid: int | None,
    progress: Callable[[float], None] | None = None,
    console: ConsoleSession | None = None,
) -> dict:
    """Sends the traffic and injects the faults; returns counts. Wall-clock times of the run
    start and every fault are in the returned dict (the labels)."""
    needs_console = sorted({f.kind for f in faults} & CONSOLE_FAULTS)
    if needs_console and console is None:
        raise ValueError(f"the faults {needs_console} need the console's session ({', '.join(ConsoleSession.ENV)})")
    rng = random.Random(seed)
    pick = zipf_picker(benign_names(zone_names, rng), rng)
    pool = Clients(doh_url, clients)
    flushes_done: dict[Fault, int] = {}
    scorer = ProcessFault(scorer_pid)
    unbound = ProcessFault(unbound_pid)
    victim = "victim.example.test"
    storm_names = [f"nosuch{i}.corp.example.test" for i in range(3)]
    start = time.time()
    tasks: set[asyncio.Task] = set()
    tick = 0.05

    def spawn(coro) -> None:
        task = asyncio.ensure_future(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    credit: dict[str, float] = {}

    def due(key: str, rate: float) -> int:
        credit[key] = credit.get(key, 0.0) + rate * tick
        n = int(credit[key])
        credit[key] -= n
        return n

    try:
        while (t := time.time() - start) < minutes * 60.0:
            if progress:
                progress(t)
            active = [f for f in faults if f.active(t)]
            rate = daily_rate(base_rate, t, day_s)
            for _ in range(due("normal", rate)):
                spawn(pool.query(rng.randrange(clients), pick(), rng.choice(["A", "A", "A", "AAAA", "HTTPS"])))
            # Faults that are traffic; the flooding/infected client is client 0.
            for f in active:
                if f.kind == "flood":
                    for _ in range(due("flood", f.intensity * base_rate)):
                        spawn(pool.query(0, pick()))
                elif f.kind == "random_subdomain":
                    for _ in range(due("rsub", f.intensity * base_rate)):
                        spawn(pool.query(rng.randrange(clients), f"{rng.getrandbits(40):x}.{victim}"))
                elif f.kind == "nxdomain_storm":
                    for _ in range(due("storm", f.intensity * base_rate)):
                        spawn(pool.query(0, rng.choice(storm_names)))
                elif f.kind == "dga_burst":
                    for _ in range(due("dga", f.intensity * 5)):
                        spawn(pool.query(0, algorithmic_name(rng)))
                elif f.kind == "tunnel":
                    for _ in range(due("tunnel", f.intensity)):
                        spawn(pool.query(0, tunnel_name(rng), "TXT"))
                elif f.kind == "cache_flush":
                    # Flush k of `intensity` is due at start + k * duration / intensity.
                    done = flushes_done.get(f, 0)
                    if done < int(f.intensity) and t >= f.start_s + done * f.duration_s / f.intensity:
                        flushes_done[f] = done + 1
                        await console.flush_cache(f"data set recording, fault at {f.start_s:.0f} s")
            # Faults that are processes.
            by_kind = {f.kind: f for f in active}
            if "scorer_outage" in by_kind:
                scorer.stop()
            else:
                scorer.resume()
            if "upstream_outage" in by_kind:
                unbound.stop()
            elif "upstream_latency" in by_kind:
                stopped_ms = by_kind["upstream_latency"].intensity * 50.0
                if (t * 1000.0) % 250.0 < stopped_ms:
                    unbound.stop()
                else:
                    unbound.resume()
            else:
                unbound.resume()
            await asyncio.sleep(tick)
    finally:
        scorer.resume()
        unbound.resume()
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        await pool.close()
        if console is not None:
            await console.close()
    return {
        "start_unix": start,
        "end_unix": time.time(),
        "queries_sent": pool.sent,
        "queries_failed": pool.failed,
        "faults": [dataclasses.asdict(f) for f in faults],
    }


def write_labels(path: str, result: dict) -> None:
    with open(path, "w") as out:
        json.dump(result, out, indent=1)
