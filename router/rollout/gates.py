"""Gate verdicts and the driver's decision for one look at a rollout. Pure: no I/O, no clock.

Every gate compares the candidate with the control on the same window. A gate passes on
evidence that the candidate is not worse by more than its margin (non-inferiority) and fails on
evidence that it is worse; otherwise it is inconclusive (or waiting for ``min_samples``).

- ``error_rate``, ``reward``: anytime-valid (confidence sequences, ``sequential``), looked at on
  every check. ``error_rate`` is also a hard gate: an increase shown above ``hard_increase``
  fails before ``min_samples``.
- ``latency_p99``: fixed-horizon, one look per step, at the first check with ``interval``
  elapsed and ``min_samples`` per arm; its verdict then holds for the rest of the step.
- ``shadow_agreement``: anytime-valid, an entry gate, checked before the candidate gets traffic.
- the candidate's upstream down (unhealthy or breaker open): a hard failure.

``alpha`` is split evenly over every (gate, step) pair that can roll back, so the chance that a
candidate no worse than the control is ever rolled back stays below ``alpha`` (Bonferroni).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from router.config.experiments import (
    ErrorRateGate,
    Experiment,
    LatencyGate,
    RewardGate,
    RolloutConfig,
    ShadowAgreementGate,
)
from router.reports.stats import quantiles_from_histogram
from router.rollout.sequential import (
    Estimate,
    Interval,
    Moments,
    SrmResult,
    estimate_difference_cs,
    exceedance_test,
    mean_cs,
    request_estimate,
    srm_test,
    unit_estimate,
)
from router.rollout.state import ACTIVE, ENTRY, RolloutState, step_percent
from router.rollout.window import ArmWindow

Verdict = Literal["pass", "fail", "inconclusive", "waiting"]
Action = Literal["none", "advance", "rollback", "pause", "promote", "complete", "halt"]
VERDICTS: tuple[Verdict, ...] = ("pass", "fail", "inconclusive", "waiting")
HARD_MIN_SAMPLES = 30
"""Least candidate requests before a hard error-rate failure may act (the asymptotic sequence
needs a few observations)."""
P99_TAIL = 0.01
ANYTIME = "confidence sequence (anytime-valid)"
FIXED = "exceedance test (fixed horizon, one look per step)"
LABEL_ARRIVAL = "label_arrival"


@dataclass(frozen=True)
class GateResult:
    gate: str
    verdict: Verdict
    method: str
    detail: str
    estimate: float | None = None
    interval: list[float] | None = None
    n: dict[str, float] = field(default_factory=dict)
    hard: bool = False
    alpha: float | None = None
    step: int | None = None
    """The step this verdict was reached at (fixed-horizon gates keep it for the step)."""
    held: str | None = None
    """Why a gate that could act was held at inconclusive (``label_arrival``)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Evaluation:
    gates: list[GateResult]
    action: Action
    reason: str
    next_action: str
    srm: SrmResult | None = None


@dataclass(frozen=True)
class Look:
    """What the driver saw at one check."""

    arms: dict[str, ArmWindow]
    now: float
    slot_seconds: float
    candidate_down: bool = False
    shadow: Moments | None = None
    """Shadow pairs (control -> candidate): compared, agreed."""
    assigned: dict[str, int] | None = None
    """Assignments under the file's weights (SRM of an experiment without a rollout): distinct
    users when assignment is sticky, else requests."""
    matured: int | None = None
    """The last request slot whose feedback is in the per-user reward sums."""


def _verdict(
    gate: str,
    verdict: Verdict,
    method: str,
    detail: str,
    cs: Interval | None,
    n: dict[str, float],
    alpha: float,
    hard: bool = False,
) -> GateResult:
    estimate, interval = (None, None) if cs is None else (cs.estimate, cs.as_list())
    return GateResult(gate, verdict, method, detail, estimate, interval, n, hard, alpha)


