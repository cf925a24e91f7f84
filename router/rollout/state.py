"""A rollout's state as Redis keeps it, and the weights each state puts in force. Pure."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from router.config.experiments import Experiment, ShadowAgreementGate

Phase = Literal["running", "paused", "halted", "rolled_back", "aborted", "promoted", "completed"]
PHASES: tuple[Phase, ...] = (
    "running",
    "paused",
    "halted",
    "rolled_back",
    "aborted",
    "promoted",
    "completed",
)
ACTIVE: frozenset[str] = frozenset({"running", "paused", "halted"})
"""Phases in which the step's weights are in force and gates are evaluated."""
ENTRY = -1
"""The step before the first: the candidate gets nothing until its shadow gate passes."""


def fingerprint(experiment: Experiment) -> str:
    """What identifies one rollout: a new control, candidate or steps starts a new one."""
    rollout = experiment.rollout
    assert rollout is not None
    raw = orjson.dumps([experiment.control, rollout.candidate, rollout.steps])
    return hashlib.sha256(raw).hexdigest()[:12]


def first_step(experiment: Experiment) -> int:
    rollout = experiment.rollout
    assert rollout is not None
    has_entry = any(isinstance(g, ShadowAgreementGate) for g in rollout.gates)
    return ENTRY if has_entry else 0


@dataclass(frozen=True)
class RolloutState:
    """The ``turnout:exp:{e}:rollout`` hash, typed. ``seq`` counts transitions."""

    fingerprint: str = ""
    phase: Phase = "running"
    step: int = 0
    window: int = 0
    step_started: float = 0.0
    seq: int = 0
    reason: str = ""
    updated: float = 0.0
    gates: list[dict[str, Any]] = field(default_factory=list)
    """The last evaluation of each gate (plain data)."""
    checked_at: float = 0.0
    srm: dict[str, Any] | None = None
    """The last sample-ratio test (plain data)."""
    srm_status: str = "ok"
    """``ok``, ``warn`` (mismatch seen, action warn) or ``halt``."""
    srm_scope: str = ""
    """Without a rollout: the config version the SRM status is about (a new one counts afresh)."""
    next_action: str = ""
    """What the driver would do next, in words."""

    @classmethod
    def from_hash(cls, raw: Mapping[str, str]) -> RolloutState:
        raw_phase = raw.get("phase", "running")
        phase: Phase = next((p for p in PHASES if p == raw_phase), "running")
        return cls(
            fingerprint=raw.get("fingerprint", ""),
            phase=phase,
            step=int(raw.get("step", "0")),
            window=int(raw.get("window", "0")),
            step_started=float(raw.get("step_started", "0")),
            seq=int(raw.get("seq", "0")),
            reason=raw.get("reason", ""),
            updated=float(raw.get("updated", "0")),
            gates=_json(raw.get("gates"), []),
            checked_at=float(raw.get("checked_at", "0")),
            srm=_json(raw.get("srm"), None),
            srm_status=raw.get("srm_status", "ok"),
            srm_scope=raw.get("srm_scope", ""),
            next_action=raw.get("next_action", ""),
        )

    @property
    def known(self) -> bool:
        return bool(self.fingerprint)


def _json(raw: str | None, default: Any) -> Any:
    if not raw:
        return default
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return default


def step_percent(experiment: Experiment, step: int) -> float:
    rollout = experiment.rollout
    assert rollout is not None
    return 0.0 if step == ENTRY else rollout.steps[step]


def weights_in_force(experiment: Experiment, state: RolloutState | None) -> dict[str, float]:
    """The weights a rollout puts in force: its step's, all to the control once rolled back or
    aborted, all to the candidate once complete. Before any state: the first step's."""
    if state is None or not state.known or state.fingerprint != fingerprint(experiment):
        return experiment.step_weights(step_percent(experiment, first_step(experiment)))
    if state.phase in ("rolled_back", "aborted"):
        return experiment.step_weights(0.0)
    if state.phase in ("promoted", "completed"):
        return experiment.step_weights(100.0)
    return experiment.step_weights(step_percent(experiment, state.step))
