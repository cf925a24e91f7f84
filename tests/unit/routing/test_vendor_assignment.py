"""Policy-level agreement: a canary or A/B experiment with a vendor ``sticky.hash`` assigns every
user what that vendor's official SDK assigns for the equivalent vendor configuration.

The equivalent configurations are in ``router.routing.policies.weighted``'s docstring; each
test builds one from the experiment independently (it does not reuse the router's helpers) and
drives the real SDK with it, offline. Users a vendor leaves out must get our control, as a sticky
decision. The last section checks that configs a vendor would silently mis-evaluate are refused.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router import hashing
from router.config.experiments import NAME, Experiment
from router.config.loader import parse_experiment
from router.core.errors import ConfigError
from router.routing.policies import build_policy
from router.routing.policies.base import EMPTY_VIEW, Decision
from tests.unit.hashing.test_hashing import (
    ANY_TEXT,
    KEYS,
    SURROGATE_KEYS,
    EppoOracle,
    GrowthBookOracle,
    UnleashOracle,
    random_keys,
)

# Each example checks 4..16 keys against one generated experiment: about 4000 (experiment, user)
# pairs per vendor, plus the bulk tests' fixed experiments over 3000 keys; the file takes ~10 s.
CASES = settings(
    max_examples=500,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
KEYS_PER_CASE = 16
BULK_KEYS = 3000

# Keys every vendor can hash (no lone surrogates), including the empty key.
HASHABLE_TEXT = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=24), st.sampled_from(KEYS)
)
EXPERIMENT_NAMES = st.one_of(
    st.sampled_from(["exp", "model-ab", "profanity-v2-canary"]), st.from_regex(NAME, fullmatch=True)
)
# Unleash's engine mis-reads a groupId holding '"' or ending in '\\' (refused at config time).
GROUP_IDS = st.one_of(
    st.sampled_from(["", "canary", "feature-😀", "g\\x", "Ü n"]),
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters='"\\'), max_size=16),
)


def make_experiment(
    name: str,
    kind: str,
    control: str,
    variants: list[str],
    weights: dict[str, float],
    **sticky: Any,
) -> Experiment:
    data = {
        "name": name,
        "model": "m",
        "control": control,
        "variants": {v: {"url": f"http://127.0.0.1:{8100 + i}"} for i, v in enumerate(variants)},
        "policy": {"kind": kind, "weights": weights, "sticky": {"key": "user_id", **sticky}},
    }
    return Experiment.model_validate(data)


def decide(experiment: Experiment, keys: list[str]) -> list[Decision]:
    policy = build_policy(experiment)
    rng = random.Random(0)
    return [policy.choose(key, rng, EMPTY_VIEW) for key in keys]


@st.composite
def percent_weights(draw: st.DrawFn, count: int) -> list[float]:
    """``count`` non-negative percentages summing to 100 (within float rounding), edges included."""
    style = draw(st.sampled_from(["units", "basis points", "edge"]))
    if style == "edge":
        hot = draw(st.integers(0, count - 1))
        return [100.0 if i == hot else 0.0 for i in range(count)]
    if style == "basis points":  # two decimals, as people write them: 33.33 / 66.67
        cuts = sorted(
            draw(st.lists(st.integers(0, 10_000), min_size=count - 1, max_size=count - 1))
        )
        bounds = [0, *cuts, 10_000]
        return [(b - a) / 100 for a, b in itertools.pairwise(bounds)]
    units = draw(st.lists(st.integers(0, 1000), min_size=count, max_size=count))
    if not any(units):
        units[0] = 1
    return [100 * u / sum(units) for u in units]


@pytest.fixture(scope="module")
def growthbook() -> GrowthBookOracle:
    return GrowthBookOracle()


@pytest.fixture(scope="module")
def unleash() -> Iterator[UnleashOracle]:
    loggers = [logging.getLogger(name) for name in ("UnleashClient", "yggdrasil_engine")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)  # surrogate keys make the engine log tracebacks
    yield UnleashOracle()
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


@pytest.fixture(scope="module")
def eppo() -> EppoOracle:
    return EppoOracle()


# ---------------------------------------------------------------------------------------------
# GrowthBook: ab with hash: growthbook == GrowthBook(attributes={"id": key}).run(Experiment(...))
# ---------------------------------------------------------------------------------------------


def gb_fraction(percent: float) -> float:
    """The GrowthBook weight for ``percent``: the decimal shifted two places (35.84 -> 0.3584)."""
    return float(Decimal(repr(percent)) / 100)


def growthbook_ui_fraction(percent: float) -> float:
    """What GrowthBook's UI saves: ``parseFloat((percent / 100).toFixed(4))``."""
    return float(f"{percent / 100:.4f}")


