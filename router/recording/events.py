"""The events a gateway records, each knowing how it is written to Redis.

An event names its write guard (a request's attribution hash, or a mirrored call's), the fields
stored under that guard, the stream entries it appends and the counters it adds. The recorder
batches events without knowing their kinds. Nothing here holds raw request text or a raw user
id: the user key only ever appears as its salted hash.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Protocol

from router.core.metrics import LATENCY_BUCKETS, SCORE_DELTA_BUCKETS
from router.storage import keys
from router.storage.codec import dumps, flatten, num
from router.storage.scripts import SHADOW_LABEL_OP, UNIT_FEEDBACK_OP, UNIT_OP, Command

LATENCY_BOUNDS_MS: tuple[float, ...] = tuple(b * 1000.0 for b in LATENCY_BUCKETS)


def bucket(prefix: str, bounds: tuple[float, ...], value: float) -> str:
    """The non-cumulative bucket field of ``value``: the first upper bound >= it, else +Inf."""
    index = bisect.bisect_left(bounds, value)
    return prefix + (f"{bounds[index]:g}" if index < len(bounds) else "+Inf")


def latency_field(latency_ms: float) -> str:
    return bucket(keys.LATENCY_BUCKET, LATENCY_BOUNDS_MS, latency_ms)


def label_type(label: object) -> str:
    """JSON type of a label; feedback must give a label of the served label's type."""
    if isinstance(label, bool):
        return "bool"
    if isinstance(label, int):
        return "int"
    if isinstance(label, float):
        return "float"
    if isinstance(label, str):
        return "str"
    return "other"


def is_positive(label: object) -> bool:
    return label is True or (label_type(label) == "int" and label == 1)


@dataclass(frozen=True, slots=True)
class HistoryRetention:
    """Seconds each history tier keeps its buckets after their last write."""

    minute: int
    hour: int

    def of(self, tier: str) -> int:
        return self.minute if tier == "m" else self.hour


@dataclass(frozen=True, slots=True)
class UnitBounds:
    """Per-user bookkeeping of rollout windows: users kept per window, and how long a window's
    per-user state lives after its last write."""

    max_users: int = 1_000_000
    ttl: int = 7 * 86_400


