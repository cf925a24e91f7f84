"""Observability end to end: real gateway and worker processes, a real Prometheus server.

- every metric name in config/alerts.yml and the Grafana dashboards is in real /metrics output;
- Prometheus scrapes the processes and its counts per variant and per version equal what the
  client was told; every rule evaluates without error; every dashboard query runs;
- one request id is followed through the response, the gateway log and the worker log, and
  neither log holds the raw text or the raw user id.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml

from router.local.processes import ManagedProcess, free_port, http_ok, poll_until
from router.local.redis_server import EmbeddedRedis, RedisTopology
from router.storage import keys
from tests.config_refs import (
    ALERTS,
    all_expressions,
    dashboard_expressions,
    recorded_names,
    rules,
    sample_names,
    scrape_families,
    scrape_samples,
    unknown_names,
)
from tests.conftest import (
    Gateway,
    GatewayFactory,
    Worker,
    WorkerFactory,
    canary_yaml,
    requires_ci_tool,
    write_experiment,
)

# The observability chain is the same on every topology: one instance is enough here.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("redis_server", ["single"], indirect=True),
]

EXPERIMENT = "obs"
REQUESTS = 60

# Series that must carry samples after one request through the gateway.
CORE_SERIES = {
    "turnout_requests_total",
    "turnout_request_seconds_bucket",
    "turnout_upstream_seconds_bucket",
    "turnout_configured_weight",
    "turnout_config_info",
    "turnout_breaker_state",
    "turnout_upstream_healthy",
    "turnout_worker_requests_total",
    "turnout_worker_request_seconds_bucket",
    "turnout_worker_info",
    "turnout_worker_ready",
    "turnout_worker_predictions_total",
    "turnout_worker_score_bucket",
}


@dataclass
class Stack:
    gateway: Gateway
    workers: dict[str, Worker]
    redis: EmbeddedRedis


@pytest.fixture(scope="module")
def stack(
    start_worker: WorkerFactory,
    start_gateway: GatewayFactory,
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: RedisTopology,
) -> Stack:
    workers = {v: start_worker(v, wait_ready=False) for v in ("v1", "v2")}
    for worker in workers.values():
        poll_until(
            lambda w=worker: http_ok(f"{w.url}/readyz") or not w.process.alive(),
            30,
            what=f"worker {worker.version}",
        )
        assert worker.process.alive(), worker.process.output()
    experiments = tmp_path_factory.mktemp("obs-experiments")
    write_experiment(
        experiments,
        canary_yaml(
            {v: w.url for v, w in workers.items()},
            {"v1": 50, "v2": 50},
            name=EXPERIMENT,
            sticky="user_id",
        ),
    )
    gateway = start_gateway(experiments, **redis_server.env)
    return Stack(gateway, workers, redis_server)


def predict(client: httpx.Client, stack: Stack, text: str, user: str, **headers: str) -> Any:
    response = client.post(
        f"{stack.gateway.url}/predict", json={"text": text, "user_id": user}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()


def scrape(url: str) -> str:
    response = httpx.get(f"{url}/metrics", timeout=5)
    assert response.status_code == 200
    return response.text


def counter_by(text: str, family: str, label: str, **match: str) -> Counter[str]:
    """Sum of a counter's samples in one scrape, by one label."""
    from prometheus_client.parser import text_string_to_metric_families

    totals: Counter[str] = Counter()
    for fam in text_string_to_metric_families(text):
        for sample in fam.samples:
            if sample.name != f"{family}_total":
                continue
            if all(sample.labels.get(k) == v for k, v in match.items()):
                totals[sample.labels.get(label, "")] += int(sample.value)
    return totals


# --- metric names against real scrapes ---------------------------------------------------------


def test_every_name_in_rules_and_dashboards_is_in_real_metrics_output(stack: Stack) -> None:
    with httpx.Client(timeout=10) as client:
        predict(client, stack, "a sentence to make the counters exist", "names-1")
    texts = [scrape(stack.gateway.url)] + [scrape(w.url) for w in stack.workers.values()]
    families = set().union(*(scrape_families(t) for t in texts))
    exported = sample_names(families)
    assert unknown_names(all_expressions(), exported) == {}
    with_samples = set().union(*(scrape_samples(t) for t in texts))
    assert with_samples >= CORE_SERIES, CORE_SERIES - with_samples