def growthbook_expected(
    growthbook: GrowthBookOracle,
    experiment: Experiment,
    weights: dict[str, float],
    key: str,
) -> str:
    sticky = experiment.policy.sticky  # type: ignore[union-attr]
    assert sticky is not None
    index = growthbook.run(
        key,
        experiment.name,
        len(weights),
        [gb_fraction(w) for w in weights.values()],
        sticky.coverage,
        sticky.hash_version,
        sticky.seed,
    )
    return experiment.control if index < 0 else list(weights)[index]


@st.composite
def growthbook_experiments(draw: st.DrawFn) -> tuple[Experiment, dict[str, float]]:
    count = draw(st.integers(2, 5))
    variants = draw(st.permutations([f"v{i}" for i in range(count)]))  # file order != name order
    weights = dict(zip(variants, draw(percent_weights(count)), strict=True))
    control = draw(st.sampled_from([*variants, "unweighted"]))  # the control may take no weight
    coverage = draw(st.one_of(st.sampled_from([0.0, 0.5, 0.9999, 1.0]), st.floats(0.0, 1.0)))
    sticky: dict[str, Any] = {"hash": "growthbook", "hash_version": draw(st.sampled_from([1, 2]))}
    if draw(st.booleans()) or coverage != 1.0:
        sticky["coverage"] = coverage
    seed = draw(st.one_of(st.none(), st.just(""), ANY_TEXT))
    if seed is not None:
        sticky["seed"] = seed
    experiment = make_experiment(
        draw(EXPERIMENT_NAMES), "ab", control, [*variants, "unweighted"], weights, **sticky
    )
    return experiment, weights


@CASES
@given(case=growthbook_experiments(), keys=st.lists(ANY_TEXT, min_size=4, max_size=KEYS_PER_CASE))
def test_ab_with_growthbook_hash_matches_growthbook_run(
    growthbook: GrowthBookOracle, case: tuple[Experiment, dict[str, float]], keys: list[str]
) -> None:
    experiment, weights = case
    keys = [*keys, ""]  # GrowthBook never includes an empty id: our control
    for key, decision in zip(keys, decide(experiment, keys), strict=True):
        expected = growthbook_expected(growthbook, experiment, weights, key)
        assert decision.variant == expected, (key, experiment.policy)
        assert decision.sticky


def test_growthbook_bulk_keys(growthbook: GrowthBookOracle) -> None:
    weights = {"control": 50.0, "treatment-a": 33.33, "treatment-b": 16.67}
    for coverage, version in ((0.8, 2), (1.0, 1)):
        experiment = make_experiment(
            "bulk-ab",
            "ab",
            "control",
            [*weights, "unused"],
            weights,
            hash="growthbook",
            coverage=coverage,
            hash_version=version,
            seed="bulk-seed",
        )
        keys = random_keys(BULK_KEYS, surrogates=True)
        for key, decision in zip(keys, decide(experiment, keys), strict=True):
            assert decision.variant == growthbook_expected(growthbook, experiment, weights, key)


def test_growthbook_weights_are_the_fractions_growthbook_stores() -> None:
    for basis_points in range(10_001):
        percent = basis_points / 100
        assert hashing.growthbook_weight(percent) == growthbook_ui_fraction(percent), percent
    assert 35.84 / 100 != hashing.growthbook_weight(35.84) == 0.3584


