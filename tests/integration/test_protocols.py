"""A real gateway in front of a real model server that answers badly, one way per case.

Each bad answer, from a variant, is a counted fallback to the control with a bounded reason;
from the control itself, a 502 ``bad_upstream_answer`` naming the reason (a timeout: 503). Never
a 500, never a hang. Readiness hangs on every experiment's control.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from router.local.processes import free_port, poll_until
from tests.conftest import Gateway, GatewayFactory, WorkerFactory, canary_yaml, write_experiment
from tests.support import model_server, rss_mib

TIMEOUT = 1.5
CAP = 65_536
SEED = "protocol: http_json, score: confidence, label: is_profane, labels: {true: 1, false: 0}"
OIP = "protocol: open_inference, model: m, input_name: text, label_output: predict"

# case -> (how the variant speaks, the fallback reason, the control's status and reason)
CASES = {
    "not_json": (SEED + ", health: none", "not_json", 502),
    "html": (SEED + ", health: none", "not_json", 502),
    "missing": (SEED + ", health: none", "missing_field", 502),
    "nan": (SEED + ", health: none", "bad_score", 502),
    "text_score": (SEED + ", health: none", "bad_score", 502),
    "redirect": (SEED + ", health: none", "redirect", 502),
    "large": (SEED + ", health: none", "too_large", 502),
    "large_chunked": (SEED + ", health: none", "too_large", 502),
    "trickle": (SEED + ", health: none", "timeout", 503),
    "oip_error": (OIP, "upstream_error", 502),
    "oip_id": (OIP, "id_mismatch", 502),
    # 60 KiB on the wire (under the cap), 60 MiB inflated.
    "gzip_bomb_small": (SEED + ", health: none", "too_large", 502),
    "deep_json": (SEED + ", health: none", "too_deep", 502),
    "oip_deep": (OIP, "too_deep", 502),
}
PEAK_GROWTH_MIB = 100


@pytest.fixture(scope="module")
def misbehaving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with model_server(tmp_path_factory.mktemp("misbehaving")) as url:
        yield url


def fallback_yaml(case: str, worker: str, server: str) -> str:
    spec = CASES[case][0]
    return (
        f"name: fb-{case}\nmodel: fb-{case}\ncontrol: v1\nvariants:\n"
        f"  v1: {{url: '{worker}'}}\n"
        f"  bad: {{url: '{server}/{case}', {spec}}}\n"
        "policy: {kind: canary, weights: {v1: 0, bad: 100}}\n"
    )


def control_yaml(case: str, server: str) -> str:
    spec = CASES[case][0]
    return (
        f"name: ctl-{case}\nmodel: ctl-{case}\ncontrol: bad\nvariants:\n"
        f"  bad: {{url: '{server}/{case}', {spec}}}\n"
        "policy: {kind: blue_green, active: bad}\n"
    )


@pytest.fixture(scope="module")
def gateway(
    start_gateway: GatewayFactory,
    start_worker: WorkerFactory,
    misbehaving: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Gateway:
    worker = start_worker("v1").url
    folder = tmp_path_factory.mktemp("experiments")
    for case in CASES:
        write_experiment(folder, fallback_yaml(case, worker, misbehaving), f"fb-{case}.yaml")
        write_experiment(folder, control_yaml(case, misbehaving), f"ctl-{case}.yaml")
    seed = f"{misbehaving}/good"
    write_experiment(
        folder,
        "name: seed\nmodel: seed\ncontrol: seed\nvariants:\n"
        f"  seed: {{url: '{seed}', {SEED}, health: none}}\n"
        "policy: {kind: blue_green, active: seed}\n",
        "seed.yaml",
    )
    env = {
        "TURNOUT_UPSTREAM_TIMEOUT": str(TIMEOUT),
        # The trickle is cut at the timeout here, not at the (shorter) slow-call limit.
        "TURNOUT_UPSTREAM_SLOW_CALL_SECONDS": str(TIMEOUT),
        "TURNOUT_UPSTREAM_MAX_ANSWER_BYTES": str(CAP),
        "TURNOUT_ACCESS_LOG": "false",
    }
    return start_gateway(folder, **env)


def fallbacks(gateway: Gateway, experiment: str) -> dict[str, float]:
    text = httpx.get(f"{gateway.url}/metrics").text
    return {
        s.labels["reason"]: s.value
        for family in text_string_to_metric_families(text)
        if family.name == "turnout_fallbacks"
        for s in family.samples
        if s.name.endswith("_total") and s.labels["experiment"] == experiment
    }


def predict(gateway: Gateway, model: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    r = httpx.post(f"{gateway.url}/models/{model}/predict", json={"text": "you idiot"}, timeout=30)
    return r, time.monotonic() - started


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_answer_from_a_variant_falls_back_to_the_control(gateway: Gateway, case: str) -> None:
    r, seconds = predict(gateway, f"fb-{case}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["variant"], body["served_variant"], body["fallback"]) == ("bad", "v1", True)
    assert body["label"] in (0, 1) and 0.0 <= body["score"] <= 1.0
    assert fallbacks(gateway, f"fb-{case}") == {CASES[case][1]: 1.0}
    assert seconds < TIMEOUT + 3.0  # the trickle is cut at the timeout, never a hang


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_answer_from_the_control_is_a_502_with_the_reason(
    gateway: Gateway, case: str
) -> None:
    r, seconds = predict(gateway, f"ctl-{case}")
    reason, status = CASES[case][1], CASES[case][2]
    assert r.status_code == status, r.text
    body = r.json()
    if status == 502:
        assert body["error"] == "bad_upstream_answer"
        assert f"bad answer ({reason})" in body["detail"]
    else:
        # In words: a 503 names no exception and no address (issue 14).
        assert body["error"] == "no_upstream" and "timed out" in body["detail"]
        assert "Error" not in body["detail"] and "127.0.0.1" not in body["detail"]
    assert seconds < TIMEOUT + 3.0


def test_the_answer_cap_is_a_setting(gateway: Gateway) -> None:
    r, _ = predict(gateway, "ctl-large")
    assert f"cap of {CAP}" in r.json()["detail"]


def test_the_seed_service_answers_with_four_settings(gateway: Gateway) -> None:
    r, _ = predict(gateway, "seed")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["label"], body["score"]) == (1, 0.9)
    assert body["prediction"] == {"is_profane": True, "confidence": 0.9}


def test_experiments_show_each_variants_protocol_and_readiness(gateway: Gateway) -> None:
    items = {e["name"]: e for e in httpx.get(f"{gateway.url}/experiments").json()["experiments"]}
    fb = items["fb-oip_id"]["upstreams"]
    assert fb["v1"]["protocol"] == "turnout" and fb["v1"]["ready"] is True
    assert fb["bad"]["protocol"] == "open_inference" and fb["bad"]["health"] == "active"
    seed = items["seed"]["upstreams"]["seed"]
    assert seed["protocol"] == "http_json" and seed["health"] == "passive"
    assert seed["ready"] is True and seed["healthy"] is None


def test_readyz_is_false_while_a_control_cannot_answer(gateway: Gateway) -> None:
    assert httpx.get(f"{gateway.url}/readyz").status_code == 200
    dead = f"http://127.0.0.1:{free_port()}"
    path = write_experiment(
        gateway.experiments_dir,
        f"name: down\nmodel: down\ncontrol: v1\nvariants:\n  v1: {{url: '{dead}'}}\n"
        "policy: {kind: blue_green, active: v1}\n",
        "down.yaml",
    )
    try:
        poll_until(
            lambda: httpx.get(f"{gateway.url}/readyz").status_code == 503, 20, what="not ready"
        )
        body = httpx.get(f"{gateway.url}/readyz").json()
        assert body["error"] == "not_ready" and "down (control v1)" in body["detail"]
        assert httpx.get(f"{gateway.url}/v2/health/ready").status_code == 503
        items = httpx.get(f"{gateway.url}/experiments").json()["experiments"]
        (down,) = [e for e in items if e["name"] == "down"]
        assert down["upstreams"]["v1"]["ready"] is False
    finally:
        path.unlink()
    poll_until(lambda: httpx.get(f"{gateway.url}/readyz").status_code == 200, 20, what="ready")


def test_gzip_bombs_on_the_shadow_and_readiness_paths_stay_bounded(
    start_gateway: GatewayFactory, start_worker: WorkerFactory, misbehaving: str, tmp_path: Path
) -> None:
    bomb = f"{misbehaving}/gzip_bomb"
    mirrored = canary_yaml(
        {"v1": start_worker("v1").url, "bomb": bomb},
        {"v1": 100, "bomb": 0},
        name="mirrored",
        model="mirrored",
        tail="shadow: {targets: [bomb], sample: 1.0}",
    ).replace(f"url: '{bomb}'", f"url: '{bomb}', {SEED}, health: none")
    write_experiment(tmp_path, mirrored, "mirrored.yaml")
    gw = start_gateway(tmp_path, TURNOUT_HEALTH_INTERVAL="0.5", TURNOUT_ACCESS_LOG="false")
    before = rss_mib(gw.process.pid, "VmRSS")
    for i in range(8):
        r = httpx.post(f"{gw.url}/models/mirrored/predict", json={"text": f"t{i}"}, timeout=30)
        assert r.status_code == 200, r.text
    poll_until(
        lambda: shadow_errors(gw, "mirrored") >= 8, 30, what="every mirror counted as an error"
    )
    # An Open Inference variant that reads its readiness and metadata from the bomb.
    meta = (
        "name: meta\nmodel: meta\ncontrol: v1\nvariants:\n"
        f"  v1: {{url: '{bomb}', protocol: open_inference, model: m}}\n"
        "policy: {kind: blue_green, active: v1}\n"
    )
    write_experiment(tmp_path, meta, "meta.yaml")

    def meta_unhealthy() -> bool:
        items = httpx.get(f"{gw.url}/experiments").json()["experiments"]
        return any(e["name"] == "meta" and e["upstreams"]["v1"]["healthy"] is False for e in items)

    poll_until(meta_unhealthy, 30, what="the bomb's readiness to count as not ready")
    peak = rss_mib(gw.process.pid, "VmHWM")
    print(f"gzip bombs (shadow, readiness): RSS {before:.0f} MiB, peak {peak:.0f} MiB")
    assert peak - before < PEAK_GROWTH_MIB
    assert gw.process.alive() and "Traceback" not in gw.process.output()


def shadow_errors(gateway: Gateway, experiment: str) -> float:
    text = httpx.get(f"{gateway.url}/metrics").text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        if family.name == "turnout_shadow_errors"
        for s in family.samples
        if s.name.endswith("_total") and s.labels["experiment"] == experiment
    )