# --- a real Prometheus -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def prometheus(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("prometheus")
    requires_ci_tool(binary is not None, "prometheus")
    assert binary is not None
    workdir = tmp_path_factory.mktemp("prometheus")
    shutil.copy(ALERTS, workdir / "alerts.yml")

    def target(url: str) -> str:
        return url.removeprefix("http://")

    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
        "rule_files": ["alerts.yml"],
        "scrape_configs": [
            {
                "job_name": "turnout-gateway",
                "static_configs": [{"targets": [target(stack.gateway.url)]}],
            },
            {
                "job_name": "turnout-worker",
                "static_configs": [{"targets": [target(w.url) for w in stack.workers.values()]}],
            },
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{free_port()}"
    process = ManagedProcess(
        "prometheus",
        [
            binary,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address={url.removeprefix('http://')}",
            "--log.level=warn",
        ],
        log_path=workdir / "prometheus.log",
    ).start()
    try:
        poll_until(lambda: http_ok(f"{url}/-/ready") or not process.alive(), 30, what="prometheus")
        assert process.alive(), process.output()
        yield url
    finally:
        process.stop()


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=5)
    body = response.json()
    assert body["status"] == "success", (expr, body)
    return list(body["data"]["result"])


def by_label(result: list[dict[str, Any]], label: str) -> dict[str, float]:
    return {item["metric"].get(label, ""): float(item["value"][1]) for item in result}


def test_prometheus_counts_equal_what_was_sent(stack: Stack, prometheus: str) -> None:
    gateway_before = counter_by(scrape(stack.gateway.url), "turnout_requests", "variant")
    workers_before = {
        v: counter_by(scrape(w.url), "turnout_worker_requests", "route")["/predict"]
        for v, w in stack.workers.items()
    }
    sent: Counter[str] = Counter()
    served: Counter[str] = Counter()
    with httpx.Client(timeout=10) as client:
        for i in range(REQUESTS):
            body = predict(client, stack, f"message number {i} for the scrape test", f"u-{i}")
            assert body["fallback"] is False
            sent[body["variant"]] += 1
            served[body["model_version"]] += 1
    assert set(sent) == {"v1", "v2"}  # 60 users at 50/50
    expected = {v: float(gateway_before[v] + sent[v]) for v in ("v1", "v2")}
    expected_served = {v: float(workers_before[v] + served[v]) for v in ("v1", "v2")}

    def prometheus_agrees() -> bool:
        per_variant = by_label(
            query(
                prometheus,
                f'sum by (variant) (turnout_requests_total{{experiment="{EXPERIMENT}"}})',
            ),
            "variant",
        )
        per_version = by_label(
            query(
                prometheus,
                'sum by (version) (turnout_worker_requests_total{route="/predict"}'
                " * on (instance) group_left (version) turnout_worker_info)",
            ),
            "version",
        )
        return per_variant == expected and per_version == expected_served

    poll_until(prometheus_agrees, 30, interval=0.25, what="Prometheus to scrape the counts")
    assert by_label(query(prometheus, "up"), "job") == {
        "turnout-gateway": 1.0,
        "turnout-worker": 1.0,
    }
    weights = by_label(
        query(prometheus, f'turnout_configured_weight{{experiment="{EXPERIMENT}"}}'), "variant"
    )
    assert weights == {"v1": 50.0, "v2": 50.0}


def test_every_rule_evaluates_without_error(stack: Stack, prometheus: str) -> None:
    expected = sum(1 for _ in rules())

    def evaluated() -> list[dict[str, Any]] | None:
        body = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()
        found = [rule for group in body["data"]["groups"] for rule in group["rules"]]
        if len(found) != expected:
            return None
        if any(rule["lastEvaluation"].startswith("0001-") for rule in found):
            return None
        return found

    poll_until(lambda: evaluated() is not None, 30, interval=0.25, what="rule evaluation")
    found = evaluated()
    assert found is not None
    errors = {r["name"]: r.get("lastError") for r in found if r["health"] != "ok"}
    assert errors == {}
    # Recording rules produce series once traffic has been seen.
    with httpx.Client(timeout=10) as client:
        predict(client, stack, "one more so that an hour's increase is not empty", "rules-1")
    for name in recorded_names():
        poll_until(lambda n=name: bool(query(prometheus, n)), 30, interval=0.25, what=name)