@pytest.mark.parametrize(
    ("weights", "key", "variant"),
    [
        # Users whose hash sits exactly on a range boundary. 77.04 / 100 is 0.7704000000000001
        # but GrowthBook stores 0.7704, so user-1781 (hash 0.7704) belongs to v1.
        ({"v0": 77.04, "v1": 22.96}, "user-1781", "v1"),
        ({"v0": 34.59, "v1": 65.41}, "user-29985", "v1"),
        # These sum to 100.00000000000001 and 99.99999999999999 in floating point: dividing by
        # the sum instead of 100 would move the boundary by one ulp.
        ({"v0": 35.84, "v1": 11.63, "v2": 27.83, "v3": 24.7}, "user-13086", "v1"),
        ({"v0": 94.72, "v1": 2.46, "v2": 2.82}, "user-6321", "v1"),
    ],
)
def test_growthbook_boundary_users(
    growthbook: GrowthBookOracle, weights: dict[str, float], key: str, variant: str
) -> None:
    experiment = make_experiment("exp", "ab", "v0", list(weights), weights, hash="growthbook")
    [decision] = decide(experiment, [key])
    assert decision.variant == variant
    ui_weights = [growthbook_ui_fraction(w) for w in weights.values()]
    index = growthbook.run(key, "exp", len(weights), ui_weights, None, 2, None)
    assert decision.variant == list(weights)[index]


def test_growthbook_left_out_users_get_control_as_a_sticky_decision() -> None:
    weights = {"v1": 50.0, "v2": 50.0}
    experiment = make_experiment(
        "exp", "ab", "v1", ["v1", "v2"], weights, hash="growthbook", coverage=0.5
    )
    decisions = decide(experiment, [f"user-{i}" for i in range(2000)] + [""])
    assert all(d.sticky for d in decisions)
    assert decisions[-1].variant == "v1"
    # Propensities follow coverage: v2 gets 0.5 * 50%, control the rest of the users.
    assert {d.variant: d.probability for d in decisions} == {"v1": 0.75, "v2": 0.25}
    none_in = make_experiment(
        "exp", "ab", "v1", ["v1", "v2"], weights, hash="growthbook", coverage=0.0
    )
    assert {d.variant for d in decide(none_in, ["a", "b", "c"])} == {"v1"}


# ---------------------------------------------------------------------------------------------
# Unleash: canary with hash: unleash == flexibleRollout(groupId, rollout) [+ strategy variants]
# ---------------------------------------------------------------------------------------------


def unleash_toggle(
    name: str, group_id: str | None, rollout: int, variants: dict[str, int]
) -> dict[str, Any]:
    parameters = {"rollout": str(rollout), "stickiness": "default"}
    if group_id is not None:  # Unleash's default groupId is the toggle name, as ours
        parameters["groupId"] = group_id
    strategy: dict[str, Any] = {"name": "flexibleRollout", "parameters": parameters}
    if len(variants) > 1:
        strategy["variants"] = [
            {"name": v, "weight": w, "weightType": "variable", "stickiness": "default"}
            for v, w in variants.items()
        ]
    return {"name": name, "enabled": True, "strategies": [strategy]}


