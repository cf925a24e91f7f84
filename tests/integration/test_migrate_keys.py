"""``turnout migrate-keys`` on data the previous layout wrote, then a gateway of today on it.

``tests/data/legacy_layout/keys.jsonl`` holds data written by real processes of the last commit
before the Cluster-ready layout (``make_legacy_dump.py`` beside it says how), each key as Redis
``DUMP``s it with its TTL relative to when it was saved, so the fixture loads the same on any
date (``freeze_keys.py``); ``expected.json`` is what that gateway reported. After the migration,
today's gateway must report the same counters, credit feedback for old request ids exactly once,
and a second run must find nothing to do.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from typer.testing import CliRunner

from router.cli import app as cli
from router.core.settings import Settings
from router.gateway.app import create_app
from router.local.redis_server import EmbeddedRedis
from router.storage import keys
from router.storage.migrate import plan_experiment_key, plan_request_key
from tests.conftest import WorkerFactory, write_experiment

LEGACY = Path(__file__).resolve().parents[1] / "data" / "legacy_layout"
EXPECTED = json.loads((LEGACY / "expected.json").read_text())
CANARY, BANDIT = "legacy-canary", "legacy-bandit"


@pytest.fixture
def legacy(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A redis-server holding the old layout's data, its TTLs counted from now."""
    server = EmbeddedRedis(tmp_path / "redis").start()
    client = server.client()
    for line in (LEGACY / "keys.jsonl").read_text().splitlines():
        row = json.loads(line)
        client.restore(row["key"], max(row["pttl"], 0), bytes.fromhex(row["dump"]))
    client.close()
    yield server
    server.stop()


def snapshot(client: redis.Redis) -> dict[str, Any]:
    """Every key with its type and content (TTLs apart)."""
    out: dict[str, Any] = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == "hash":
            value: Any = client.hgetall(key)
        elif kind == "set":
            value = sorted(client.smembers(key))
        elif kind == "stream":
            value = client.xrange(key)
        else:
            value = client.get(key)
        out[key] = (kind, value)
    return out


def migrate(server: EmbeddedRedis, *args: str) -> str:
    result = CliRunner().invoke(cli, ["migrate-keys", *args], env={"TURNOUT_REDIS_URL": server.url})
    assert result.exit_code == 0, result.output
    return result.output


def new_key_of(key: str, content: Any) -> str:
    if key.startswith("turnout:req:"):
        move = plan_request_key(key, content)
    elif key in ("turnout:flags", "turnout:audit", "turnout:promotions"):
        return {"turnout:flags": keys.FLAGS, "turnout:audit": keys.AUDIT}.get(key, keys.PROMOTIONS)
    else:
        move = plan_experiment_key(key)
    if move is None:
        return key
    return move.new


def test_migrate_keys_dry_run_then_apply_keeps_every_counter(legacy: EmbeddedRedis) -> None:
    client = legacy.client()
    before = snapshot(client)
    ttls = {k: client.ttl(k) for k in before if k.startswith("turnout:req:")}
    assert len(before) == 241 and len(ttls) == 222  # 180 requests, 42 shadow guards

    dry = migrate(legacy)
    assert "dry run: nothing was changed" in dry and "240 keys in the old layout" in dry
    assert snapshot(client) == before

    # A gateway of today served during the rollout: its counters exist in the new layout.
    client.hincrby(keys.counters(CANARY, "v1"), keys.ASSIGNED, 5)
    client.sadd(keys.variants(CANARY), "v1")
    new_entry = client.xadd(keys.events(CANARY), {"request_id": "after-upgrade"})

    out = migrate(legacy, "--apply")
    assert "done:" in out
    after = snapshot(client)
    assert not [k for k in after if k.startswith("turnout:req:")]
    assert "turnout:flags" not in after and "turnout:audit" not in after
    for key, (kind, content) in before.items():
        if key == keys.experiments():
            assert after[key] == (kind, content)
            continue
        new = new_key_of(key, content if kind == "hash" else {})
        assert new != key, key
        if key == f"turnout:exp:{CANARY}:variant:v1":
            merged = dict(content, assigned=str(int(content["assigned"]) + 5))
            assert after[new] == ("hash", merged)
        elif key == f"turnout:exp:{CANARY}:events":
            assert after[new][1] == [*content, (new_entry, {"request_id": "after-upgrade"})]
        else:
            assert after[new] == (kind, content), key
        if key in ttls:
            assert 0 < client.ttl(new) <= ttls[key]
            if "primary" not in content:  # an outcome's attribution: its locator too
                rid = key.removeprefix("turnout:req:")
                assert client.get(keys.request(rid)) == content["experiment"]
                assert 0 < client.ttl(keys.request(rid)) <= ttls[key]

    again = migrate(legacy, "--apply")
    assert "nothing to do" in again or "0 keys in the old layout" in again
    assert snapshot(client) == after
    client.hincrby(keys.counters(CANARY, "v1"), keys.ASSIGNED, -5)  # what today's gateway added