def gate_alpha(rollout: RolloutConfig) -> float:
    """Each (gate, step) pair's share of ``alpha``."""
    compared = sum(1 for s in rollout.steps if s < 100.0)
    windowed = sum(1 for g in rollout.gates if not isinstance(g, ShadowAgreementGate))
    entry = sum(1 for g in rollout.gates if isinstance(g, ShadowAgreementGate))
    return rollout.alpha / max(1, windowed * max(1, compared) + entry)


def srm_p(experiment: Experiment) -> float:
    """The SRM bound per window: ``p`` split over the windows a rollout can have."""
    assert experiment.srm is not None
    windows = len(experiment.rollout.steps) if experiment.rollout else 1
    return experiment.srm.p / windows


def _arm(arms: dict[str, ArmWindow], name: str) -> ArmWindow:
    return arms.get(name) or ArmWindow()


def _cs(a: Estimate | None, b: Estimate | None, alpha: float) -> Interval | None:
    return None if a is None or b is None else estimate_difference_cs(a, b, alpha)


def _partial_users(control: ArmWindow, candidate: ArmWindow) -> str | None:
    """Why the per-user sums cannot be trusted (None: they can)."""
    if control.units_full or candidate.units_full:
        return "the per-user bound of the window was reached: waiting on partial sums is safer"
    if not (control.users_complete() and candidate.users_complete()):
        return "the per-user sums do not cover every request (Redis lost them?): waiting"
    return None


def _unit_counts(control: ArmWindow, candidate: ArmWindow, by_user: bool) -> dict[str, float]:
    n = {"control": float(control.assigned), "candidate": float(candidate.assigned)}
    if by_user:
        n |= {
            "control_users": float(control.users.units),
            "candidate_users": float(candidate.users.units),
            "keyless": float(control.keyless + candidate.keyless),
        }
        orphans = control.orphan_feedback + candidate.orphan_feedback
        if orphans:  # feedback whose user's request sums were gone: counted, not in the sums
            n["orphan_feedback"] = float(orphans)
    return n


def _rate_gate(
    gate: ErrorRateGate,
    control: ArmWindow,
    candidate: ArmWindow,
    alpha: float,
    min_n: int,
    by_user: bool = False,
) -> GateResult:
    n = _unit_counts(control, candidate, by_user)
    method = ANYTIME + (" per user (delta method)" if by_user else " per request")
    if by_user:
        partial = _partial_users(control, candidate)
        if partial is not None and (control.assigned or candidate.assigned):
            return GateResult("error_rate", "waiting", method, partial, n=n, alpha=alpha)
        cs = _cs(
            unit_estimate(control.users, control.keyed(), binary=True),
            unit_estimate(candidate.users, candidate.keyed(), binary=True),
            alpha,
        )
    else:
        cs = _cs(
            request_estimate(control.errors(), binary=True),
            request_estimate(candidate.errors(), binary=True),
            alpha,
        )
    if cs is None:
        return GateResult("error_rate", "waiting", method, "no requests yet", n=n, alpha=alpha)
    if cs.lower > gate.hard_increase and candidate.assigned >= HARD_MIN_SAMPLES:
        detail = f"error rate up by more than {gate.hard_increase:g} (hard gate)"
        return _verdict("error_rate", "fail", method, detail, cs, n, alpha, hard=True)
    if min(control.assigned, candidate.assigned) < min_n:
        detail = f"waiting for {min_n} requests per arm"
        return _verdict("error_rate", "waiting", method, detail, cs, n, alpha)
    if cs.lower > 0:
        detail = "the candidate fails more often"
        return _verdict("error_rate", "fail", method, detail, cs, n, alpha)
    if cs.upper < gate.max_increase:
        detail = f"increase below {gate.max_increase:g}"
        return _verdict("error_rate", "pass", method, detail, cs, n, alpha)
    return _verdict("error_rate", "inconclusive", method, "not enough evidence yet", cs, n, alpha)