def test_every_dashboard_query_runs(stack: Stack, prometheus: str) -> None:
    with httpx.Client(timeout=10) as client:
        for i in range(5):
            predict(client, stack, f"dashboard traffic {i}", f"dash-{i}")
    poll_until(
        lambda: bool(query(prometheus, "rate(turnout_requests_total[1m]) > 0")),
        30,
        interval=0.25,
        what="a rate to exist",
    )
    for item in dashboard_expressions():
        expr = item.expr.replace("$__rate_interval", "1m").replace("$experiment", ".*")
        if expr.startswith("label_values("):
            continue  # a Grafana function, not PromQL (its metric is checked by name)
        query(prometheus, expr)  # asserts status "success": parses and matches one-to-one
    share = query(
        prometheus,
        "100 * sum by (experiment, variant) (rate(turnout_requests_total[1m]))"
        " / on (experiment) group_left sum by (experiment) (rate(turnout_requests_total[1m]))",
    )
    assert {item["metric"]["variant"] for item in share} == {"v1", "v2"}


# --- logs ------------------------------------------------------------------------------------


def request_lines(process: ManagedProcess, request_id: str) -> list[dict[str, Any]]:
    found = []
    for line in process.output().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("request_id") == request_id:
            found.append(record)
    return found


def test_one_request_id_through_response_gateway_log_worker_log_and_redis_event(
    stack: Stack,
) -> None:
    request_id = f"trace-{uuid.uuid4().hex}"
    secret = uuid.uuid4().hex
    text = f"zebra {secret} you absolute idiot"
    user = f"user-{uuid.uuid4().hex}"
    with httpx.Client(timeout=10) as client:
        response = client.post(
            f"{stack.gateway.url}/predict",
            json={"text": text, "user_id": user},
            headers={"X-Request-Id": request_id},
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["request_id"] == request_id
    assert response.headers["x-request-id"] == request_id
    served = stack.workers[body["served_variant"]]
    gateway = stack.gateway.process

    poll_until(
        lambda: bool(
            request_lines(gateway, request_id) and request_lines(served.process, request_id)
        ),
        10,
        what="the request's log lines",
    )
    (gateway_line,) = request_lines(gateway, request_id)
    assert gateway_line["event"] == "request"
    assert gateway_line["logger"] == "turnout.gateway"
    assert {
        k: gateway_line[k] for k in ("experiment", "variant", "version", "status", "fallback")
    } == {
        "experiment": EXPERIMENT,
        "variant": body["variant"],
        "version": body["model_version"],
        "status": 200,
        "fallback": False,
    }
    assert gateway_line["latency_ms"] > 0
    (worker_line,) = request_lines(served.process, request_id)
    assert worker_line["event"] == "request"
    assert worker_line["logger"] == "turnout.worker"
    assert (worker_line["route"], worker_line["status"]) == ("/predict", 200)
    assert 0 < worker_line["latency_ms"] <= gateway_line["latency_ms"]
    for other in stack.workers.values():
        if other is not served:
            assert request_lines(other.process, request_id) == []

    events = stack.redis.client()

    def event() -> dict[str, str] | None:
        for _, fields in events.xrange(keys.events(EXPERIMENT)):
            if fields["request_id"] == request_id:
                return dict(fields)
        return None

    poll_until(lambda: event() is not None, 10, what="the request's event in Redis")
    recorded = event()
    assert recorded is not None
    assert (recorded["variant"], recorded["version"]) == (body["variant"], body["model_version"])
    assert recorded["config_version"] == body["config_version"]
    assert secret not in str(recorded)
    assert user not in str(recorded)
    assert len(recorded["user_hash"]) == 16

    for process in [gateway, *(w.process for w in stack.workers.values())]:
        log = process.output()
        assert secret not in log and "zebra" not in log, f"{process.name} logged the raw text"
        assert user not in log, f"{process.name} logged the raw user id"
        for line in log.splitlines():  # structured: every line is one JSON object
            record = json.loads(line)
            assert {"ts", "level", "logger", "event"} <= set(record), line
