"""Shadow mirroring through real gateway and worker processes, compared in a real Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from typer.testing import CliRunner

from model_workers import registry
from model_workers.train import load_dataset
from router.cli import app as cli
from router.core.settings import Settings
from router.local.processes import free_port, poll_until
from router.local.redis_server import RedisTopology
from router.storage import keys
from tests.conftest import SAMPLE_ROWS, Gateway, GatewayFactory, WorkerFactory, write_experiment

FAST = {"TURNOUT_RECORDING_FLUSH_INTERVAL": "0.05", "TURNOUT_ACCESS_LOG": "false"}


def experiment(name: str, variants: dict[str, str], weights: dict[str, int], shadow: str) -> str:
    lines = [f"name: {name}", f"model: {name}", "control: v1", "variants:"]
    lines += [f"  {v}: {{url: '{u}'}}" for v, u in variants.items()]
    lines += ["policy:", "  kind: canary", "  weights: {"]
    lines[-1] += ", ".join(f"{v}: {w}" for v, w in weights.items()) + "}"
    lines += ["  sticky: user_id", f"shadow: {shadow}"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def workers(start_worker: WorkerFactory) -> dict[str, str]:
    return {
        "v1": start_worker("v1").url,
        "v3": start_worker("v3").url,
        "slow": start_worker("v3", TURNOUT_WORKER_FAULT_DELAY_MS="5000").url,
        "failing": start_worker("v3", TURNOUT_WORKER_FAULT_STATUS="500").url,
        "dead": f"http://127.0.0.1:{free_port()}",
    }


@pytest.fixture(scope="module")
def gateway(
    start_gateway: GatewayFactory,
    workers: dict[str, str],
    redis_server: RedisTopology,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Gateway, str]:
    """One gateway over one experiment per shadow kind (each its own model name)."""
    run = uuid.uuid4().hex[:6]
    folder = tmp_path_factory.mktemp("experiments")
    main = {"v1": workers["v1"], "v3": workers["v3"]}
    write_experiment(
        folder,
        experiment(f"full-{run}", main, {"v1": 100}, "{targets: [v3], sample: 1.0}"),
        "a.yaml",
    )
    write_experiment(
        folder,
        experiment(f"live-{run}", main, {"v1": 50, "v3": 50}, "{targets: [v3], sample: 1.0}"),
        "b.yaml",
    )
    for kind in ("slow", "failing", "dead"):
        variants = {"v1": workers["v1"], "v3": workers[kind]}
        write_experiment(
            folder,
            experiment(f"{kind}-{run}", variants, {"v1": 100}, "{targets: [v3], sample: 1.0}"),
            f"{kind}.yaml",
        )
    env = {
        **redis_server.env,
        "TURNOUT_SHADOW_TIMEOUT": "1.0",
        "TURNOUT_SHADOW_MAX_IN_FLIGHT": "256",
        **FAST,
    }
    return start_gateway(folder, wait_ready=False, **env), run


async def post_all(url: str, bodies: list[dict[str, Any]], concurrency: int = 8) -> list[dict]:
    results: list[dict] = [{}] * len(bodies)
    queue = list(enumerate(bodies))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def one() -> None:
            while queue:
                i, body = queue.pop()
                started = time.perf_counter()
                async with session.post(url, json=body) as r:
                    payload = await r.json()
                results[i] = {
                    "status": r.status,
                    "seconds": time.perf_counter() - started,
                    **payload,
                }

        await asyncio.gather(*(one() for _ in range(concurrency)))
    return results


def shadow_report(gw: Gateway, name: str) -> dict[str, Any]:
    r = httpx.get(f"{gw.url}/experiments/{name}/shadow", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def pair(report: dict[str, Any], primary: str = "v1", shadow: str = "v3") -> dict[str, Any]:
    rows = [p for p in report["pairs"] if (p["primary"], p["shadow"]) == (primary, shadow)]
    return rows[0] if rows else {"pairs": 0, "shadow_errors": 0, "shadow_dropped": 0}


def test_agreement_and_confusion_equal_an_offline_comparison(
    gateway: tuple[Gateway, str], models_dir: Path, redis_server: RedisTopology
) -> None:
    gw, run = gateway
    name = f"full-{run}"
    data = load_dataset(Settings().dataset, limit=SAMPLE_ROWS + 200)
    texts, truth = data.texts[SAMPLE_ROWS:], data.labels[SAMPLE_ROWS:]
    bodies = [{"text": t, "user_id": f"u{i}"} for i, t in enumerate(texts)]
    served = asyncio.run(post_all(f"{gw.url}/models/{name}/predict", bodies))
    assert all(r["status"] == 200 for r in served)
    poll_until(
        lambda: pair(shadow_report(gw, name))["pairs"] == len(texts), 30, what="all comparisons"
    )

    v1 = registry.load(models_dir, "profanity", "v1").outputs(texts)
    v3 = registry.load(models_dir, "profanity", "v3").outputs(texts)
    offline = Counter((str(a["label"]), str(b["label"])) for a, b in zip(v1, v3, strict=True))
    row = pair(shadow_report(gw, name))
    got = {(p, s): n for p, cols in row["confusion"].items() for s, n in cols.items()}
    assert got == dict(offline)
    agree = sum(n for (p, s), n in offline.items() if p == s)
    assert row["agreement"] == pytest.approx(agree / len(texts))
    lo, hi = row["agreement_interval"]
    assert lo <= row["agreement"] <= hi
    # Sticky: pairs are analysed per user; with one request per user that is the plain
    # normal interval of a proportion over the users.
    assert row["unit"] == "user" and row["users"] == len(texts)
    p, n = row["agreement"], len(texts)
    half = 1.959963984540054 * (p * (1 - p) / n) ** 0.5
    assert [lo, hi] == pytest.approx([max(0.0, p - half), min(1.0, p + half)], rel=1e-9)
    deltas = [b["score"] - a["score"] for a, b in zip(v1, v3, strict=True)]
    assert row["score_delta"]["mean"] == pytest.approx(sum(deltas) / len(deltas), abs=1e-9)
    assert row["mcnemar"]["b"] == offline[("1", "0")]
    assert row["mcnemar"]["c"] == offline[("0", "1")]
    assert row["latency_ms"]["shadow"]["p50"] is not None

    # Labelled feedback: both versions' accuracy on the same requests, as computed offline.
    with httpx.Client() as client:
        for r, label in zip(served, truth, strict=True):
            fb = client.post(
                f"{gw.url}/feedback", json={"request_id": r["request_id"], "label": label}
            )
            assert fb.status_code == 200, fb.text
    row = pair(shadow_report(gw, name))
    order = {r["request_id"]: i for i, r in enumerate(served)}
    assert row["labelled_feedback"]["n"] == len(texts)
    assert row["labelled_feedback"]["primary_accuracy"] == pytest.approx(
        sum(a["label"] == t for a, t in zip(v1, truth, strict=True)) / len(texts)
    )
    assert row["labelled_feedback"]["shadow_accuracy"] == pytest.approx(
        sum(b["label"] == t for b, t in zip(v3, truth, strict=True)) / len(texts)
    )
    assert order  # every request id was distinct

    # Independent recomputation from the raw comparison stream in Redis.
    client = redis_server.client()
    entries = [f for _, f in client.xrange(keys.shadow_events(name))]
    assert len(entries) == len(texts)
    assert sum(e["agree"] == "1" for e in entries) == agree
    recomputed = Counter((e["primary_label"], e["shadow_label"]) for e in entries)
    assert dict(recomputed) == dict(offline)
    disagreements = client.xlen(keys.disagreements(name))
    assert disagreements == len(texts) - agree
    assert not any("text" in e for e in entries)

    result = CliRunner().invoke(cli, ["shadow-report", name, "--url", gw.url, "--json"])
    assert result.exit_code == 0, result.output
    assert '"pairs"' in result.output
    table = CliRunner().invoke(
        cli, ["shadow-report", name, "--url", gw.url], env={"COLUMNS": "250"}
    )
    assert table.exit_code == 0
    assert "shadow comparison" in table.output


@pytest.mark.parametrize("kind", ["slow", "failing", "dead"])
def test_a_bad_shadow_does_not_touch_the_primary(gateway: tuple[Gateway, str], kind: str) -> None:
    gw, run = gateway
    name = f"{kind}-{run}"
    bodies = [{"text": f"text {i}", "user_id": f"k{i}"} for i in range(30)]
    served = asyncio.run(post_all(f"{gw.url}/models/{name}/predict", bodies, concurrency=4))
    assert all(r["status"] == 200 for r in served)
    assert all(r["model_version"] == "v1" and not r["fallback"] for r in served)
    # The slow shadow sleeps 5 s: had the response waited for it, it would show here.
    assert max(r["seconds"] for r in served) < 2.0

    def accounted() -> bool:
        row = pair(shadow_report(gw, name))
        return row["shadow_errors"] + row["shadow_dropped"] == len(bodies) and row["pairs"] == 0

    poll_until(accounted, 30, what=f"every mirror of the {kind} shadow to be accounted for")


def test_bounded_concurrency_drops_and_counts(
    start_gateway: GatewayFactory,
    workers: dict[str, str],
    redis_server: RedisTopology,
    tmp_path: Path,
) -> None:
    name = f"bounded-{uuid.uuid4().hex[:6]}"
    variants = {"v1": workers["v1"], "v3": workers["slow"]}
    shadow = "{targets: [v3], sample: 1.0}"
    write_experiment(tmp_path, experiment(name, variants, {"v1": 100}, shadow))
    gw = start_gateway(
        tmp_path,
        **redis_server.env,
        TURNOUT_SHADOW_MAX_IN_FLIGHT="2",
        TURNOUT_SHADOW_TIMEOUT="10",
        **FAST,
    )
    bodies = [{"text": f"burst {i}"} for i in range(20)]
    served = asyncio.run(post_all(f"{gw.url}/models/{name}/predict", bodies, concurrency=4))
    assert all(r["status"] == 200 for r in served)
    assert max(r["seconds"] for r in served) < 2.0
    # Two mirrors sleep 5 s against the slow shadow; the other 18 are dropped, not queued.
    poll_until(lambda: dropped(gw) == 18, 10, what="18 overloaded drops")
    poll_until(
        lambda: pair(shadow_report(gw, name))["shadow_dropped"] == 18, 10, what="drops in Redis"
    )


def dropped(gw: Gateway) -> float:
    total = 0.0
    for line in httpx.get(f"{gw.url}/metrics").text.splitlines():
        if line.startswith('turnout_shadow_dropped_total{reason="overloaded"}'):
            total += float(line.split()[-1])
    return total


def test_a_target_with_live_traffic_is_mirrored_only_when_routed_elsewhere(
    gateway: tuple[Gateway, str],
) -> None:
    gw, run = gateway
    name = f"live-{run}"
    bodies = [{"text": f"mixed {i}", "user_id": f"m{i}"} for i in range(80)]
    served = asyncio.run(post_all(f"{gw.url}/models/{name}/predict", bodies))
    by_variant = Counter(r["served_variant"] for r in served)
    assert by_variant["v1"] and by_variant["v3"]
    poll_until(
        lambda: pair(shadow_report(gw, name))["pairs"] == by_variant["v1"],
        30,
        what="comparisons of the v1-served requests",
    )
    report = shadow_report(gw, name)
    assert [(p["primary"], p["shadow"]) for p in report["pairs"]] == [("v1", "v3")]
    metrics = httpx.get(f"{gw.url}/metrics").text
    assert f'turnout_shadow_comparisons_total{{agree="true",experiment="{name}"' in metrics or (
        "turnout_shadow_comparisons_total{" in metrics
    )


def test_unknown_experiment_shadow_report_is_404(gateway: tuple[Gateway, str]) -> None:
    gw, _ = gateway
    r = httpx.get(f"{gw.url}/experiments/nope/shadow")
    assert r.status_code == 404
    result = CliRunner().invoke(cli, ["shadow-report", "Bad Name!", "--url", gw.url])
    assert result.exit_code == 2