def label_arrival(
    control: ArmWindow,
    candidate: ArmWindow,
    weights: dict[str, float],
    names: tuple[str, str],
    p: float,
) -> SrmResult | None:
    """Do labels reach both arms alike? Users with a matured label split between the arms as
    users are assigned (the sequential multinomial test on labelled users), unless the label
    source treats one arm's answers differently."""
    counts = {names[0]: control.reward_users.units, names[1]: candidate.reward_users.units}
    if sum(counts.values()) == 0:
        return None
    return srm_test(counts, {k: weights[k] for k in names}, p)


def _reward_gate(
    gate: RewardGate,
    control: ArmWindow,
    candidate: ArmWindow,
    alpha: float,
    min_n: int,
    last_slot: int,
    by_user: bool = False,
    matured: int | None = None,
    arrival: SrmResult | None = None,
) -> GateResult:
    method = ANYTIME + (" per user (delta method)" if by_user else " per request")
    if by_user:
        cut = last_slot if matured is None else min(matured, last_slot)
        a, b = control.rewards(cut), candidate.rewards(cut)
        n = {
            "control": a.n,
            "candidate": b.n,
            "control_users": float(control.reward_users.units),
            "candidate_users": float(candidate.reward_users.units),
        }
        if matured is None or control.reward_users.n != a.n or candidate.reward_users.n != b.n:
            detail = "waiting for the per-user reward sums to cover the rewards (folding)"
            return _verdict("reward", "waiting", method, detail, None, n, alpha)
        cs = _cs(
            unit_estimate(control.reward_users, a, binary=False),
            unit_estimate(candidate.reward_users, b, binary=False),
            alpha,
        )
    else:
        a, b = control.rewards(last_slot), candidate.rewards(last_slot)
        n = {"control": a.n, "candidate": b.n}
        cs = _cs(request_estimate(a, binary=False), request_estimate(b, binary=False), alpha)
    if cs is None or min(a.n, b.n) < min_n:
        detail = f"waiting for {min_n} rewards per arm on requests older than the label delay"
        return _verdict("reward", "waiting", method, detail, cs, n, alpha)
    if arrival is not None and arrival.mismatch:
        detail = (
            f"labels reach the arms unevenly (users with a label: {arrival.counts}, expected "
            f"shares {arrival.expected}): held, a reward comparison would be biased"
        )
        held = _verdict("reward", "inconclusive", method, detail, cs, n, alpha)
        return replace(held, held=LABEL_ARRIVAL)
    if cs.upper < 0:
        detail = "the candidate's reward is lower"
        return _verdict("reward", "fail", method, detail, cs, n, alpha)
    if cs.lower > -gate.max_decrease:
        detail = f"decrease below {gate.max_decrease:g}"
        return _verdict("reward", "pass", method, detail, cs, n, alpha)
    return _verdict("reward", "inconclusive", method, "not enough evidence yet", cs, n, alpha)


def _latency_gate(
    gate: LatencyGate,
    control: ArmWindow,
    candidate: ArmWindow,
    alpha: float,
    min_n: int,
    horizon_reached: bool,
    step: int,
) -> GateResult:
    n = {"control": float(control.assigned), "candidate": float(candidate.assigned)}
    if not horizon_reached or min(control.assigned, candidate.assigned) < min_n:
        detail = f"one look per step, once the interval has passed with {min_n} requests per arm"
        return GateResult("latency_p99", "waiting", FIXED, detail, n=n, alpha=alpha)
    buckets = control.latency_buckets()
    bounds = [b for b, _ in buckets]
    cumulative: list[float] = []
    for _, count in buckets:
        cumulative.append((cumulative[-1] if cumulative else 0.0) + count)
    (control_p99,) = quantiles_from_histogram(bounds, cumulative, [1.0 - P99_TAIL])
    assert control_p99 is not None
    test = exceedance_test(
        candidate.latency_buckets(), gate.max_ratio * control_p99, P99_TAIL, alpha
    )
    cand_bounds = [b for b, _ in candidate.latency_buckets()]
    cand_cum: list[float] = []
    for _, count in candidate.latency_buckets():
        cand_cum.append((cand_cum[-1] if cand_cum else 0.0) + count)
    (candidate_p99,) = quantiles_from_histogram(cand_bounds, cand_cum, [1.0 - P99_TAIL])
    ratio = None if not candidate_p99 or not control_p99 else candidate_p99 / control_p99
    detail = (
        f"p99 ratio {ratio if ratio is None else round(ratio, 3)}; control p99 "
        f"{control_p99:.1f} ms; {test.above_surely} to {test.above_maybe} of {test.n} candidate "
        f"requests above {test.threshold_ms:.1f} ms (share <= {test.upper:.4f} at 1 - alpha)"
    )
    verdict: Verdict = "inconclusive"
    if test.harm_p < alpha:
        verdict = "fail"
    elif test.upper < P99_TAIL:
        verdict = "pass"
    return GateResult("latency_p99", verdict, FIXED, detail, ratio, None, n, False, alpha, step)


