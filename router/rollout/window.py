"""One rollout window's counters as the recorder and the feedback path wrote them. Pure."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from router.reports.units import EMPTY, UnitSums, parse_unit_sums
from router.rollout.sequential import Moments
from router.storage import keys


@dataclass
class ArmWindow:
    """What one variant saw under one set of rollout weights."""

    assigned: int = 0
    failed: int = 0
    latency: dict[float, int] = field(default_factory=dict)
    """Upper bound (ms, ``inf`` last) -> requests, non-cumulative."""
    feedback: dict[int, tuple[int, float, float]] = field(default_factory=dict)
    """Request time slot -> (feedback count, reward sum, sum of squares)."""
    users: UnitSums = EMPTY
    """Per-user sums of requests (n_i) and failures (y_i); a sticky experiment's unit."""
    reward_users: UnitSums = EMPTY
    """Per-user sums of feedbacks (n_i) and rewards (y_i) on requests in matured slots."""
    keyless: int = 0
    """Requests without a key (sticky experiments): counted here, not in ``users``."""
    orphan_feedback: int = 0
    """Feedbacks on users whose request sums were gone: counted, kept out of the sums."""
    units_full: bool = False
    """The per-window bound refused a new user: the per-user sums are partial."""

    def keyed(self) -> Moments:
        """Failures of the requests that have a user (what ``users`` sums), per request."""
        return Moments.of_rate(self.users.y, self.users.n)

    def users_complete(self) -> bool:
        """Every keyed request is in the per-user sums (Redis kept them, no bound was hit)."""
        return not self.units_full and self.users.n == self.assigned - self.keyless

    def errors(self) -> Moments:
        return Moments.of_rate(self.failed, self.assigned)

    def rewards(self, last_slot: int | None) -> Moments:
        """Feedback on requests in slots up to ``last_slot`` (None: every slot)."""
        n = total = total_sq = 0.0
        for slot, (count, s, sq) in self.feedback.items():
            if last_slot is None or slot <= last_slot:
                n, total, total_sq = n + count, total + s, total_sq + sq
        return Moments(n, total, total_sq)

    def latency_buckets(self) -> list[tuple[float, float]]:
        return sorted((bound, float(count)) for bound, count in self.latency.items())


def matured_slot(raw: Mapping[str, str]) -> int | None:
    """The last request slot folded into the per-user reward sums (None: none yet)."""
    value = raw.get(keys.WINDOW_MATURED)
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


def parse_window(raw: Mapping[str, str]) -> dict[str, ArmWindow]:
    """The window hash -> per-variant counters (unknown fields are ignored)."""
    arms: dict[str, ArmWindow] = {}
    for name, value in raw.items():
        variant, _, rest = name.partition("|")
        if not rest or variant == "~":
            continue
        arm = arms.setdefault(variant, ArmWindow())
        field_name, _, slot = rest.partition("|")
        try:
            if field_name == keys.WINDOW_NOKEY:
                arm.keyless = int(value)
            elif field_name == keys.WINDOW_ORPHAN_FEEDBACK:
                arm.orphan_feedback = int(value)
            elif field_name == keys.WINDOW_UNITS_FULL:
                arm.units_full = True
            elif field_name == keys.WINDOW_ASSIGNED:
                arm.assigned = int(value)
            elif field_name == keys.WINDOW_FAILED:
                arm.failed = int(value)
            elif field_name.startswith(keys.WINDOW_LATENCY):
                bound = field_name.removeprefix(keys.WINDOW_LATENCY)
                arm.latency[math.inf if bound == "+Inf" else float(bound)] = int(value)
            elif slot and field_name in (
                keys.WINDOW_FB_N,
                keys.WINDOW_FB_SUM,
                keys.WINDOW_FB_SUMSQ,
            ):
                count, s, sq = arm.feedback.get(int(slot), (0, 0.0, 0.0))
                if field_name == keys.WINDOW_FB_N:
                    count = int(value)
                elif field_name == keys.WINDOW_FB_SUM:
                    s = float(value)
                else:
                    sq = float(value)
                arm.feedback[int(slot)] = (count, s, sq)
        except ValueError:
            continue
    for variant, arm in arms.items():
        arm.users = parse_unit_sums(raw, variant, keys.WINDOW_USERS)
        arm.reward_users = parse_unit_sums(raw, variant, keys.WINDOW_REWARD_USERS)
    return arms