class Tally:
    """Counter increments of a batch, summed per (key, field) so a batch costs one command each.

    With ``history``, events also count into the console's per-minute and per-hour buckets,
    and every bucket hash the batch touched gets its expiry renewed once. Per-user sums of a
    window are summed per user, one op each (``router.storage.scripts``).
    """

    def __init__(
        self, history: HistoryRetention | None = None, units: UnitBounds = UnitBounds()
    ) -> None:
        self.ints: dict[tuple[str, str], int] = {}
        self.floats: dict[tuple[str, str], float] = {}
        self.members: dict[str, set[str]] = {}
        self.history = history
        self.units = units
        self.expiring: dict[str, int] = {}
        self.per_user: dict[tuple[str, str, str, str], list[int]] = {}
        self.per_user_values: dict[tuple[str, str, str, str], list[float]] = {}

    def incr(self, key: str, field: str, amount: int = 1) -> None:
        self.ints[key, field] = self.ints.get((key, field), 0) + amount

    def add(self, key: str, field: str, amount: float) -> None:
        self.floats[key, field] = self.floats.get((key, field), 0.0) + amount

    def member(self, key: str, member: str) -> None:
        self.members.setdefault(key, set()).add(member)

    def unit(
        self, key: str, variant: str, user: str, hit: bool, prefix: str = keys.WINDOW_USERS
    ) -> None:
        """One observation of ``user`` on ``variant`` (a request that failed or not, a shadow
        pair that agreed or not) in the per-user state ``key``."""
        counts = self.per_user.setdefault((key, prefix, variant, user), [0, 0])
        counts[0] += 1
        counts[1] += 1 if hit else 0
        self.expiring[key] = self.units.ttl

    def unit_value(self, key: str, variant: str, user: str, value: float, prefix: str) -> None:
        """One fractional observation (a score delta) of ``user`` in ``key``."""
        sums = self.per_user_values.setdefault((key, prefix, variant, user), [0.0, 0.0])
        sums[0] += 1.0
        sums[1] += value
        self.expiring[key] = self.units.ttl

    def in_history(
        self, experiment: str, ts: float, series: str, counts: tuple[tuple[str, float], ...]
    ) -> None:
        """Add ``counts`` (counter, amount) to ``series``'s bucket at ``ts`` in every tier."""
        history = self.history
        if history is None:
            return
        for tier, (width, period) in keys.HISTORY_TIERS.items():
            index = int(ts // width)
            group = index * width // period
            key = keys.history(experiment, tier, group)
            offset = index - group * (period // width)
            for counter, amount in counts:
                if not amount:  # a bucket keeps only counters that were hit
                    continue
                field = keys.history_field(offset, series, counter)
                if counter == keys.HIST_LATENCY:
                    self.add(key, field, amount)
                else:
                    self.incr(key, field, int(amount))
            if key not in self.expiring:
                self.expiring[key] = history.of(tier) + period

    def commands(self) -> list[Command]:
        out: list[Command] = [("SADD", k, tuple(sorted(m))) for k, m in self.members.items()]
        out += [("HINCRBY", k, (f, str(n))) for (k, f), n in self.ints.items()]
        out += [("HINCRBYFLOAT", k, (f, num(x))) for (k, f), x in self.floats.items()]
        bound = str(self.units.max_users)
        out += [
            (UNIT_OP, k, (prefix, v, user, str(n), str(y), bound))
            for (k, prefix, v, user), (n, y) in self.per_user.items()
        ]
        out += [
            (UNIT_OP, k, (prefix, v, user, num(n), num(y), bound))
            for (k, prefix, v, user), (n, y) in self.per_user_values.items()
        ]
        out += [("EXPIRE", k, (str(ttl),)) for k, ttl in self.expiring.items()]
        return out


class RecordedEvent(Protocol):
    """What the recorder needs of an event: its guard, and what it writes and counts."""

    @property
    def request_id(self) -> str: ...

    @property
    def experiment(self) -> str:
        """Every key the event writes carries this experiment's hash tag (one slot)."""
        ...

    def locator(self) -> str | None:
        """The key that leads from the request id to the experiment (None: no such key)."""

    def guard_key(self) -> str:
        """The hash that makes writing this event idempotent (it holds the writer's token)."""

    def guard_fields(self) -> dict[str, str]:
        """Fields stored in the guard hash beside the token."""

    def stream_commands(self, stream_maxlen: int) -> list[Command]:
        """Stream entries (and other writes) of this one event."""

    def count(self, tally: Tally) -> None:
        """Add this event's counter increments to the batch's tally."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one request: the decision, who answered, how, and what it said."""

    request_id: str
    experiment: str
    config_version: str
    variant: str
    """The variant the policy chose."""
    served_variant: str | None
    """The variant that answered (the control after a fallback; None if nothing answered)."""
    version: str | None
    """Model version of the served variant."""
    sticky: bool
    propensity: float
    user_hash: str | None
    """Salted hash of the request key; the raw key is never recorded."""
    status: int
    latency_ms: float
    label: object | None
    score: float | None
    fallback: bool
    ts: float
    forced: str | None = None
    """What overrode the policy (kill_switch, forced_variant, header); None: the policy chose."""
    sticky_until: float | None = None
    """Set on a sticky bandit user's first draw: the user keeps ``variant`` until then (every
    replica learns it from the record the recorder writes)."""
    window: int | None = None
    """The rollout weights window this decision was made under (None: no rollout)."""
    slot: int | None = None
    """The request's time slot within the window, for label-delayed gates."""
    failover: bool = False
    """Answered by a configured fallback variant because the control could not."""
    by_user: bool = False
    """The experiment is analysed by user (sticky): the window keeps per-user sums."""

    def locator(self) -> str | None:
        return keys.request(self.request_id)

    def guard_key(self) -> str:
        return keys.attribution(self.experiment, self.request_id)

    def guard_fields(self) -> dict[str, str]:
        return attribution_fields(self)

    def stream_commands(self, stream_maxlen: int) -> list[Command]:
        commands = [stream_command(self, stream_maxlen)]
        held = sticky_command(self, stream_maxlen)
        if held is not None:
            commands.append(held)
        return commands

    def count(self, tally: Tally) -> None:
        count_outcome(tally, self)


def count_outcome(tally: Tally, outcome: Outcome) -> None:
    """One outcome's counter increments: assignment side on the chosen variant, answer side on
    the variant that answered (the control after a fallback)."""
    exp = outcome.experiment
    chosen = keys.counters(exp, outcome.variant)
    answered = outcome.served_variant
    tally.member(keys.variants(exp), outcome.variant)
    tally.incr(chosen, keys.ASSIGNED)
    if outcome.sticky:
        tally.incr(chosen, keys.STICKY)
    tally.incr(keys.assigned(exp, outcome.config_version), outcome.variant)
    tally.add(chosen, keys.LATENCY_SUM, outcome.latency_ms)
    tally.incr(chosen, latency_field(outcome.latency_ms))
    if answered is None or outcome.status >= 500:
        tally.incr(chosen, keys.ERRORS)
    if outcome.failover:
        tally.incr(chosen, keys.FAILOVERS)
    elif outcome.fallback:
        tally.incr(chosen, keys.FALLBACKS)
    if outcome.by_user and outcome.forced is None:
        count_units(tally, outcome, answered is None or outcome.status >= 500)
    if outcome.window is not None and outcome.forced is None:
        count_window(tally, outcome, outcome.window)
    if tally.history is not None:
        failed = answered is None or outcome.status >= 500
        counts = (
            (keys.HIST_ASSIGNED, 1),
            (keys.HIST_ERRORS, 1 if failed else 0),
            (keys.HIST_FALLBACKS, 1 if outcome.fallback else 0),
            (keys.HIST_LATENCY, outcome.latency_ms),
        )
        tally.in_history(exp, outcome.ts, outcome.variant, counts)
    if answered is None:
        return
    served = keys.counters(exp, answered)
    tally.member(keys.variants(exp), answered)
    tally.incr(served, keys.SERVED)
    if 400 <= outcome.status < 500:
        tally.incr(served, keys.REJECTED)
    if outcome.label is not None or outcome.score is not None:
        tally.incr(served, keys.PREDICTIONS)
    if outcome.label is not None:
        tally.incr(served, keys.LABELLED)
        tally.incr(served, keys.LABEL + dumps(outcome.label))
        if is_positive(outcome.label):
            tally.incr(served, keys.POSITIVE)
    if outcome.score is not None:
        tally.incr(served, keys.SCORED)
        tally.add(served, keys.SCORE_SUM, outcome.score)
        tally.add(served, keys.SCORE_SUMSQ, outcome.score**2)


def count_units(tally: Tally, outcome: Outcome, failed: bool) -> None:
    """A policy decision of a sticky experiment, per user under the configuration in force."""
    key = keys.config_units(outcome.experiment, outcome.config_version)
    if outcome.user_hash is None:
        tally.incr(key, keys.window_field(outcome.variant, keys.WINDOW_NOKEY))
        tally.expiring[key] = tally.units.ttl
    else:
        tally.unit(key, outcome.variant, outcome.user_hash, failed)


def count_window(tally: Tally, outcome: Outcome, window: int) -> None:
    """A policy decision under rollout weights: what the gates compare, per variant."""
    key = keys.rollout_window(outcome.experiment, window)
    variant = outcome.variant
    tally.incr(key, keys.window_field(variant, keys.WINDOW_ASSIGNED))
    failed = outcome.fallback or outcome.served_variant is None or outcome.status >= 500
    if failed:
        tally.incr(key, keys.window_field(variant, keys.WINDOW_FAILED))
    field = bucket(keys.WINDOW_LATENCY, LATENCY_BOUNDS_MS, outcome.latency_ms)
    tally.incr(key, keys.window_field(variant, field))
    if outcome.by_user:
        if outcome.user_hash is None:
            tally.incr(key, keys.window_field(variant, keys.WINDOW_NOKEY))
        else:
            units = keys.rollout_units(outcome.experiment, window)
            tally.unit(units, variant, outcome.user_hash, failed)


def unit_feedback_commands(
    experiment: str,
    config_version: str,
    variant: str,
    user: str,
    reward: float,
    units: UnitBounds,
    correct: bool | None = None,
) -> list[Command]:
    """Feedback on a request of a user (sticky experiments), into the per-user reward (and,
    with a label, accuracy) sums of the configuration it was made under."""
    key = keys.config_units(experiment, config_version)
    bound = str(units.max_users)
    commands: list[Command] = [
        (UNIT_OP, key, (keys.WINDOW_REWARD_USERS, variant, user, "1", num(reward), bound))
    ]
    if correct is not None:
        hit = "1" if correct else "0"
        commands.append((UNIT_OP, key, (keys.ACCURACY_USERS, variant, user, "1", hit, bound)))
    return [*commands, ("EXPIRE", key, (str(units.ttl),))]


def window_feedback_commands(
    experiment: str,
    window: int,
    slot: int,
    variant: str,
    reward: float,
    user: str | None = None,
    units: UnitBounds = UnitBounds(),
) -> list[Command]:
    """Feedback on a request made under rollout weights, into that window's slot counters and,
    for a request of a user (sticky experiments), into the per-user reward sums."""
    key = keys.rollout_window(experiment, window)
    per_user: list[Command] = []
    if user is not None:
        staged = keys.rollout_staged(experiment, window, slot)
        args = (staged, variant, user, str(slot), num(reward), str(units.max_users))
        per_user = [
            (UNIT_FEEDBACK_OP, keys.rollout_units(experiment, window), (*args, str(units.ttl)))
        ]
    return [
        *per_user,
        ("HINCRBY", key, (keys.window_field(variant, keys.WINDOW_FB_N, slot), "1")),
        ("HINCRBYFLOAT", key, (keys.window_field(variant, keys.WINDOW_FB_SUM, slot), num(reward))),
        (
            "HINCRBYFLOAT",
            key,
            (keys.window_field(variant, keys.WINDOW_FB_SUMSQ, slot), num(reward * reward)),
        ),
    ]


def stream_command(outcome: Outcome, stream_maxlen: int) -> Command:
    return (
        "XADD",
        keys.events(outcome.experiment),
        ("MAXLEN", "~", str(stream_maxlen), "*", *flatten(event_fields(outcome))),
    )


def event_fields(outcome: Outcome) -> dict[str, str]:
    """The stream entry of one request: no raw text, the user key only as its salted hash."""
    fields = {
        "request_id": outcome.request_id,
        "experiment": outcome.experiment,
        "config_version": outcome.config_version,
        "variant": outcome.variant,
        "sticky": "1" if outcome.sticky else "0",
        "propensity": num(outcome.propensity),
        "status": str(outcome.status),
        "latency_ms": num(outcome.latency_ms),
        "fallback": "1" if outcome.fallback else "0",
        "ts": num(outcome.ts),
    }
    optional = {
        "served_variant": outcome.served_variant,
        "version": outcome.version,
        "user_hash": outcome.user_hash,
        "label": None if outcome.label is None else dumps(outcome.label),
        "score": None if outcome.score is None else num(outcome.score),
        "failover": "1" if outcome.failover else None,
    }
    fields.update({k: v for k, v in optional.items() if v is not None})
    return fields


def attribution_fields(outcome: Outcome) -> dict[str, str]:
    """What ``POST /feedback`` needs to credit the version that answered."""
    fields = {
        "experiment": outcome.experiment,
        "config_version": outcome.config_version,
        "variant": outcome.variant,
        "fallback": "1" if outcome.fallback else "0",
        "ts": num(outcome.ts),
        "propensity": num(outcome.propensity),
    }
    if outcome.served_variant is not None and outcome.status < 400:
        # Only an answer with a prediction can be credited; a refused input cannot.
        fields["served_variant"] = outcome.served_variant
    if outcome.version is not None:
        fields["version"] = outcome.version
    if outcome.label is not None:
        fields["label"] = dumps(outcome.label)
        fields["label_type"] = label_type(outcome.label)
    if outcome.by_user and outcome.user_hash is not None and outcome.forced is None:
        fields["unit"] = outcome.user_hash
    if outcome.window is not None and outcome.slot is not None and outcome.forced is None:
        fields["window"] = str(outcome.window)
        fields["slot"] = str(outcome.slot)
    return fields


def sticky_command(outcome: Outcome, stream_maxlen: int) -> Command | None:
    """A sticky bandit user's first draw, which every replica pulls into its cache."""
    if outcome.sticky_until is None or outcome.user_hash is None:
        return None
    fields = ("u", outcome.user_hash, "v", outcome.variant, "p", num(outcome.propensity))
    return (
        "XADD",
        keys.bandit_sticky(outcome.experiment),
        ("MAXLEN", "~", str(stream_maxlen), "*", *fields, "x", num(outcome.sticky_until)),
    )


@dataclass(frozen=True, slots=True)
class ShadowComparison:
    """One mirrored request: the shadow's answer next to the primary's, or why there is none."""

    request_id: str
    experiment: str
    config_version: str
    primary: str
    """The variant whose answer the client got."""
    shadow: str
    primary_label: object | None
    primary_score: float | None
    primary_latency_ms: float
    shadow_label: object | None = None
    shadow_score: float | None = None
    shadow_latency_ms: float | None = None
    error: str | None = None
    """Why the shadow has no answer: ``error`` (it failed) or ``dropped:<reason>``."""
    ts: float = 0.0
    unit: str | None = None
    """The user's salted hash when the experiment is analysed by user (sticky)."""

    @property
    def compared(self) -> bool:
        return self.error is None

    @property
    def agree(self) -> bool:
        return self.compared and self.primary_label == self.shadow_label

    @property
    def score_delta(self) -> float | None:
        if self.shadow_score is None or self.primary_score is None:
            return None
        return self.shadow_score - self.primary_score

    def locator(self) -> str | None:
        return None  # the request's outcome writes it

    def guard_key(self) -> str:
        return keys.shadow_request(self.experiment, self.request_id, self.shadow)

    def guard_fields(self) -> dict[str, str]:
        fields = {"experiment": self.experiment, "primary": self.primary}
        if self.shadow_label is not None:
            fields["label"] = dumps(self.shadow_label)
        return fields

    def stream_commands(self, stream_maxlen: int) -> list[Command]:
        flat = flatten(comparison_fields(self))
        cap = ("MAXLEN", "~", str(stream_maxlen), "*")
        commands: list[Command] = [("XADD", keys.shadow_events(self.experiment), (*cap, *flat))]
        if self.compared and not self.agree:
            commands.append(("XADD", keys.disagreements(self.experiment), (*cap, *flat)))
        if self.shadow_label is not None:
            # Labelled feedback on the request scores the shadow's label too, whichever of
            # the two reaches Redis first (``router.storage.scripts``).
            pair = keys.shadow_counters(self.experiment, self.primary, self.shadow)
            where = keys.attribution(self.experiment, self.request_id)
            commands.append((SHADOW_LABEL_OP, where, (pair, self.shadow, dumps(self.shadow_label))))
        return commands

    def count(self, tally: Tally) -> None:
        count_comparison(tally, self)


def comparison_fields(comparison: ShadowComparison) -> dict[str, str]:
    """The stream entry of one mirrored request."""
    fields = {
        "request_id": comparison.request_id,
        "config_version": comparison.config_version,
        "primary": comparison.primary,
        "shadow": comparison.shadow,
        "primary_latency_ms": num(comparison.primary_latency_ms),
        "ts": num(comparison.ts),
    }
    optional = {
        "primary_label": _json_or_none(comparison.primary_label),
        "shadow_label": _json_or_none(comparison.shadow_label),
        "primary_score": _num_or_none(comparison.primary_score),
        "shadow_score": _num_or_none(comparison.shadow_score),
        "shadow_latency_ms": _num_or_none(comparison.shadow_latency_ms),
        "error": comparison.error,
        "agree": None if not comparison.compared else ("1" if comparison.agree else "0"),
        "user_hash": comparison.unit,
    }
    fields.update({k: v for k, v in optional.items() if v is not None})
    return fields


def _json_or_none(value: object | None) -> str | None:
    return None if value is None else dumps(value)


def _num_or_none(value: float | None) -> str | None:
    return None if value is None else num(value)


def count_comparison(tally: Tally, comparison: ShadowComparison) -> None:
    """Counter increments of one comparison, summed into the batch's tally."""
    exp = comparison.experiment
    key = keys.shadow_counters(exp, comparison.primary, comparison.shadow)
    tally.member(keys.shadow_pairs(exp), f"{comparison.primary}|{comparison.shadow}")
    if comparison.error is not None:
        dropped = comparison.error.startswith("dropped")
        tally.incr(key, keys.SHADOW_DROPPED if dropped else keys.SHADOW_ERRORS)
        return
    tally.incr(key, keys.SHADOW_PAIRS)
    if comparison.agree:
        tally.incr(key, keys.SHADOW_AGREE)
    series = keys.shadow_series(comparison.primary, comparison.shadow)
    agreed = 1 if comparison.agree else 0
    tally.in_history(exp, comparison.ts, series, ((keys.HIST_PAIRS, 1), (keys.HIST_AGREE, agreed)))
    primary, shadow = dumps(comparison.primary_label), dumps(comparison.shadow_label)
    tally.incr(key, f"{keys.SHADOW_CONFUSION}{primary}|{shadow}")
    bounds = LATENCY_BOUNDS_MS
    tally.incr(key, bucket(keys.SHADOW_PRIMARY_LATENCY, bounds, comparison.primary_latency_ms))
    if comparison.shadow_latency_ms is not None:
        tally.incr(key, bucket(keys.SHADOW_SHADOW_LATENCY, bounds, comparison.shadow_latency_ms))
    delta = comparison.score_delta
    if comparison.unit is not None:
        units = keys.shadow_units(exp, comparison.primary, comparison.shadow)
        tally.unit(units, "pair", comparison.unit, comparison.agree, keys.SHADOW_UNITS_AGREE)
        if delta is not None:
            tally.unit_value(units, "pair", comparison.unit, delta, keys.SHADOW_UNITS_DELTA)
    if delta is not None:
        tally.incr(key, keys.SHADOW_DELTA_N)
        tally.add(key, keys.SHADOW_DELTA_SUM, delta)
        tally.add(key, keys.SHADOW_DELTA_SUMSQ, delta * delta)
        tally.incr(key, bucket(keys.SHADOW_DELTA_BUCKET, SCORE_DELTA_BUCKETS, delta))