def _shadow_gate(
    gate: ShadowAgreementGate, shadow: Moments | None, alpha: float, min_n: int
) -> GateResult:
    if shadow is None or shadow.n < min_n:
        n = {"pairs": 0.0 if shadow is None else shadow.n}
        detail = f"waiting for {min_n} mirrored requests compared"
        return GateResult("shadow_agreement", "waiting", ANYTIME, detail, n=n, alpha=alpha)
    cs = mean_cs(shadow, alpha, binary=True)
    assert cs is not None
    n = {"pairs": shadow.n}
    if cs.lower >= gate.min:
        detail = f"agreement >= {gate.min:g}"
        return _verdict("shadow_agreement", "pass", ANYTIME, detail, cs, n, alpha)
    if cs.upper < gate.min:
        detail = f"agreement < {gate.min:g}"
        return _verdict("shadow_agreement", "fail", ANYTIME, detail, cs, n, alpha)
    detail = "not enough evidence yet"
    return _verdict("shadow_agreement", "inconclusive", ANYTIME, detail, cs, n, alpha)


def evaluate_gates(experiment: Experiment, state: RolloutState, look: Look) -> list[GateResult]:
    rollout = experiment.rollout
    assert rollout is not None
    alpha = gate_alpha(rollout)
    control = _arm(look.arms, experiment.control)
    candidate = _arm(look.arms, rollout.candidate)
    elapsed = look.now - state.step_started
    results: list[GateResult] = []
    if look.candidate_down and state.step != ENTRY:
        results.append(
            GateResult("upstream", "fail", "health check", "the candidate is down", hard=True)
        )
    kept = {g.get("gate"): g for g in state.gates if g.get("step") == state.step}
    by_user = experiment.analysis_unit == "user"
    for gate in rollout.gates:
        if isinstance(gate, ShadowAgreementGate):
            if state.step == ENTRY:
                results.append(_shadow_gate(gate, look.shadow, alpha, rollout.min_samples))
            continue
        if state.step == ENTRY:
            continue
        if isinstance(gate, ErrorRateGate):
            results.append(
                _rate_gate(gate, control, candidate, alpha, rollout.min_samples, by_user)
            )
        elif isinstance(gate, RewardGate):
            last_slot = int((look.now - gate.label_delay) // look.slot_seconds) - 1
            arrival = None
            if by_user:
                weights = experiment.step_weights(step_percent(experiment, state.step))
                names = (experiment.control, rollout.candidate)
                arrival = label_arrival(control, candidate, weights, names, alpha)
            results.append(
                _reward_gate(
                    gate,
                    control,
                    candidate,
                    alpha,
                    rollout.min_samples,
                    last_slot,
                    by_user,
                    look.matured,
                    arrival,
                )
            )
        else:
            previous = kept.get("latency_p99")
            if previous is not None and previous.get("verdict") != "waiting":
                results.append(GateResult(**previous))  # one look per step: keep its verdict
                continue
            horizon = elapsed >= rollout.interval
            results.append(
                _latency_gate(
                    gate, control, candidate, alpha, rollout.min_samples, horizon, state.step
                )
            )
    return results


def srm_of(experiment: Experiment, state: RolloutState | None, look: Look) -> SrmResult | None:
    """The sequential sample-ratio test of the window (or of the file's weights)."""
    if experiment.srm is None:
        return None
    if experiment.rollout is not None and state is not None:
        if state.step == ENTRY or state.phase not in ACTIVE:
            return None
        if experiment.analysis_unit == "user":
            counts = {n: arm.users.units for n, arm in look.arms.items() if arm.users.units}
        else:
            counts = {name: arm.assigned for name, arm in look.arms.items() if arm.assigned}
        weights = experiment.step_weights(step_percent(experiment, state.step))
    else:
        counts = dict(look.assigned or {})
        weights = experiment.configured_weights()
    if sum(counts.values()) == 0:
        return None
    return srm_test(counts, weights, srm_p(experiment))


def decide(experiment: Experiment, state: RolloutState, look: Look) -> Evaluation:
    """The driver's decision at one look at an active rollout."""
    rollout = experiment.rollout
    assert rollout is not None
    if state.phase not in ACTIVE:
        return Evaluation([], "none", "", f"nothing: the rollout is {state.phase}")
    gates = evaluate_gates(experiment, state, look)
    srm = srm_of(experiment, state, look)
    percent = step_percent(experiment, state.step)
    if state.phase == "halted":
        return Evaluation(gates, "none", "", "nothing until resumed: the weights are frozen", srm)
    if srm is not None and srm.mismatch and experiment.srm and experiment.srm.action == "halt":
        reason = f"sample ratio mismatch: assigned {srm.counts}, expected shares {srm.expected}"
        return Evaluation(gates, "halt", reason, "halt: freeze the weights", srm)
    failed = [g for g in gates if g.verdict == "fail"]
    if failed:
        reason = "; ".join(f"{g.gate}: {g.detail}" for g in failed)
        if rollout.on_fail == "pause" and state.phase == "paused":
            return Evaluation(gates, "none", "", "nothing: paused with a failing gate", srm)
        return Evaluation(gates, rollout.on_fail, reason, f"{rollout.on_fail}: {reason}", srm)
    if state.phase == "paused":
        words = "nothing until resumed (a failing gate still acts)"
        return Evaluation(gates, "none", "", words, srm)
    if percent >= 100.0:
        action: Action = "promote" if rollout.on_success == "promote" else "complete"
        return Evaluation(gates, action, "the candidate reached 100%", action, srm)
    elapsed = look.now - state.step_started
    upcoming = _next_percent(experiment, state.step)
    waiting = [g.gate for g in gates if g.verdict != "pass"]
    if state.step == ENTRY:
        if not waiting:
            return Evaluation(gates, "advance", "the entry gate passed", "advance", srm)
    else:
        control = _arm(look.arms, experiment.control).assigned
        candidate = _arm(look.arms, rollout.candidate).assigned
        enough = min(control, candidate) >= rollout.min_samples
        if not waiting and enough and elapsed >= rollout.interval:
            reason = "every gate passed" if gates else "the interval passed with enough samples"
            return Evaluation(gates, "advance", reason, f"advance to {upcoming:g}%", srm)
        if not enough:
            waiting.append(f"{rollout.min_samples} requests per arm")
        if elapsed < rollout.interval:
            waiting.append(f"{rollout.interval - elapsed:.0f}s more of the interval")
    if rollout.max_interval is not None and elapsed >= rollout.max_interval:
        action = rollout.on_inconclusive
        reason = f"still inconclusive after {rollout.max_interval:g}s ({', '.join(waiting)})"
        return Evaluation(gates, action, reason, action, srm)
    words = f"advance to {upcoming:g}% when these pass: {', '.join(waiting)}"
    return Evaluation(gates, "none", "", words, srm)


def _next_percent(experiment: Experiment, step: int) -> float:
    rollout = experiment.rollout
    assert rollout is not None
    return rollout.steps[min(step + 1, len(rollout.steps) - 1)]
