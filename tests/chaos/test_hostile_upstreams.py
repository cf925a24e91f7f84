"""Model servers that attack the gateway with their answers, under load: a gzip bomb on a canary
and JSON nested past any sane depth. Each is a counted fallback; the gateway's memory stays
bounded, no client sees a 5xx, and the breaker sees the failures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.harness import Load, figure, metrics
from tests.conftest import GatewayFactory, canary_yaml, write_experiment
from tests.support import model_server, rss_mib

QUIET = {"TURNOUT_ACCESS_LOG": "false"}
SEED = "protocol: http_json, score: confidence, label: is_profane, labels: {true: 1, false: 0}"
PEAK_GROWTH_MIB = 100


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with model_server(tmp_path_factory.mktemp("hostile")) as url:
        yield url


def hostile_canary(workers: dict[str, str], server: str, weight: int) -> str:
    text = canary_yaml({"v1": workers["v1"], "bad": server}, {"v1": 100 - weight, "bad": weight})
    return text.replace(f"url: '{server}'", f"url: '{server}', {SEED}, health: none")


def five_xx(load: Load) -> int:
    return sum(s.status >= 500 or s.status == 0 for s in load.samples)


def test_a_gzip_bomb_on_a_canary_leaves_memory_bounded(
    start_gateway: GatewayFactory, workers: dict[str, str], hostile: str, tmp_path: Path
) -> None:
    write_experiment(tmp_path, hostile_canary(workers, f"{hostile}/gzip_bomb", 10))
    # Every bomb is read (the breaker would otherwise shield the gateway after a few).
    gw = start_gateway(tmp_path, TURNOUT_BREAKER_FAILURES="1000", **QUIET)
    before = rss_mib(gw.process.pid)
    with Load(gw.url, concurrency=4) as load:
        load.wait_for(200, timeout=300)
    peak = rss_mib(gw.process.pid, "VmHWM")
    m = metrics(gw)
    figure(
        "gzip bomb on a 10% canary",
        load.samples,
        gw,
        rss_before_mib=f"{before:.0f}",
        rss_peak_mib=f"{peak:.0f}",
        bombs_refused=f"{m['turnout_fallbacks_total{too_large}']:.0f}",
        five_xx=five_xx(load),
    )
    assert five_xx(load) == 0
    assert m["turnout_fallbacks_total{too_large}"] >= 5
    assert peak - before < PEAK_GROWTH_MIB
    assert all(s.body.get("model_version") == "v1" for s in load.samples)


def test_deeply_nested_answers_on_a_canary_fall_back_and_open_the_breaker(
    start_gateway: GatewayFactory, workers: dict[str, str], hostile: str, tmp_path: Path
) -> None:
    write_experiment(tmp_path, hostile_canary(workers, f"{hostile}/deep_json", 10))
    gw = start_gateway(
        tmp_path, TURNOUT_BREAKER_FAILURES="3", TURNOUT_BREAKER_RESET_SECONDS="30", **QUIET
    )
    with Load(gw.url, concurrency=4) as load:
        load.wait_for(200, timeout=120)
    m = metrics(gw)
    figure(
        "nested JSON on a 10% canary",
        load.samples,
        gw,
        too_deep=f"{m['turnout_fallbacks_total{too_deep}']:.0f}",
        breaker_skips=f"{m['turnout_upstream_skipped_total{breaker_open}']:.0f}",
        five_xx=five_xx(load),
    )
    assert five_xx(load) == 0
    assert m["turnout_fallbacks_total{too_deep}"] >= 3
    assert m["turnout_upstream_skipped_total{breaker_open}"] > 0  # the breaker opened
