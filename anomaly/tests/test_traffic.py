"""The traffic generator's plan and name sources (the recording itself runs against the real
stack: `cargo xtask record-metrics`)."""

import asyncio
import random
from collections import Counter

import dns.message
import pytest

from dohguard_anomaly import traffic


def test_a_long_schedule_has_every_fault_class_without_overlap_after_a_clean_warmup():
    plan = traffic.schedule(seed=7, minutes=40)
    assert {f.kind for f in plan} == set(traffic.FAULTS)
    assert plan[0].start_s >= 60.0
    for a, b in zip(plan, plan[1:]):
        assert a.start_s + a.duration_s < b.start_s, (a, b)
    assert plan[-1].start_s + plan[-1].duration_s <= 40 * 60
    assert {f.intensity for f in plan} == {1.0, 3.0, 6.0}


def test_the_schedule_is_reproducible_from_its_seed():
    assert traffic.schedule(3, 30) == traffic.schedule(3, 30)
    assert traffic.schedule(3, 30) != traffic.schedule(4, 30)


def test_zipf_favours_the_head():
    rng = random.Random(1)
    names = [f"n{i}.test" for i in range(100)]
    pick = traffic.zipf_picker(names, rng)
    counts = Counter(pick() for _ in range(20000))
    assert counts["n0.test"] > counts["n1.test"] > counts["n10.test"]
    assert counts["n0.test"] > 5 * counts["n20.test"]


def test_the_daily_cycle_stays_between_a_fifth_and_the_peak():
    rates = [traffic.daily_rate(100.0, t, 600.0) for t in range(0, 600, 5)]
    assert min(rates) >= 19.9 and max(rates) <= 100.0
    assert abs(traffic.daily_rate(100.0, 0, 600.0) - 20.0) < 1e-9
    assert abs(traffic.daily_rate(100.0, 300, 600.0) - 100.0) < 1e-9


def test_generated_names_are_valid_dns_queries():
    rng = random.Random(2)
    for name in [traffic.algorithmic_name(rng), traffic.tunnel_name(rng)]:
        wire = traffic.message(name, "TXT")
        parsed = dns.message.from_wire(wire)
        assert str(parsed.question[0].name).rstrip(".") == name
        assert all(len(label) <= 63 for label in name.split("."))


def test_a_schedule_can_hold_only_some_classes_and_refuses_unknown_ones():
    plan = traffic.schedule(seed=5, minutes=8, kinds=["cache_flush"])
    assert plan and {f.kind for f in plan} == {"cache_flush"}
    with pytest.raises(ValueError, match="unknown fault classes"):
        traffic.schedule(seed=5, minutes=8, kinds=["cache_flood"])


def test_a_console_fault_without_the_console_session_is_refused_before_any_traffic(monkeypatch):
    for key in traffic.ConsoleSession.ENV:
        monkeypatch.delenv(key, raising=False)
    assert traffic.ConsoleSession.from_env() is None
    plan = [traffic.Fault("cache_flush", 1.0, 5.0, 1.0)]
    with pytest.raises(ValueError, match="need the console"):
        asyncio.run(traffic.run(doh_url="http://127.0.0.1:9/dns-query", zone_names=["a.test"], minutes=0.01,
                                seed=1, base_rate=1, clients=1, day_s=60, faults=plan,
                                scorer_pid=None, unbound_pid=None))
