"""Feedback no one can forge: ``feedback.auth`` through real gateways, workers and Redis.

Two gateway processes share one Redis and one TURNOUT_FEEDBACK_SECRET. A bandit takes signed
feedback only, a canary takes feedback from label sources only. The attack of issue 24 (false
rewards for request ids the attacker knows, since callers choose them with X-Request-Id) is
refused, and a refused feedback changes no counter in Redis.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest

from router.local.processes import poll_until
from router.local.redis_server import RedisTopology
from router.recording.feedback_auth import mint
from router.storage import keys
from tests.conftest import Gateway, GatewayFactory, WorkerFactory, canary_yaml, write_experiment

RUN = uuid.uuid4().hex[:6]
BANDIT, LABELLED = f"signed-{RUN}", f"labelled-{RUN}"
SECRET = "trust-test-secret-0123456789"
ADMIN, SOURCE = "trust-admin-token-0123456789", "trust-label-source-0123456789"
ENV = {
    "TURNOUT_FEEDBACK_SECRET": SECRET,
    "TURNOUT_FEEDBACK_TOKENS": json.dumps({"labeller": SOURCE}),
    "TURNOUT_ADMIN_TOKENS": json.dumps({"ops": ADMIN}),
    "TURNOUT_RECORDING_FLUSH_INTERVAL": "0.05",
    "TURNOUT_ACCESS_LOG": "false",
}


@pytest.fixture(scope="module")
def replicas(
    start_worker: WorkerFactory,
    start_gateway: GatewayFactory,
    redis_server: RedisTopology,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Gateway, Gateway]:
    url = start_worker("v1").url  # one worker answers for both variants: a busy machine
    workers = {"v1": url, "v2": url}
    folder = tmp_path_factory.mktemp("trust-experiments")
    bandit = "\n".join(
        [
            f"name: {BANDIT}",
            "model: signed",
            "control: v1",
            "variants:",
            *[f"  {v}: {{url: '{u}'}}" for v, u in workers.items()],
            "policy: {kind: bandit, arms: [v1, v2]}",
            "feedback: {auth: signed}",
        ]
    )
    write_experiment(folder, bandit + "\n", "signed.yaml")
    labelled = canary_yaml(
        workers,
        {"v1": 50, "v2": 50},
        name=LABELLED,
        model="labelled",
        tail="feedback: {auth: token}",
    )
    write_experiment(folder, labelled, "labelled.yaml")
    env = {**redis_server.env, **ENV}
    return start_gateway(folder, **env), start_gateway(folder, **env)


def predict(gateway: Gateway, model: str, rid: str) -> httpx.Response:
    reply = httpx.post(
        f"{gateway.url}/models/{model}/predict",
        json={"text": f"hello {rid}"},
        headers={"x-request-id": rid},
    )
    assert reply.status_code == 200, reply.text
    return reply


def feedback(gateway: Gateway, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(f"{gateway.url}/feedback", json=body, headers=headers)


def credited(server: RedisTopology, experiment: str) -> dict[str, Any]:
    """Every counter feedback moves, as Redis holds them."""
    client = server.client()
    out: dict[str, Any] = {
        v: int(client.hget(keys.counters(experiment, v), keys.FEEDBACK_N) or 0)
        for v in ("v1", "v2")
    }
    out["bandit"] = client.hgetall(keys.bandit(experiment))
    out["stream"] = client.xlen(keys.feedback(experiment))
    return out


def test_forged_feedback_cannot_steer_a_signed_bandit(
    replicas: tuple[Gateway, Gateway], redis_server: RedisTopology
) -> None:
    """The issue's attack: the attacker knows the request ids (the caller picked them) and
    rewards v2's answers 1, v1's 0. Refused, every one: 401 with the reason, nothing counted."""
    a, _ = replicas
    served = {}
    for i in range(10):
        rid = f"victim-{RUN}-{i}"
        answer = predict(a, "signed", rid)
        token = answer.json()["feedback_token"]
        assert answer.headers["x-turnout-feedback-token"] == token
        served[rid] = (answer.json()["served_variant"], token)
    before = credited(redis_server, BANDIT)
    assert before["v1"] == before["v2"] == 0
    forged_mac = "A" * 22
    for rid, (variant, _token) in served.items():
        reward = 1 if variant == "v2" else 0
        for attempt in (
            {"request_id": rid, "reward": reward},
            {
                "request_id": rid,
                "reward": reward,
                "feedback_token": f"{int(time.time()) + 999}.{forged_mac}",
            },
        ):
            refused = feedback(a, attempt)
            assert refused.status_code == 401, refused.text
            assert refused.json()["error"] in ("feedback_token_missing", "feedback_token_invalid")
    assert credited(redis_server, BANDIT) == before, "a refused feedback moved a counter"
    # The owner of each answer, with its token, is credited, exactly once.
    rid, (variant, token) = next(iter(served.items()))
    ok = feedback(a, {"request_id": rid, "reward": 1, "feedback_token": token})
    assert ok.status_code == 200, ok.text
    assert ok.json()["bandit"] == "updated"
    replay = feedback(a, {"request_id": rid, "reward": 1}, **{"x-turnout-feedback-token": token})
    assert replay.status_code == 409, replay.text
    after = credited(redis_server, BANDIT)
    assert after[variant] == 1 and after["stream"] == before["stream"] + 1


def test_expired_and_misdirected_tokens_are_refused(
    replicas: tuple[Gateway, Gateway], redis_server: RedisTopology
) -> None:
    a, _ = replicas
    first, second = f"first-{RUN}", f"second-{RUN}"
    one = predict(a, "signed", first).json()
    predict(a, "signed", second)
    before = credited(redis_server, BANDIT)
    version = one["served_variant"]  # the variant is its version here
    expired = mint(SECRET.encode(), first, BANDIT, version, int(time.time()) - 1)
    cases = {
        "feedback_token_expired": {"request_id": first, "reward": 1, "feedback_token": expired},
        "feedback_token_invalid": {
            "request_id": second,
            "reward": 1,
            "feedback_token": one["feedback_token"],
        },
        "feedback_token_malformed": {
            "request_id": first,
            "reward": 1,
            "feedback_token": "not-a-token",
        },
    }
    for code, body in cases.items():
        refused = feedback(a, body)
        assert (refused.status_code, refused.json()["error"]) == (401, code), refused.text
    too_long = feedback(a, {"request_id": first, "reward": 1, "feedback_token": "x" * 65})
    assert too_long.status_code == 422, too_long.text
    assert credited(redis_server, BANDIT) == before
    metrics = httpx.get(f"{a.url}/metrics").text
    assert 'turnout_feedback_untrusted_total{reason="feedback_token_expired"}' in metrics


def test_a_token_minted_by_one_replica_is_accepted_by_the_other(
    replicas: tuple[Gateway, Gateway], redis_server: RedisTopology
) -> None:
    a, b = replicas
    rid = f"across-{RUN}"
    answer = predict(a, "signed", rid).json()
    before = credited(redis_server, BANDIT)
    reply = feedback(
        b, {"request_id": rid, "reward": 1, "feedback_token": answer["feedback_token"]}
    )
    assert reply.status_code in (200, 202), reply.text  # 202: held until A's flush lands
    variant = answer["served_variant"]
    poll_until(
        lambda: credited(redis_server, BANDIT)[variant] == before[variant] + 1,
        10,
        what="B to credit A's request",
    )
    again = feedback(
        a, {"request_id": rid, "reward": 0, "feedback_token": answer["feedback_token"]}
    )
    assert again.status_code == 409, again.text


def test_token_mode_takes_label_sources_only(
    replicas: tuple[Gateway, Gateway], redis_server: RedisTopology
) -> None:
    a, _ = replicas
    rid = f"labelled-{RUN}"
    predict(a, "labelled", rid)
    before = credited(redis_server, LABELLED)
    body = {"request_id": rid, "reward": 1}
    cases = [
        ({}, 401, "feedback_credential_missing"),
        ({"authorization": "Bearer not-a-known-token"}, 401, "feedback_credential_invalid"),
        ({"authorization": f"Bearer {ADMIN}"}, 403, "feedback_wrong_scope"),
    ]
    for headers, status, code in cases:
        refused = feedback(a, body, **headers)
        assert (refused.status_code, refused.json()["error"]) == (status, code), refused.text
    assert credited(redis_server, LABELLED) == before
    ok = feedback(a, body, authorization=f"Bearer {SOURCE}")
    assert ok.status_code == 200, ok.text
    # The feedback scope does no admin action.
    admin = httpx.get(f"{a.url}/admin/flags", headers={"authorization": f"Bearer {SOURCE}"})
    assert admin.status_code == 401, admin.text
