"""Which Redis errors are worth waiting for, and which topology the settings name."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from redis.exceptions import (
    AuthenticationError,
    ClusterDownError,
    ConnectionError,
    MasterDownError,
    NoScriptError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)

from router.core.settings import Settings
from router.storage.client import describe, feedback_replicas, is_transient, topology


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionError("down"),
        AuthenticationError("a password changed under us: wait for the operator"),
        ReadOnlyError("You can't write against a read only replica."),  # old primary, demoted
        ClusterDownError("The cluster is down"),
        MasterDownError("Link with MASTER is down"),
        TryAgainError("Multiple keys request during rehashing of slot"),
        ResponseError("BUSY Redis is busy running a script"),
        ResponseError("LOADING Redis is loading the dataset in memory"),
    ],
)
def test_outages_are_transient(exc: Exception) -> None:
    assert is_transient(exc)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "exc", [ResponseError("ERR Error running script"), NoScriptError("No matching script")]
)
def test_refusals_are_not(exc: Exception) -> None:
    assert not is_transient(exc)  # type: ignore[arg-type]


def test_topologies_and_the_replicas_feedback_waits_for() -> None:
    sentinel = Settings(redis_sentinels=["s:26379"], redis_sentinel_master="m")
    cluster = Settings(redis_cluster_nodes=["n:7000"], feedback_wait_replicas=2)
    single = Settings(redis_url="redis://:secret@h:6380/1")
    assert [topology(s) for s in (sentinel, cluster, single, Settings())] == [
        "sentinel",
        "cluster",
        "single",
        "none",
    ]
    assert [feedback_replicas(s) for s in (sentinel, cluster, single)] == [1, 0, 0]
    assert feedback_replicas(Settings(redis_url="redis://h", feedback_wait_replicas=1)) == 1
    assert "secret" not in describe(single) and "h:6380" in describe(single)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"redis_url": "redis://h", "redis_sentinels": ["s:1"]}, "both set"),
        ({"redis_url": "redis://h", "redis_cluster_nodes": ["n:1"]}, "both set"),
        ({"redis_sentinels": ["s:1"]}, "needs TURNOUT_REDIS_SENTINEL_MASTER"),
        ({"redis_sentinel_master": "m"}, "needs TURNOUT_REDIS_SENTINELS"),
        ({"redis_cluster_nodes": ["n"]}, "is not host:port"),
        ({"redis_cluster_nodes": ["n:1"], "redis_db": 2}, "database 0 only"),
        ({"redis_url": "redis://:p@h", "redis_password": "q"}, "carries a password"),
    ],
)
def test_conflicting_redis_settings_are_refused(fields: dict[str, object], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        Settings(**fields)  # type: ignore[arg-type]