@st.composite
def unleash_canaries(draw: st.DrawFn) -> tuple[Experiment, dict[str, Any]]:
    """A canary, with the Unleash toggle that should include exactly its treated users."""
    treatments = [f"t{i}" for i in range(draw(st.integers(1, 3)))]
    listed = draw(st.booleans())  # control in weights, or only named as control
    rollout = draw(st.one_of(st.sampled_from([0, 1, 50, 99, 100]), st.integers(0, 100)))
    if not listed:
        rollout = 100
    cuts = sorted(draw(st.lists(st.integers(0, 1000), min_size=len(treatments) - 1, max_size=2)))
    bounds = [0, *cuts[: len(treatments) - 1], 1000]
    per_mille = {t: b - a for t, a, b in zip(treatments, bounds, bounds[1:], strict=False)}
    weights = {t: rollout * pm / 1000 for t, pm in per_mille.items()}
    order = [*treatments]
    if listed:
        order.insert(draw(st.integers(0, len(order))), "control")
        weights["control"] = 100.0 - rollout
    weights = {v: weights[v] for v in order}
    group_id = draw(st.one_of(st.none(), GROUP_IDS))
    sticky: dict[str, Any] = {"hash": "unleash"}
    if group_id is not None:
        sticky["group_id"] = group_id
    name = draw(EXPERIMENT_NAMES)
    experiment = make_experiment(
        name, "canary", "control", ["control", *treatments], weights, **sticky
    )
    return experiment, unleash_toggle(name, group_id, rollout, per_mille)


def unleash_expected(unleash: UnleashOracle, client: Any, toggle: dict[str, Any], key: str) -> str:
    name = toggle["name"]
    enabled = unleash.enabled(client, name, key)
    if "variants" not in toggle["strategies"][0]:
        return "t0" if enabled else "control"  # the only treatment
    variant = client.get_variant(name, {"userId": key})
    assert variant["enabled"] == enabled
    return str(variant["name"]) if enabled else "control"


@CASES
@given(case=unleash_canaries(), keys=st.lists(HASHABLE_TEXT, min_size=4, max_size=KEYS_PER_CASE))
def test_canary_with_unleash_hash_matches_flexible_rollout(
    unleash: UnleashOracle, case: tuple[Experiment, dict[str, Any]], keys: list[str]
) -> None:
    experiment, toggle = case
    client = unleash.client([toggle])
    for key, decision in zip(keys, decide(experiment, keys), strict=True):
        # Included by Unleash <=> not our control; and the same treatment when there are several.
        assert (decision.variant != "control") == unleash.enabled(client, toggle["name"], key)
        assert decision.variant == unleash_expected(unleash, client, toggle, key), key
        assert decision.sticky


def test_unleash_bulk_keys(unleash: UnleashOracle) -> None:
    weights = {"t0": 18.0, "control": 70.0, "t1": 0.0, "t2": 12.0}
    experiment = make_experiment(
        "bulk-canary", "canary", "control", list(weights), weights, hash="unleash", group_id="g😀"
    )
    toggle = unleash_toggle("bulk-canary", "g😀", 30, {"t0": 600, "t1": 0, "t2": 400})
    client = unleash.client([toggle])
    keys = random_keys(BULK_KEYS, surrogates=False)
    for key, decision in zip(keys, decide(experiment, keys), strict=True):
        assert decision.variant == unleash_expected(unleash, client, toggle, key), key


def test_keys_unleash_cannot_hash_get_control(unleash: UnleashOracle) -> None:
    weights = {"control": 0.0, "t0": 100.0}
    experiment = make_experiment(
        "everyone", "canary", "control", list(weights), weights, hash="unleash"
    )
    client = unleash.client([unleash_toggle("everyone", None, 100, {"t0": 1000})])
    decisions = decide(experiment, SURROGATE_KEYS)
    assert [d.variant for d in decisions] == ["control"] * len(SURROGATE_KEYS)
    assert all(d.sticky for d in decisions)
    # Even a 100% rollout leaves them out: Unleash's engine rejects the context.
    assert not any(unleash.enabled(client, "everyone", key) for key in SURROGATE_KEYS)
    assert all(unleash.enabled(client, "everyone", key) for key in KEYS)


# ---------------------------------------------------------------------------------------------
# Eppo: one allocation, one split per variant with a contiguous [start, end) shard range
# ---------------------------------------------------------------------------------------------


