"""The predict pipeline's steps one by one: front door, route, steer, outcome, response.

No model server is called: these are the pure steps around the forward call, driven with an
in-memory route table and a recorder that keeps what it is given.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from starlette.datastructures import Headers

from router.admin.auth import AdminTokens
from router.bandit.runtime import BanditRuntime
from router.config.resolve import load_directory
from router.core.errors import InvalidInput, NotFound
from router.core.metrics import GatewayMetrics
from router.core.settings import Settings
from router.flags.cache import FlagCache
from router.flags.values import FlagDefaults
from router.gateway.forwarding import Served
from router.gateway.mirror import ShadowMirror
from router.gateway.predict import Decided, PredictInput, PredictPipeline, user_hash
from router.recording.events import Outcome, ShadowComparison
from router.routing.table import RouteTable
from router.upstream.breaker import CircuitBreaker
from router.upstream.pool import UpstreamPool, UpstreamTimeouts
from router.upstream.protocols import Decoded, Payload

CANARY = """\
name: {name}
model: {model}
control: v1
variants:
  v1: {{url: "http://127.0.0.1:9101"}}
  v2: {{url: "http://127.0.0.1:9102"}}
policy: {{kind: canary, weights: {{v1: 50, v2: 50}}, sticky: user_id}}
"""


class Keeper:
    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []

    def record(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)

    def record_shadow(self, comparison: ShadowComparison) -> None:
        raise AssertionError("no shadow in these experiments")


class Harness:
    def __init__(self, folder: Path, models: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.settings = Settings(
            experiments_dir=folder, models_dir=models, user_hash_salt="pepper", access_log=False
        )
        self.metrics = GatewayMetrics()
        timeouts = UpstreamTimeouts(0.5, 1.0, 4)
        self.pool = UpstreamPool(timeouts, lambda: CircuitBreaker(3, 5.0))
        self.table = RouteTable(folder, self.settings.allowed_hosts, self.pool, self.metrics)
        report = load_directory(folder, self.settings.allowed_hosts)

        async def install() -> None:  # upstream pools open inside a running loop
            self.table.install_initial(report)

        self.loop.run_until_complete(install())
        self.flags = FlagCache(None, FlagDefaults(), 5.0, self.metrics)
        self.bandits = BanditRuntime(
            None, lambda: self.table.snapshot.routes, lambda _: False, self.settings
        )
        self.recorder = Keeper()
        self.pipeline = PredictPipeline(
            self.settings,
            self.table,
            self.flags,
            self.bandits,
            AdminTokens({"ops": "s3cret"}),
            self.recorder,
            ShadowMirror(self.recorder, self.metrics, 4),
            self.metrics,
            random.Random(7),
            clock=lambda: 1_700_000_000.0,
        )

    def close(self) -> None:
        self.loop.run_until_complete(self.pool.close())
        self.loop.close()


@pytest.fixture
def one_model(tmp_path: Path) -> Iterator[Harness]:
    folder = tmp_path / "experiments"
    folder.mkdir()
    (folder / "a.yaml").write_text(CANARY.format(name="exp-a", model="alpha"))
    harness = Harness(folder, tmp_path / "models")
    yield harness
    harness.close()


@pytest.fixture
def two_models(tmp_path: Path) -> Iterator[Harness]:
    folder = tmp_path / "experiments"
    folder.mkdir()
    (folder / "a.yaml").write_text(CANARY.format(name="exp-a", model="alpha"))
    (folder / "b.yaml").write_text(CANARY.format(name="exp-b", model="beta"))
    (tmp_path / "models" / "gamma").mkdir(parents=True)
    harness = Harness(folder, tmp_path / "models")
    yield harness
    harness.close()


def text(value: str) -> Payload:
    return Payload("text", text=value)


def headers(**values: str) -> Headers:
    return Headers({k.replace("_", "-"): v for k, v in values.items()})


# --- accept: the front door ------------------------------------------------------------------


def test_accept_takes_text_key_and_request_id(one_model: Harness) -> None:
    accepted = one_model.pipeline.accept(
        {"text": "hello", "user_id": 42}, headers(x_request_id="req-1")
    )
    assert accepted == PredictInput(text("hello"), "42", "req-1")
    from_header = one_model.pipeline.accept({"text": "hi"}, headers(x_user_id="bob"))
    assert from_header.key == "bob" and len(from_header.request_id) == 32


@pytest.mark.parametrize(
    ("body", "given", "reason"),
    [
        ({}, {}, "'text' is required"),
        ({"text": 3}, {}, "'text' must be a string"),
        ({"text": "   "}, {}, "must not be empty"),
        ({"text": "x" * 10_001}, {}, "the limit is 10000"),
        ({"text": "hi", "user_id": True}, {}, "'user_id' must be a string or an integer"),
        ({"text": "hi", "user_id": " "}, {}, "'user_id' must be 1 to 256 characters"),
        ({"text": "hi"}, {"x_user_id": "u" * 257}, "'X-User-Id' must be 1 to 256"),
        ({"text": "hi", "context": [1]}, {}, "'context' must be a JSON object"),
        ({"text": "hi"}, {"x_request_id": "a b"}, "X-Request-Id must be"),
        ({"text": "hi"}, {"x_request_id": "r" * 129}, "X-Request-Id must be"),
    ],
)
def test_accept_refuses_bad_input_with_the_reason(
    one_model: Harness, body: dict[str, object], given: dict[str, str], reason: str
) -> None:
    with pytest.raises(InvalidInput, match=re.escape(reason)):
        one_model.pipeline.accept(body, headers(**given))


# --- route: the experiment that owns the model ------------------------------------------------


def test_route_picks_the_only_model_or_the_named_one(two_models: Harness) -> None:
    pipeline = two_models.pipeline
    assert pipeline.route("alpha").name == "exp-a"
    assert pipeline.route("beta").name == "exp-b"
    with pytest.raises(InvalidInput, match=r"several models are routed.*alpha, beta"):
        pipeline.route(None)
    with pytest.raises(NotFound) as unknown:
        pipeline.route("nope")
    assert unknown.value.code == "unknown_model"
    with pytest.raises(NotFound) as registered:
        pipeline.route("gamma")  # in the registry, but no experiment routes it
    assert registered.value.code == "no_experiment"


def test_route_without_a_model_name(one_model: Harness) -> None:
    assert one_model.pipeline.route(None).name == "exp-a"


# --- steer: flags first, then the policy ------------------------------------------------------


def test_steer_is_sticky_and_stores_only_the_salted_hash(one_model: Harness) -> None:
    pipeline = one_model.pipeline
    route = pipeline.route(None)
    accepted = PredictInput(text("hi"), "alice", "r1")
    first = pipeline.steer(route, accepted, headers())
    again = pipeline.steer(route, accepted, headers())
    assert first.steering.decision == again.steering.decision
    assert first.steering.decision.sticky and first.steering.forced_by is None
    assert first.user_hash == user_hash("pepper", "alice") != "alice"


def test_steer_honours_the_header_only_with_a_token(one_model: Harness) -> None:
    pipeline = one_model.pipeline
    route = pipeline.route(None)
    accepted = PredictInput(text("hi"), None, "r1")
    forced = pipeline.steer(
        route, accepted, headers(x_turnout_variant="v2", authorization="Bearer s3cret")
    )
    assert forced.steering.decision.variant == "v2" and forced.steering.forced_by == "header"
    ignored = pipeline.steer(
        route, accepted, headers(x_turnout_variant="v2", authorization="Bearer wrong")
    )
    assert ignored.steering.ignored and ignored.steering.forced_by is None
    assert one_model.metrics.forced_ignored._value.get() == 1


def test_steer_kill_switch_sends_everything_to_the_control(one_model: Harness) -> None:
    pipeline = one_model.pipeline
    one_model.flags._install({"exp-a": {"kill_switch": True}})
    route = pipeline.route(None)
    for key in ("a", "b", "c", "d", "e", "f"):
        decided = pipeline.steer(route, PredictInput(text("hi"), key, "r"), headers())
        assert decided.steering.decision.variant == "v1"
        assert decided.steering.forced_by == "kill_switch"


# --- outcome, finish and respond --------------------------------------------------------------


def served(variant: str = "v2", *, fallback: bool = False, status: int = 200) -> Served:
    body = orjson.dumps({"label": 1, "score": 0.75, "extra": "kept"})
    decoded = Decoded(1, 0.75) if status < 400 else None
    if status >= 400:
        body = b'{"error":"invalid_input","detail":"nope"}'
    return Served(variant, status, body, decoded, fallback, 0.002)


def decide(harness: Harness, key: str | None = "alice") -> tuple[PredictInput, Decided]:
    accepted = PredictInput(text("secret text"), key, "req-9")
    return accepted, harness.pipeline.steer(harness.pipeline.route(None), accepted, headers())


def test_finish_records_the_outcome_without_raw_text_or_key(one_model: Harness) -> None:
    accepted, decided = decide(one_model)
    one_model.pipeline.finish(accepted, decided, served("v1", fallback=True), 0.004)
    (outcome,) = one_model.recorder.outcomes
    assert outcome.request_id == "req-9" and outcome.served_variant == "v1"
    assert outcome.fallback and outcome.status == 200
    assert outcome.label == 1 and outcome.score == 0.75
    assert outcome.latency_ms == pytest.approx(4.0)
    assert outcome.user_hash == user_hash("pepper", "alice")
    assert "secret text" not in repr(outcome) and "alice" not in repr(outcome)


def test_finish_when_nothing_answered_is_a_503_error(one_model: Harness) -> None:
    accepted, decided = decide(one_model, key=None)
    one_model.pipeline.finish(accepted, decided, None, 0.01)
    (outcome,) = one_model.recorder.outcomes
    assert outcome.status == 503 and outcome.served_variant is None and outcome.version is None
    sample = one_model.metrics.requests.collect()[0].samples[0]
    assert sample.labels["outcome"] == "error" and sample.labels["version"] == "none"


def test_respond_splices_the_upstream_answer_and_passes_refusals_through(
    one_model: Harness,
) -> None:
    accepted, decided = decide(one_model)
    response = one_model.pipeline.respond(accepted, decided, served("v2"))
    body = orjson.loads(response.body)
    assert body["prediction"] == {"label": 1, "score": 0.75, "extra": "kept"}
    assert body["label"] == 1 and body["score"] == 0.75
    assert body["served_variant"] == "v2" and body["request_id"] == "req-9"
    assert body["model"] == "alpha" and body["experiment"] == "exp-a"
    assert response.headers["x-request-id"] == "req-9"
    refused = one_model.pipeline.respond(accepted, decided, served(status=422))
    assert refused.status_code == 422 and orjson.loads(refused.body)["error"] == "invalid_input"