def variant_numbers(report: dict[str, Any]) -> dict[str, Any]:
    rows = {}
    for row in report["variants"]:
        feedback = row["feedback"]
        rows[row["variant"]] = (
            row["assigned"],
            row["served"],
            row["labels"],
            row["positive"],
            feedback["count"],
            feedback["mean_reward"],
        )
    totals = {k: report["totals"][k] for k in EXPECTED["reports"][CANARY]["totals"]}
    return {"variants": rows, "totals": totals}


def test_todays_gateway_reports_the_migrated_data_and_credits_old_requests_once(
    legacy: EmbeddedRedis, start_worker: WorkerFactory, models_dir: Path, tmp_path: Path
) -> None:
    migrate(legacy, "--apply")
    urls = {v: start_worker(v).url for v in ("v1", "v2")}
    folder = tmp_path / "experiments"
    variants = "variants:\n" + "".join(f"  {v}: {{url: '{u}'}}\n" for v, u in urls.items())
    write_experiment(
        folder,
        f"name: {CANARY}\nmodel: profanity\ncontrol: v1\n{variants}policy:\n  kind: canary\n"
        "  weights: {v1: 50, v2: 50}\n  sticky: user_id\nshadow:\n  targets: [v2]\n"
        "  sample: 1.0\n",
        "canary.yaml",
    )
    write_experiment(
        folder,
        f"name: {BANDIT}\nmodel: bandit\ncontrol: v1\n{variants}policy:\n  kind: bandit\n"
        "  arms: [v1, v2]\n",
        "bandit.yaml",
    )
    settings = Settings(
        redis_url=legacy.url,
        experiments_dir=folder,
        models_dir=models_dir,
        access_log=False,
        watch_files=False,
    )

    async def scenario() -> None:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
                for name in (CANARY, BANDIT):
                    report = (await http.get(f"/experiments/{name}/report")).json()
                    old = EXPECTED["reports"][name]
                    assert variant_numbers(report) == variant_numbers(old), name
                    # Totals the old layout had not heard of (e.g. failovers) start at zero.
                    added = set(report["totals"]) - set(old["totals"])
                    assert all(report["totals"][k] == 0 for k in added), report["totals"]
                bandit = (await http.get(f"/experiments/{BANDIT}/report")).json()["bandit"]
                old_arms = EXPECTED["reports"][BANDIT]["bandit"]["arms"]
                assert [
                    (a["arm"], a["alpha"], a["beta"], a["rewards"]) for a in bandit["arms"]
                ] == [(a["arm"], a["alpha"], a["beta"], a["rewards"]) for a in old_arms]
                shadow = (await http.get(f"/experiments/{CANARY}/shadow")).json()
                assert [(p["pairs"], p["confusion"]) for p in shadow["pairs"]] == [
                    (p["pairs"], p["confusion"]) for p in EXPECTED["shadow"]["pairs"]
                ]
                fresh = EXPECTED["without_feedback"][0]
                r = await http.post("/feedback", json={"request_id": fresh, "reward": 1})
                assert r.status_code == 200, r.text
                again = await http.post("/feedback", json={"request_id": fresh, "reward": 1})
                assert again.status_code == 409
                done = EXPECTED["with_feedback"][0]
                r = await http.post("/feedback", json={"request_id": done, "reward": 1})
                assert r.status_code == 409 and r.json()["error"] == "duplicate", r.text

    asyncio.run(scenario())


def test_migrate_keys_refuses_a_cluster_and_needs_a_redis() -> None:
    runner = CliRunner()
    nodes = json.dumps(["127.0.0.1:7000"])
    refused = runner.invoke(
        cli, ["migrate-keys"], env={"TURNOUT_REDIS_CLUSTER_NODES": nodes, "TURNOUT_REDIS_URL": ""}
    )
    assert refused.exit_code == 2 and "old layout never ran on a Cluster" in refused.output
    none = runner.invoke(cli, ["migrate-keys"], env={"TURNOUT_REDIS_URL": ""})
    assert none.exit_code == 2 and "no Redis configured" in none.output