@st.composite
def eppo_experiments(draw: st.DrawFn) -> tuple[Experiment, int, list[tuple[int, int]], str]:
    total = draw(
        st.one_of(
            st.sampled_from([1, 2, 3, 7, 100, 10_000, hashing.EPPO_MAX_TOTAL_SHARDS]),
            st.integers(1, hashing.EPPO_MAX_TOTAL_SHARDS),
        )
    )
    count = draw(st.integers(1, 5))
    cuts = sorted(draw(st.lists(st.integers(0, total), min_size=count - 1, max_size=count - 1)))
    bounds = [0, *cuts, total]
    ranges = list(itertools.pairwise(bounds))
    variants = [f"v{i}" for i in range(count)]
    weights = {
        v: 100 * (end - start) / total for v, (start, end) in zip(variants, ranges, strict=True)
    }
    sticky: dict[str, Any] = {"hash": "eppo"}
    if total != 10_000 or draw(st.booleans()):
        sticky["total_shards"] = total
    salt = draw(st.one_of(st.none(), HASHABLE_TEXT))
    if salt is not None:
        sticky["salt"] = salt
    name = draw(EXPERIMENT_NAMES)
    kind = draw(st.sampled_from(["ab", "canary"]))
    experiment = make_experiment(
        name, kind, draw(st.sampled_from(variants)), variants, weights, **sticky
    )
    return experiment, total, ranges, name if salt is None else salt


@CASES
@given(case=eppo_experiments(), keys=st.lists(HASHABLE_TEXT, min_size=4, max_size=KEYS_PER_CASE))
def test_eppo_hash_matches_eppo_allocation(
    eppo: EppoOracle,
    case: tuple[Experiment, int, list[tuple[int, int]], str],
    keys: list[str],
) -> None:
    experiment, total, ranges, salt = case
    weights = experiment.configured_weights()
    assert hashing.eppo_shard_ranges(list(weights.values()), total) == ranges
    eppo.load(total, [[(salt, [shard_range])] for shard_range in ranges])
    for key, decision in zip(keys, decide(experiment, keys), strict=True):
        index = eppo.choose(key)
        assert index >= 0  # the ranges cover every shard
        assert decision.variant == list(weights)[index], key
        assert decision.sticky


def test_eppo_bulk_keys(eppo: EppoOracle) -> None:
    weights = {"v1": 12.34, "v2": 0.0, "v3": 50.0, "v4": 37.66}
    experiment = make_experiment("bulk-eppo", "ab", "v1", list(weights), weights, hash="eppo")
    ranges = [(0, 1234), (1234, 1234), (1234, 6234), (6234, 10_000)]
    eppo.load(10_000, [[("bulk-eppo", [shard_range])] for shard_range in ranges])
    keys = random_keys(BULK_KEYS, surrogates=False)
    for key, decision in zip(keys, decide(experiment, keys), strict=True):
        assert decision.variant == list(weights)[eppo.choose(key)], key


def test_keys_eppo_cannot_hash_get_control(eppo: EppoOracle) -> None:
    weights = {"v1": 0.0, "v2": 100.0}
    experiment = make_experiment("exp", "ab", "v1", list(weights), weights, hash="eppo")
    decisions = decide(experiment, SURROGATE_KEYS)
    assert [(d.variant, d.sticky) for d in decisions] == [("v1", True)] * len(SURROGATE_KEYS)
    eppo.load(10_000, [[("exp", [(0, 0)])], [("exp", [(0, 10_000)])]])
    with pytest.raises(UnicodeEncodeError):
        eppo.choose(SURROGATE_KEYS[0])


