"""A reward gate held for uneven labels shows on /metrics (the alert rule reads it)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import generate_latest

from router.rollout.gates import LABEL_ARRIVAL
from router.rollout.runtime import RolloutRuntime
from router.rollout.state import RolloutState, fingerprint
from tests.unit.gateway.test_predict import Harness

ROLLOUT = """\
name: held
model: alpha
control: v1
variants:
  v1: {url: "http://127.0.0.1:9101"}
  v2: {url: "http://127.0.0.1:9102"}
policy: {kind: canary, weights: {v1: 100, v2: 0}, sticky: user_id}
rollout:
  candidate: v2
  steps: [10, 100]
  interval: 1m
  gates:
    - {metric: reward, max_decrease: 0.05}
"""


def test_the_gauge_follows_the_held_reward_gate(tmp_path: Path) -> None:
    folder = tmp_path / "experiments"
    folder.mkdir()
    (folder / "held.yaml").write_text(ROLLOUT)
    harness = Harness(folder, tmp_path / "models")
    try:
        runtime = RolloutRuntime(None, harness.table, harness.metrics, 1.0, 10.0)
        routes = runtime.routes()
        exp = routes[0].experiment

        def exported(gate: dict[str, object]) -> str:
            state = RolloutState(fingerprint=fingerprint(exp), window=1, step=0, gates=[gate])
            runtime.install(routes, {"held": state})
            return generate_latest(harness.metrics.registry).decode()

        held = exported({"gate": "reward", "verdict": "inconclusive", "held": LABEL_ARRIVAL})
        assert 'turnout_rollout_label_arrival_mismatch{experiment="held"} 1.0' in held
        fine = exported({"gate": "reward", "verdict": "pass", "held": None})
        assert 'turnout_rollout_label_arrival_mismatch{experiment="held"} 0.0' in fine
    finally:
        harness.close()