# ---------------------------------------------------------------------------------------------
# Every scheme: sticky decisions, propensities, and keyless requests
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sticky",
    [
        {"hash": "turnout"},
        {"hash": "growthbook", "coverage": 0.6},
        {"hash": "unleash", "group_id": "g"},
        {"hash": "eppo", "salt": "s"},
    ],
)
def test_schemes_are_deterministic_and_keyless_requests_random(sticky: dict[str, Any]) -> None:
    weights = {"v2": 25.0, "v1": 75.0}
    experiment = make_experiment("exp", "canary", "v1", ["v1", "v2"], weights, **sticky)
    policy = build_policy(experiment)
    keys = [f"user-{i}" for i in range(4000)]
    first = [policy.choose(k, random.Random(1), EMPTY_VIEW) for k in keys]
    again = [policy.choose(k, random.Random(2), EMPTY_VIEW) for k in keys]
    assert first == again
    assert all(d.sticky for d in first)
    expected = {"v1": 0.75, "v2": 0.25}
    if sticky["hash"] == "growthbook":
        expected = {"v1": 0.4 + 0.6 * 0.75, "v2": 0.6 * 0.25}
    assert {d.variant: d.probability for d in first} == pytest.approx(expected)
    share = sum(d.variant == "v2" for d in first) / len(first)
    assert abs(share - expected["v2"]) < 0.03
    keyless = [policy.choose(None, random.Random(i), EMPTY_VIEW) for i in range(200)]
    assert not any(d.sticky for d in keyless)
    assert {d.variant: d.probability for d in keyless} == {"v1": 0.75, "v2": 0.25}


# ---------------------------------------------------------------------------------------------
# Refusals: configs a vendor would silently mis-evaluate never load
# ---------------------------------------------------------------------------------------------

PATH = Path("exp.yaml")


def _yaml(kind: str, weights: str, sticky: str, control: str = "control") -> str:
    return (
        f"name: exp\nmodel: m\ncontrol: {control}\nvariants:\n"
        "  control: {url: 'http://127.0.0.1:8101'}\n"
        "  t0: {url: 'http://127.0.0.1:8102'}\n"
        "  t1: {url: 'http://127.0.0.1:8103'}\n"
        "  t2: {url: 'http://127.0.0.1:8104'}\n"
        f"policy:\n  kind: {kind}\n  weights: {weights}\n  sticky: {{key: user_id, {sticky}}}\n"
    )


REFUSED = [
    (
        "unleash rollout not a whole percent",
        _yaml("canary", "{control: 87.5, t0: 12.5}", "hash: unleash"),
        "Unleash rolls out whole percentages 0..100 only; the treatments sum to 12.5%",
    ),
    (
        "unleash variants not whole per mille",
        _yaml("canary", "{control: 97, t0: 1, t1: 2}", "hash: unleash"),
        "1% of a 3% rollout is 333.3/1000",
    ),
    (
        "unleash group_id with a quote",
        _yaml("canary", "{control: 90, t0: 10}", "hash: unleash, group_id: 'a\"b'"),
        "must not contain '\"'",
    ),
    (
        "unleash group_id ending in a backslash",
        _yaml("canary", "{control: 90, t0: 10}", "hash: unleash, group_id: 'ab\\'"),
        "end with '\\'",
    ),
    (
        "unleash group_id with a lone surrogate",
        _yaml("canary", "{control: 90, t0: 10}", 'hash: unleash, group_id: "\\ud800"'),
        "lone surrogate",
    ),
    (
        "growthbook weights not summing to 100",
        _yaml("ab", "{control: 49.5, t0: 50}", "hash: growthbook"),
        "weights must sum to 100, they sum to 99.5",
    ),
    (
        "growthbook with a NaN weight (GrowthBook would use equal weights)",
        _yaml("ab", "{control: .nan, t0: 100}", "hash: growthbook"),
        "weights must be finite numbers: control",
    ),
    (
        "growthbook with a single variation",
        _yaml("ab", "{t0: 100}", "hash: growthbook"),
        "fewer than two variations",
    ),
    (
        "eppo total_shards of 2**32",
        _yaml("ab", "{control: 50, t0: 50}", "hash: eppo, total_shards: 4294967296"),
        "must be below 2**32",
    ),
    (
        "eppo weights that are not whole shards",
        _yaml("ab", "{control: 50, t0: 50}", "hash: eppo, total_shards: 7"),
        "Eppo assigns whole shards; 50% of 7 shards is 3.5 shards",
    ),
    (
        "eppo weights with more decimals than shards",
        _yaml("ab", "{control: 33.3333, t0: 33.3333, t1: 33.3334}", "hash: eppo"),
        "33.3333% of 10000 shards is 3333.33 shards",
    ),
    (
        "growthbook setting under turnout",
        _yaml("ab", "{control: 50, t0: 50}", "coverage: 0.5"),
        "coverage not used by hash: turnout (it takes salt)",
    ),
    (
        "turnout setting under growthbook",
        _yaml("ab", "{control: 50, t0: 50}", "hash: growthbook, salt: s"),
        "salt not used by hash: growthbook",
    ),
    (
        "unleash setting under eppo",
        _yaml("ab", "{control: 50, t0: 50}", "hash: eppo, group_id: g"),
        "group_id not used by hash: eppo",
    ),
    (
        "vendor hash on a bandit",
        _yaml("bandit", "[]", "hash: growthbook").replace(
            "  weights: []\n", "  arms: [control, t0]\n"
        ),
        "applies to canary and ab only",
    ),
]


@pytest.mark.parametrize(("text", "reason"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_configs_a_vendor_would_mis_evaluate_are_refused(text: str, reason: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_experiment(text, PATH)
    assert refused.value.detail.startswith(f"{PATH}:"), refused.value.detail
    assert reason in refused.value.detail, refused.value.detail


ACCEPTED = [
    _yaml("canary", "{control: 90, t0: 10}", "hash: unleash, group_id: 'Ü n'"),
    _yaml("canary", "{control: 90, t0: 5, t1: 2.5, t2: 2.5}", "hash: unleash"),
    _yaml("canary", "{control: 100, t0: 0}", "hash: unleash"),
    _yaml("ab", "{control: 33.33, t0: 33.33, t1: 33.34}", "hash: growthbook, seed: ''"),
    _yaml("ab", "{control: 12.34, t0: 87.66}", "hash: eppo, total_shards: 10000, salt: ''"),
    _yaml("ab", "{control: 50, t0: 50}", "hash: eppo, total_shards: 4294967294"),
    _yaml("ab", "{control: 50, t0: 50}", "hash: turnout, salt: s"),
]


@pytest.mark.parametrize("text", ACCEPTED)
def test_configs_each_vendor_expresses_exactly_load(text: str) -> None:
    experiment = parse_experiment(text, PATH).experiment
    assert build_policy(experiment).choose("user-1", random.Random(0), EMPTY_VIEW).sticky


def test_vendor_plans_at_their_edges() -> None:
    assert hashing.unleash_rollout_plan([]) == (0, ())
    assert hashing.unleash_rollout_plan([0.0, 0.0]) == (0, ())
    assert hashing.unleash_rollout_plan([100.0]) == (100, ())
    assert hashing.unleash_rollout_plan([3.3, 3.3, 3.4]) == (10, (330, 330, 340))
    assert hashing.unleash_rollout_plan([10.0, 0.0]) == (10, (1000, 0))
    for bad in ([12.5], [101.0], [-1.0, 2.0], [float("nan")], [1.0, 2.0]):
        with pytest.raises(ValueError, match=r"Unleash|percentages"):
            hashing.unleash_rollout_plan(bad)
    assert hashing.eppo_shard_ranges([100.0], 1) == [(0, 1)]
    assert hashing.eppo_shard_ranges([0.0, 100.0, 0.0], 7) == [(0, 0), (0, 7), (7, 7)]
    top = hashing.EPPO_MAX_TOTAL_SHARDS
    assert hashing.eppo_shard_ranges([100 / top, 100 - 100 / top], top) == [(0, 1), (1, top)]
    for weights, total in (([50.0, 50.0], 0), ([50.0, 50.0], top + 1), ([50.0, 50.0], 3)):
        with pytest.raises(ValueError, match="Eppo"):
            hashing.eppo_shard_ranges(weights, total)
    with pytest.raises(ValueError, match="cover 5 of 10"):
        hashing.eppo_shard_ranges([50.0], 10)
