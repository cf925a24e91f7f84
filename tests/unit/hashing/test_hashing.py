"""router.hashing against golden vectors and, on generated cases, against the official SDKs.

The golden file is regenerated from the installed SDKs with
``python tests/unit/hashing/test_hashing.py --regenerate``;
``test_golden_file_matches_installed_sdks`` fails when the SDKs no longer produce it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from router.hashing import (
    UNLEASH_VARIANT_SEED,
    EppoShard,
    choose_by_ranges,
    eppo_choose_split,
    eppo_shard,
    fnv1a32,
    growthbook_bucket_ranges,
    growthbook_choose_variation,
    growthbook_hash,
    growthbook_in_namespace,
    murmur3_x86_32,
    turnout_unit,
    unleash_in_rollout,
    unleash_normalized_value,
    unleash_variant_index,
)
from router.hashing.turnout import _unit_from_u64

GOLDEN_PATH = Path(__file__).with_name("hashing_golden.json")
REPO_ROOT = Path(__file__).resolve().parents[3]

# database=None: no .hypothesis/ example store in the work tree. Example counts keep the file
# under 20 s; the test_bulk_keys_* tests add 5000 cheap cases per vendor without the overhead.
FUZZ = settings(
    max_examples=1000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
FUZZ_WIDE = settings(FUZZ, max_examples=1500)
FUZZ_SLOW = settings(FUZZ, max_examples=500)

# Keys every scheme must agree on; lone surrogates only where the vendor can hash them.
KEYS = [
    "",
    "0",
    "1",
    "user-1",
    "user-42",
    "alice@example.com",
    "Ünïcödé",
    "日本語のキー",
    "😀",
    "a😀b",
    "🧪🚀👩‍🔬",
    "\U0010ffff",
    "\x00",
    "a\x00b",
    " ",
    "tab\there",
    "x" * 101,
]
SURROGATE_KEYS = ["\ud800", "\udfff", "\ud83d", "a\ude00b"]

# Hypothesis' default alphabet excludes surrogates; this one keeps them.
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=24)
TEXT = st.one_of(st.text(max_size=24), st.sampled_from(KEYS))


# ---------------------------------------------------------------------------------------------
# Oracles: the official SDKs, driven offline through their public APIs
# ---------------------------------------------------------------------------------------------


class GrowthBookOracle:
    def __init__(self) -> None:
        self.core = pytest.importorskip("growthbook.core")
        self.sdk = pytest.importorskip("growthbook")

    def run(
        self,
        user: str,
        key: str,
        n: int,
        weights: list[float] | None,
        coverage: float | None,
        hash_version: int,
        seed: str | None,
    ) -> int:
        experiment = self.sdk.Experiment(
            key=key,
            variations=list(range(n)),
            weights=weights,
            coverage=coverage,
            hashVersion=hash_version,
            seed=seed,
        )
        result = self.sdk.GrowthBook(attributes={"id": user}).run(experiment)
        return int(result.variationId) if result.inExperiment else -1


class UnleashOracle:
    """UnleashClient bootstrapped from an in-memory toggle list; it never touches the network."""

    def __init__(self) -> None:
        unleash = pytest.importorskip("UnleashClient")
        self.utils = pytest.importorskip("UnleashClient.utils")
        cache_module = pytest.importorskip("UnleashClient.cache")
        features_url = pytest.importorskip("UnleashClient.constants").FEATURES_URL

        class MemoryCache(cache_module.BaseCache):
            def __init__(self, features: list[dict[str, Any]]) -> None:
                self.data: dict[str, Any] = {
                    features_url: json.dumps({"version": 2, "features": features})
                }
                self.bootstrapped = True

            def set(self, key: str, value: Any) -> None:
                self.data[key] = value

            def mset(self, data: dict[str, Any]) -> None:
                self.data.update(data)

            def get(self, key: str, default: Any = None) -> Any:
                return self.data.get(key, default)

            def exists(self, key: str) -> bool:
                return key in self.data

            def destroy(self) -> None:
                self.data.clear()

        self._client_class = unleash.UnleashClient
        self._cache_class = MemoryCache
        self._allow = self.utils.InstanceAllowType.SILENTLY_ALLOW

    def client(self, features: list[dict[str, Any]]) -> Any:
        return self._client_class(
            "http://127.0.0.1:9/api",
            "turnout-hashing-tests",
            disable_metrics=True,
            disable_registration=True,
            cache=self._cache_class(features),
            multiple_instance_mode=self._allow,
        )

    def enabled(self, client: Any, toggle: str, user: str) -> bool:
        return bool(client.is_enabled(toggle, {"userId": user}))

    def variant(self, client: Any, toggle: str, user: str) -> int | None:
        variant = client.get_variant(toggle, {"userId": user})
        return int(variant["name"][1:]) if variant["enabled"] else None


def rollout_toggle(name: str, group_id: str, rollout: int) -> dict[str, Any]:
    parameters = {"rollout": str(rollout), "stickiness": "default", "groupId": group_id}
    return {
        "name": name,
        "enabled": True,
        "strategies": [{"name": "flexibleRollout", "parameters": parameters}],
    }


def variant_toggle(name: str, weights: list[int]) -> dict[str, Any]:
    variants = [
        {"name": f"v{i}", "weight": w, "weightType": "variable", "stickiness": "default"}
        for i, w in enumerate(weights)
    ]
    return {
        "name": name,
        "enabled": True,
        "strategies": [{"name": "default", "parameters": {}}],
        "variants": variants,
    }


class EppoOracle:
    """The Eppo client (a Rust extension) fed a local UFC configuration, one flag ``f``."""

    def __init__(self) -> None:
        eppo = pytest.importorskip("eppo_client")

        class NullLogger(eppo.AssignmentLogger):
            def log_assignment(self, event: dict[str, Any]) -> None:
                pass

            def log_bandit_action(self, event: dict[str, Any]) -> None:
                pass

        self._eppo = eppo
        self._client = eppo.init(
            eppo.ClientConfig(
                api_key="turnout-hashing-tests",
                base_url="http://127.0.0.1:9/api",
                assignment_logger=NullLogger(),
                initial_configuration=self._configuration(10, [[]]),
                poll_interval_seconds=None,
            )
        )

    def _configuration(self, total_shards: int, splits: list[list[EppoShard]]) -> Any:
        flag = {
            "key": "f",
            "enabled": True,
            "variationType": "STRING",
            "totalShards": total_shards,
            "variations": {f"v{i}": {"key": f"v{i}", "value": f"v{i}"} for i in range(len(splits))},
            "allocations": [
                {
                    "key": "allocation",
                    "doLog": False,
                    "splits": [
                        {
                            "variationKey": f"v{i}",
                            "shards": [
                                {
                                    "salt": salt,
                                    "ranges": [{"start": a, "end": b} for a, b in ranges],
                                }
                                for salt, ranges in shards
                            ],
                        }
                        for i, shards in enumerate(splits)
                    ],
                }
            ],
        }
        ufc = {
            "createdAt": "2024-01-01T00:00:00Z",
            "format": "SERVER",
            "environment": {"name": "test"},
            "flags": {"f": flag},
        }
        return self._eppo.Configuration(flags_configuration=json.dumps(ufc).encode())

    def load(self, total_shards: int, splits: list[list[EppoShard]]) -> None:
        self._client.set_configuration(self._configuration(total_shards, splits))

    def choose(self, subject: str) -> int:
        value = self._client.get_string_assignment("f", subject, {}, "default")
        return -1 if value == "default" else int(value[1:])

    def shard_value(self, salt: str, subject: str, total_shards: int) -> int:
        # An empty range never matches, so the SDK reports the shard it computed for the subject.
        self.load(total_shards, [[(salt, [(0, 0)])]])
        result = self._client.get_string_assignment_details("f", subject, {}, "default")
        split = result.evaluation_details["allocations"][0]["evaluatedSplits"][0]
        return int(split["shards"][0]["shardValue"])


@pytest.fixture(scope="module")
def growthbook() -> GrowthBookOracle:
    return GrowthBookOracle()


@pytest.fixture(scope="module")
def unleash() -> Iterator[UnleashOracle]:
    # Unknown toggles and engine errors are logged as warnings; the assertions say enough.
    loggers = [logging.getLogger(name) for name in ("UnleashClient", "yggdrasil_engine")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    yield UnleashOracle()
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


@pytest.fixture(scope="module")
def eppo() -> EppoOracle:
    return EppoOracle()


# ---------------------------------------------------------------------------------------------
# Golden vectors
# ---------------------------------------------------------------------------------------------

GB_RANGE_CASES: list[tuple[int, float, list[float] | None]] = [
    (2, 1.0, None),
    (3, 1.0, None),
    (2, 0.5, None),
    (2, 1.0, [0.9, 0.1]),
    (2, 1.0, [0.8, 0.2]),
    (3, 0.7, [0.5, 0.3, 0.2]),
    (4, 0.25, [0.1, 0.2, 0.3, 0.4]),
    (2, 1.0, [0.5, 0.6]),
    (2, 1.0, [0.5, 0.51]),
    (2, 1.0, [0.49, 0.5]),
    (2, 1.0, [0.5, 0.5000001]),
    (2, 1.0, [1.0, 0.0]),
    (2, 1.0, [-0.5, 1.5]),
    (2, 1.0, [0.0, -0.0]),
    (3, 1.0, [0.5, 0.5]),
    (2, 1.5, [0.4, 0.6]),
    (2, -0.3, [0.4, 0.6]),
    (2, 0.0, None),
    (1, 1.0, [1.0]),
    (0, 1.0, None),
    (0, 1.0, []),
    (10, 0.999, None),
]
GB_CHOOSE_POINTS = [-0.1, 0.0, 0.1, 0.25, 0.35, 0.5, 0.8, 0.9999, 1.0]
GB_NAMESPACES: list[tuple[str, float, float]] = [
    ("ns", 0.0, 0.5),
    ("ns", 0.5, 1.0),
    ("other-😀", 0.2, 0.21),
]
GB_EXPERIMENTS: list[tuple[str, int, list[float] | None, float | None, int, str | None]] = [
    ("exp", 2, None, None, 1, None),
    ("exp", 2, [0.9, 0.1], 1.0, 2, "seed"),
    ("model-ab", 3, [0.5, 0.25, 0.25], 0.6, 2, None),
    ("model-ab", 3, [0.5, 0.25, 0.25], 0.6, 1, "🧪"),
    ("exp", 2, [0.5, 0.7], 0.9, 2, ""),
]
MURMUR_DATA = [b"", b"\x00", b"a", b"ab", b"abc", b"abcd", b"abcde", bytes(range(256))]
MURMUR_SEEDS = [0, 1, UNLEASH_VARIANT_SEED, 0xFFFFFFFF]
UNLEASH_GROUPS = ["", "canary", "feature-😀", "g\\x", "Ü n"]
UNLEASH_ROLLOUTS = [0, 1, 10, 33, 50, 99, 100]
UNLEASH_WEIGHTS = [[1000], [500, 500], [333, 333, 334], [0, 1000], [1000, 0], [1, 0, 1], [3, 7]]
EPPO_TOTALS = [1, 7, 100, 10000, 0xFFFFFFFF]
EPPO_SPLITS: list[tuple[int, list[list[EppoShard]]]] = [
    (10000, [[("exp-split", [(0, 5000)])], [("exp-split", [(5000, 10000)])]]),
    (
        10000,
        [
            [("traffic", [(0, 2000)]), ("exp-split", [(0, 3333)])],
            [("traffic", [(0, 2000)]), ("exp-split", [(3333, 10000)])],
        ],
    ),
    (100, [[("s", [(10, 20), (50, 60)])], [("s", [(0, 100)]), ("t", [(0, 0)])], []]),
]
TURNOUT_SALTS = ["", "exp-1", "canary-ramp", "sålt-😀"]
CHOOSE_CASES: list[tuple[float, list[float]]] = [
    (0.0, [1.0]),
    (0.0, [0.0, 1.0]),
    (0.5, [1.0, 0.0]),
    (0.999999, [1.0, 0.0]),
    (0.8999999, [90, 10]),
    (0.9, [90, 10]),
    (0.9, [0.9, 0.1]),
    (0.7999999, [80, 20]),
    (0.8, [80, 20]),
    (0.5, [1, 1, 1, 1]),
    (0.25, [1, 1, 1, 1]),
    (_unit_from_u64(2**64 - 1), [3, 0]),
    (0.3, [0.1, 0.2, 0.3]),
    (0.5, [1e-300, 1e-300]),
    (0.9, [0.0, 5e-324, 0.0]),
    (0.9, [1.0, 1e-20]),
]


def build_golden(gb: GrowthBookOracle, unleash: UnleashOracle, eppo: EppoOracle) -> dict[str, Any]:
    """Every vector comes from an official SDK, except Turnout's own (from hashlib directly)."""
    gb_keys = KEYS + SURROGATE_KEYS
    golden: dict[str, Any] = {}

    golden["turnout_unit"] = [
        {"salt": salt, "key": key, "u": _turnout_reference(salt, key)}
        for salt in TURNOUT_SALTS
        for key in gb_keys
    ]
    golden["choose_by_ranges"] = [
        {"u": u, "weights": weights, "index": _choose_reference(u, weights)}
        for u, weights in CHOOSE_CASES
    ]
    golden["fnv1a32"] = [{"text": key, "hash": gb.core.fnv1a32(key)} for key in gb_keys]
    golden["growthbook_hash"] = [
        {"seed": seed, "value": key, "version": version, "n": gb.core.gbhash(seed, key, version)}
        for seed in ["", "exp", "seed-😀"]
        for key in gb_keys
        for version in [0, 1, 2, 3]
    ]
    golden["growthbook_bucket_ranges"] = [
        {
            "n": n,
            "coverage": coverage,
            "weights": weights,
            "ranges": [list(r) for r in gb.core.getBucketRanges(n, coverage, weights)],
        }
        for n, coverage, weights in GB_RANGE_CASES
    ]
    choose_ranges = [[(0.0, 0.25), (0.5, 0.75)], [(0.0, 0.5), (0.5, 1.0)], []]
    golden["growthbook_choose_variation"] = [
        {"n": n, "ranges": [list(r) for r in ranges], "index": gb.core.chooseVariation(n, ranges)}
        for ranges in choose_ranges
        for n in GB_CHOOSE_POINTS
    ]
    golden["growthbook_in_namespace"] = [
        {"value": key, "namespace": list(ns), "in": gb.core.inNamespace(key, ns)}
        for ns in GB_NAMESPACES
        for key in gb_keys
    ]
    golden["growthbook_run"] = [
        {
            "user": key,
            "key": exp_key,
            "variations": n,
            "weights": weights,
            "coverage": coverage,
            "hash_version": version,
            "seed": seed,
            "index": gb.run(key, exp_key, n, weights, coverage, version, seed),
        }
        for exp_key, n, weights, coverage, version, seed in GB_EXPERIMENTS
        for key in gb_keys
        if key
    ]

    mmh3 = pytest.importorskip("mmh3")
    murmur_data = MURMUR_DATA + [key.encode() for key in KEYS]
    golden["murmur3_x86_32"] = [
        {"data_hex": data.hex(), "seed": seed, "hash": mmh3.hash(data, seed, signed=False)}
        for data in murmur_data
        for seed in MURMUR_SEEDS
    ]
    golden["unleash_normalized_value"] = [
        {
            "identifier": key,
            "group_id": group,
            "normalizer": normalizer,
            "seed": seed,
            "value": unleash.utils.normalized_hash(key, group, normalizer, seed),
        }
        for key in KEYS
        for group in UNLEASH_GROUPS[:3]
        for normalizer, seed in [(100, 0), (1000, UNLEASH_VARIANT_SEED), (1, 0), (10000, 42)]
    ]
    toggles = {
        f"r{i}-{j}": (group, rollout)
        for i, group in enumerate(UNLEASH_GROUPS)
        for j, rollout in enumerate(UNLEASH_ROLLOUTS)
    }
    client = unleash.client([rollout_toggle(name, g, r) for name, (g, r) in toggles.items()])
    golden["unleash_in_rollout"] = [
        {
            "identifier": key,
            "group_id": group,
            "rollout": rollout,
            "in": unleash.enabled(client, name, key),
        }
        for name, (group, rollout) in toggles.items()
        for key in KEYS
    ]
    golden["unleash_variant_index"] = []
    for name in ["model-exp", "é😀"]:
        for weights in UNLEASH_WEIGHTS:
            client = unleash.client([variant_toggle(name, weights)])
            golden["unleash_variant_index"] += [
                {
                    "identifier": key,
                    "group_id": name,
                    "weights": weights,
                    "index": unleash.variant(client, name, key),
                }
                for key in KEYS
            ]

    golden["eppo_shard"] = [
        {
            "text": f"{salt}-{key}",
            "total_shards": total,
            "shard": eppo.shard_value(salt, key, total),
        }
        for salt in ["exp-split", "🧪"]
        for key in KEYS
        for total in EPPO_TOTALS
    ]
    golden["eppo_choose_split"] = []
    for total, splits in EPPO_SPLITS:
        eppo.load(total, splits)
        golden["eppo_choose_split"] += [
            {
                "subject": key,
                "total_shards": total,
                "splits": splits,
                "index": eppo.choose(key),
            }
            for key in KEYS
        ]
    return golden


def _turnout_reference(salt: str, key: str) -> float:
    digest = hashlib.sha256(salt.encode() + b"\x00" + key.encode("utf-8", "surrogatepass"))
    return min(int(digest.hexdigest()[:16], 16) / 2**64, math.nextafter(1.0, 0.0))


def _choose_reference(u: float, weights: list[float]) -> int:
    """A linear scan; a position rounded up to a tiny total goes to the last non-empty range."""
    total = 0.0
    for w in weights:
        total += w
    position, start, last_non_empty = min(u * total, total), 0.0, -1
    for index, weight in enumerate(weights):
        end = start + weight
        if start < end:
            last_non_empty = index
        if position < end:
            return index
        start = end
    return last_non_empty


@cache
def golden_vectors() -> dict[str, Any]:
    return dict(json.loads(GOLDEN_PATH.read_text(encoding="ascii")))


def _tuples(pairs: list[list[Any]]) -> list[tuple[Any, Any]]:
    return [(a, b) for a, b in pairs]


def _splits(raw: list[list[list[Any]]]) -> list[list[EppoShard]]:
    return [[(salt, _tuples(ranges)) for salt, ranges in split] for split in raw]


GOLDEN_CHECKS: dict[str, Callable[[dict[str, Any]], tuple[object, object]]] = {
    "turnout_unit": lambda v: (turnout_unit(v["salt"], v["key"]), v["u"]),
    "choose_by_ranges": lambda v: (choose_by_ranges(v["u"], v["weights"]), v["index"]),
    "fnv1a32": lambda v: (fnv1a32(v["text"]), v["hash"]),
    "growthbook_hash": lambda v: (growthbook_hash(v["seed"], v["value"], v["version"]), v["n"]),
    "growthbook_bucket_ranges": lambda v: (
        growthbook_bucket_ranges(v["n"], v["coverage"], v["weights"]),
        _tuples(v["ranges"]),
    ),
    "growthbook_choose_variation": lambda v: (
        growthbook_choose_variation(v["n"], _tuples(v["ranges"])),
        v["index"],
    ),
    "growthbook_in_namespace": lambda v: (
        growthbook_in_namespace(v["value"], tuple(v["namespace"])),
        v["in"],
    ),
    "growthbook_run": lambda v: (
        growthbook_choose_variation(
            growthbook_hash(v["seed"] or v["key"], v["user"], v["hash_version"]) or 0.0,
            growthbook_bucket_ranges(
                v["variations"], 1.0 if v["coverage"] is None else v["coverage"], v["weights"]
            ),
        ),
        v["index"],
    ),
    "murmur3_x86_32": lambda v: (
        murmur3_x86_32(bytes.fromhex(v["data_hex"]), v["seed"]),
        v["hash"],
    ),
    "unleash_normalized_value": lambda v: (
        unleash_normalized_value(v["identifier"], v["group_id"], v["normalizer"], v["seed"]),
        v["value"],
    ),
    "unleash_in_rollout": lambda v: (
        unleash_in_rollout(v["identifier"], v["group_id"], v["rollout"]),
        v["in"],
    ),
    "unleash_variant_index": lambda v: (
        unleash_variant_index(v["identifier"], v["group_id"], v["weights"]),
        v["index"],
    ),
    "eppo_shard": lambda v: (eppo_shard(v["text"], v["total_shards"]), v["shard"]),
    "eppo_choose_split": lambda v: (
        eppo_choose_split(v["subject"], _splits(v["splits"]), v["total_shards"]),
        v["index"],
    ),
}


@pytest.mark.parametrize("section", sorted(GOLDEN_CHECKS))
def test_golden_vectors(section: str) -> None:
    vectors = golden_vectors()[section]
    assert len(vectors) >= 10
    mismatches = []
    for vector in vectors:
        got, expected = GOLDEN_CHECKS[section](vector)
        if got != expected:
            mismatches.append((vector, got))
    assert not mismatches, mismatches[:5]


def test_golden_file_covers_every_check_and_unicode_edge() -> None:
    golden = golden_vectors()
    assert set(golden) == set(GOLDEN_CHECKS)
    texts = {v["text"] for v in golden["fnv1a32"]}
    assert {"", "😀", "\ud800"} <= texts


def test_golden_file_matches_installed_sdks(
    growthbook: GrowthBookOracle, unleash: UnleashOracle, eppo: EppoOracle
) -> None:
    rebuilt = json.loads(json.dumps(build_golden(growthbook, unleash, eppo)))  # tuples -> lists
    assert rebuilt == golden_vectors()


# ---------------------------------------------------------------------------------------------
# Bulk: thousands of seeded random keys per vendor, cheap enough to run without Hypothesis
# ---------------------------------------------------------------------------------------------

_CODE_POINT_POOLS = [
    (0x20, 0x7E),
    (0x00, 0x1F),
    (0xA0, 0xD7FF),
    (0xE000, 0xFFFF),
    (0x10000, 0x10FFFF),
]


def random_keys(count: int, *, surrogates: bool) -> list[str]:
    rng = random.Random(20261125)
    pools = _CODE_POINT_POOLS + ([(0xD800, 0xDFFF)] if surrogates else [])
    weights = [50, 5, 20, 10, 15] + ([5] if surrogates else [])
    keys = []
    for _ in range(count):
        spans = rng.choices(pools, weights, k=rng.randrange(0, 20))
        keys.append("".join(chr(rng.randint(low, high)) for low, high in spans))
    return keys


def test_bulk_keys_match_growthbook(growthbook: GrowthBookOracle) -> None:
    for key in random_keys(5000, surrogates=True):
        assert fnv1a32(key) == growthbook.core.fnv1a32(key), key
        for version in (1, 2):
            assert growthbook_hash("bulk", key, version) == growthbook.core.gbhash(
                "bulk", key, version
            ), key
        if key:
            position = growthbook_hash("bulk-exp", key, 2) or 0.0
            ranges = growthbook_bucket_ranges(3, 0.8, [0.5, 0.3, 0.2])
            expected = growthbook.run(key, "bulk-exp", 3, [0.5, 0.3, 0.2], 0.8, 2, None)
            assert growthbook_choose_variation(position, ranges) == expected, key


def test_bulk_keys_match_unleash(unleash: UnleashOracle) -> None:
    mmh3 = pytest.importorskip("mmh3")
    weights = [200, 0, 300, 500]
    client = unleash.client(
        [rollout_toggle("bulk-canary", "bulk-group", 37), variant_toggle("bulk-ab", weights)]
    )
    for key in random_keys(5000, surrogates=False):
        data = key.encode()
        assert murmur3_x86_32(data, UNLEASH_VARIANT_SEED) == mmh3.hash(
            data, UNLEASH_VARIANT_SEED, signed=False
        )
        expected_in = unleash.enabled(client, "bulk-canary", key)
        assert unleash_in_rollout(key, "bulk-group", 37) == expected_in, key
        expected_variant = unleash.variant(client, "bulk-ab", key)
        assert unleash_variant_index(key, "bulk-ab", weights) == expected_variant, key


def test_bulk_keys_match_eppo(eppo: EppoOracle) -> None:
    splits: list[list[EppoShard]] = [
        [("bulk-traffic", [(0, 8000)]), ("bulk-split", [(0, 3000)])],
        [("bulk-traffic", [(0, 8000)]), ("bulk-split", [(3000, 10000)])],
    ]
    eppo.load(10000, splits)
    for key in random_keys(5000, surrogates=False):
        assert eppo_choose_split(key, splits, 10000) == eppo.choose(key), key


# ---------------------------------------------------------------------------------------------
# Turnout
# ---------------------------------------------------------------------------------------------


@FUZZ
@given(salt=st.text(max_size=24), key=ANY_TEXT)
def test_turnout_unit_is_a_deterministic_unit_interval_position(salt: str, key: str) -> None:
    u = turnout_unit(salt, key)
    assert 0.0 <= u < 1.0
    assert turnout_unit(salt, key) == u
    assert u == _turnout_reference(salt, key)


def test_turnout_unit_never_reaches_one() -> None:
    assert _unit_from_u64(0) == 0.0
    assert _unit_from_u64(2**63) == 0.5
    for top in (2**64 - 1, 2**64 - 2**10, 2**64 - 2**11 + 1):
        assert _unit_from_u64(top) == math.nextafter(1.0, 0.0)


def test_turnout_unit_depends_on_the_salt() -> None:
    keys = [f"user-{i}" for i in range(1000)]
    same = sum(
        choose_by_ranges(turnout_unit("a", k), [1, 1])
        == choose_by_ranges(turnout_unit("b", k), [1, 1])
        for k in keys
    )
    assert 400 < same < 600


def test_turnout_unit_is_roughly_uniform() -> None:
    bins = [0] * 10
    for i in range(20000):
        bins[int(turnout_unit("uniformity", f"user-{i}") * 10)] += 1
    chi_square = sum((count - 2000) ** 2 / 2000 for count in bins)
    assert chi_square < 30, bins  # p < 0.001 for 9 degrees of freedom


def test_turnout_unit_is_identical_across_hash_seeds() -> None:
    script = (
        "import json\n"
        "from router.hashing import turnout_unit\n"
        f"keys = [f'user-{{i}}' for i in range(190)] + {KEYS[:10]!a}\n"
        "print(json.dumps([hash('turnout'), [turnout_unit('sticky', k) for k in keys]]))\n"
    )
    runs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO_ROOT)}
        done = subprocess.run(
            [sys.executable, "-c", script],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        runs.append(json.loads(done.stdout))
    (hash_1, units_1), (hash_2, units_2) = runs
    assert hash_1 != hash_2, "the two interpreters did not use different hash seeds"
    assert len(units_1) == 200
    assert units_1 == units_2
    assert units_1[0] == turnout_unit("sticky", "user-0")


WEIGHTS = st.lists(
    st.one_of(st.just(0.0), st.floats(0.0, 1e6), st.integers(0, 1000).map(float), st.just(5e-324)),
    min_size=1,
    max_size=8,
).filter(lambda ws: sum(ws) > 0)


@FUZZ
@given(u=st.floats(0.0, 1.0, exclude_max=True), weights=WEIGHTS)
def test_choose_by_ranges_picks_the_range_holding_the_scaled_position(
    u: float, weights: list[float]
) -> None:
    index = choose_by_ranges(u, weights)
    assert weights[index] > 0
    assert index == _choose_reference(u, weights)


def test_choose_by_ranges_skips_zero_weights_and_accepts_any_total() -> None:
    assert choose_by_ranges(0.0, [0, 0, 5]) == 2
    assert choose_by_ranges(0.5, [3, 3]) == choose_by_ranges(0.5, [0.5, 0.5]) == 1
    assert choose_by_ranges(_unit_from_u64(2**64 - 1), [1, 2, 0]) == 1


@pytest.mark.parametrize(
    ("u", "weights"),
    [
        (1.0, [1]),
        (-0.1, [1]),
        (math.nan, [1]),
        (0.5, []),
        (0.5, [0, 0]),
        (0.5, [1, -1]),
        (0.5, [1, math.nan]),
        (0.5, [1, math.inf]),
        (0.5, [1e308, 1e308]),
    ],
)
def test_choose_by_ranges_rejects_bad_input(u: float, weights: list[float]) -> None:
    with pytest.raises(ValueError, match="must"):
        choose_by_ranges(u, weights)


def test_canary_growth_only_moves_keys_from_control_to_canary() -> None:
    moved = 0
    for i in range(10000):
        u = turnout_unit("canary", f"user-{i}")
        before, after = choose_by_ranges(u, [90, 10]), choose_by_ranges(u, [80, 20])
        assert after >= before, f"user-{i} moved from canary back to control"
        moved += after != before
    assert 850 < moved < 1150


@FUZZ
@given(key=TEXT, low=st.integers(0, 100), high=st.integers(0, 100))
def test_canary_ramp_is_monotone_for_any_percentages(key: str, low: int, high: int) -> None:
    low, high = sorted((low, high))
    assume(low < 100)
    u = turnout_unit("ramp", key)
    assert choose_by_ranges(u, [100 - low, low]) <= choose_by_ranges(u, [100 - high, high])


# ---------------------------------------------------------------------------------------------
# GrowthBook
# ---------------------------------------------------------------------------------------------


def test_fnv1a32_hashes_utf16_code_units() -> None:
    assert fnv1a32("") == 0x811C9DC5
    assert fnv1a32("a") == 0xE40C292C  # the published FNV-1a 32 vector
    assert fnv1a32("😀") == fnv1a32("\ud83d\ude00")
    assert fnv1a32("é") != fnv1a32("é".encode().decode("latin-1"))


@FUZZ_WIDE
@given(text=ANY_TEXT)
def test_fnv1a32_matches_growthbook(growthbook: GrowthBookOracle, text: str) -> None:
    assert fnv1a32(text) == growthbook.core.fnv1a32(text)


@FUZZ_WIDE
@given(seed=ANY_TEXT, value=ANY_TEXT, version=st.sampled_from([-1, 0, 1, 2, 3]))
def test_growthbook_hash_matches_growthbook(
    growthbook: GrowthBookOracle, seed: str, value: str, version: int
) -> None:
    assert growthbook_hash(seed, value, version) == growthbook.core.gbhash(seed, value, version)


def _scaled_to_one(ws: list[float], scale: float) -> list[float]:
    total = sum(ws)
    return [w / total * scale for w in ws]


GB_WEIGHTS = st.one_of(
    st.none(),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=7),
    st.lists(st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0, -0.5, 1.5]), max_size=5),
    st.lists(st.booleans(), max_size=4),
    st.builds(
        _scaled_to_one,
        st.lists(st.floats(0.001, 10.0), min_size=1, max_size=7),
        st.floats(0.985, 1.015),
    ),
)
COVERAGE = st.one_of(st.floats(-2.0, 3.0), st.sampled_from([0.0, 1.0, math.inf, -math.inf, 0.9999]))


@FUZZ
@given(n=st.integers(-1, 7), coverage=COVERAGE, weights=GB_WEIGHTS, fit=st.booleans())
def test_growthbook_bucket_ranges_match_growthbook(
    growthbook: GrowthBookOracle, n: int, coverage: float, weights: list[float] | None, fit: bool
) -> None:
    if fit and weights and n >= 0:
        weights = (weights * n)[:n]  # most generated lists have the wrong length otherwise
    expected = growthbook.core.getBucketRanges(n, coverage, weights)
    assert growthbook_bucket_ranges(n, coverage, weights) == expected


@FUZZ_SLOW
@given(
    n=st.floats(-0.5, 1.5),
    ranges=st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), max_size=6),
)
def test_growthbook_choose_variation_matches_growthbook(
    growthbook: GrowthBookOracle, n: float, ranges: list[tuple[float, float]]
) -> None:
    assert growthbook_choose_variation(n, ranges) == growthbook.core.chooseVariation(n, ranges)


@FUZZ_SLOW
@given(value=ANY_TEXT, namespace_id=ANY_TEXT, bounds=st.tuples(st.floats(0, 1), st.floats(0, 1)))
def test_growthbook_in_namespace_matches_growthbook(
    growthbook: GrowthBookOracle, value: str, namespace_id: str, bounds: tuple[float, float]
) -> None:
    namespace = (namespace_id, *sorted(bounds))
    assert growthbook_in_namespace(value, namespace) == growthbook.core.inNamespace(
        value, namespace
    )


@FUZZ
@given(
    user=ANY_TEXT.filter(bool),
    key=TEXT.filter(bool),
    n=st.integers(2, 5),
    weights=GB_WEIGHTS,
    coverage=st.one_of(st.none(), st.floats(0.0, 1.0)),
    hash_version=st.sampled_from([1, 2]),
    seed=st.one_of(st.none(), TEXT),
)
def test_growthbook_assignment_matches_growthbook_run(
    growthbook: GrowthBookOracle,
    user: str,
    key: str,
    n: int,
    weights: list[float] | None,
    coverage: float | None,
    hash_version: int,
    seed: str | None,
) -> None:
    position = growthbook_hash(seed or key, user, hash_version)
    assert position is not None
    ranges = growthbook_bucket_ranges(n, 1.0 if coverage is None else coverage, weights)
    expected = growthbook.run(user, key, n, weights, coverage, hash_version, seed)
    assert growthbook_choose_variation(position, ranges) == expected


# ---------------------------------------------------------------------------------------------
# Unleash
# ---------------------------------------------------------------------------------------------


@FUZZ_WIDE
@given(data=st.binary(max_size=64), seed=st.integers(0, 0xFFFFFFFF))
def test_murmur3_matches_mmh3(data: bytes, seed: int) -> None:
    mmh3 = pytest.importorskip("mmh3")
    assert murmur3_x86_32(data, seed) == mmh3.hash(data, seed, signed=False)


def test_murmur3_rejects_seeds_outside_32_bits() -> None:
    with pytest.raises(ValueError, match="seed"):
        murmur3_x86_32(b"x", -1)
    with pytest.raises(ValueError, match="seed"):
        murmur3_x86_32(b"x", 2**32)


@FUZZ
@given(
    identifier=TEXT,
    group_id=TEXT,
    normalizer=st.one_of(st.sampled_from([1, 100, 1000, 10000]), st.integers(1, 2**32)),
    seed=st.one_of(st.sampled_from([0, UNLEASH_VARIANT_SEED]), st.integers(0, 0xFFFFFFFF)),
)
def test_unleash_normalized_value_matches_unleash_client(
    unleash: UnleashOracle, identifier: str, group_id: str, normalizer: int, seed: int
) -> None:
    # Never feed mmh3 a lone surrogate: mmh3.hash crashes the interpreter on one.
    expected = unleash.utils.normalized_hash(identifier, group_id, normalizer, seed)
    assert unleash_normalized_value(identifier, group_id, normalizer, seed) == expected


# Unleash's engine embeds groupId in a quoted rule string: '"' or a trailing '\' breaks it.
GROUP_IDS = st.one_of(
    st.sampled_from(UNLEASH_GROUPS),
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters='"\\'), max_size=16),
)


@FUZZ_SLOW
@given(user=TEXT, group_id=GROUP_IDS, rollout=st.integers(0, 100))
def test_unleash_rollout_matches_unleash_client(
    unleash: UnleashOracle, user: str, group_id: str, rollout: int
) -> None:
    client = unleash.client([rollout_toggle("canary", group_id, rollout)])
    expected = unleash.enabled(client, "canary", user)
    assert unleash_in_rollout(user, group_id, rollout) == expected


# A NUL in a toggle name is cut off on the way into the engine (a C string): unknown toggle.
TOGGLE_NAMES = st.one_of(
    st.sampled_from(["model-exp", "é😀"]),
    st.text(
        st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1, max_size=16
    ),
)


@FUZZ_SLOW
@given(
    user=TEXT,
    toggle=TOGGLE_NAMES,
    weights=st.lists(
        st.one_of(st.just(0), st.integers(0, 1000), st.integers(0, 100_000)),
        min_size=1,
        max_size=6,
    ).filter(lambda ws: sum(ws) > 0),
)
def test_unleash_variant_matches_unleash_client(
    unleash: UnleashOracle, user: str, toggle: str, weights: list[int]
) -> None:
    client = unleash.client([variant_toggle(toggle, weights)])
    expected = unleash.variant(client, toggle, user)
    assert unleash_variant_index(user, toggle, weights) == expected


def test_unleash_edges() -> None:
    assert not unleash_in_rollout("anyone", "g", 0)
    assert all(unleash_in_rollout(f"user-{i}", "g", 100) for i in range(500))
    assert unleash_variant_index("user", "toggle", []) is None
    assert unleash_variant_index("user", "toggle", [0, 0]) is None
    with pytest.raises(ValueError, match="non-negative"):
        unleash_variant_index("user", "toggle", [10, -1])
    with pytest.raises(ValueError, match="normalizer"):
        unleash_normalized_value("user", "g", 0)
    with pytest.raises(UnicodeEncodeError):
        unleash_normalized_value("\ud800", "g")


# ---------------------------------------------------------------------------------------------
# Eppo
# ---------------------------------------------------------------------------------------------

TOTAL_SHARDS = st.one_of(st.sampled_from([1, 100, 10000]), st.integers(1, 0xFFFFFFFF))


@FUZZ_WIDE
@given(text=TEXT, total_shards=TOTAL_SHARDS)
def test_eppo_shard_is_the_md5_prefix_modulo_total(text: str, total_shards: int) -> None:
    prefix = int(hashlib.md5(text.encode()).hexdigest()[:8], 16)
    assert eppo_shard(text, total_shards) == prefix % total_shards


@FUZZ
@given(salt=TEXT, subject=TEXT, total_shards=TOTAL_SHARDS)
def test_eppo_shard_matches_eppo_client(
    eppo: EppoOracle, salt: str, subject: str, total_shards: int
) -> None:
    expected = eppo.shard_value(salt, subject, total_shards)
    assert eppo_shard(f"{salt}-{subject}", total_shards) == expected


@st.composite
def eppo_allocations(draw: st.DrawFn) -> tuple[int, list[list[EppoShard]]]:
    total = draw(st.sampled_from([1, 10, 100, 10000]))
    bound = st.integers(0, total + 1)
    salts = st.sampled_from(["exp", "traffic", "🧪", "x-y"])
    shard = st.tuples(salts, st.lists(st.tuples(bound, bound), max_size=3))
    splits = draw(st.lists(st.lists(shard, max_size=3), min_size=1, max_size=4))
    return total, splits


@FUZZ_SLOW
@given(subject=TEXT, allocation=eppo_allocations())
def test_eppo_split_choice_matches_eppo_client(
    eppo: EppoOracle, subject: str, allocation: tuple[int, list[list[EppoShard]]]
) -> None:
    total, splits = allocation
    eppo.load(total, splits)
    assert eppo_choose_split(subject, splits, total) == eppo.choose(subject)


def test_eppo_edges() -> None:
    assert eppo_choose_split("anyone", [[]], 10) == 0
    assert eppo_choose_split("anyone", [], 10) == -1
    with pytest.raises(ValueError, match="total_shards"):
        eppo_shard("x", 0)
    with pytest.raises(UnicodeEncodeError):
        eppo_shard("\ud800", 10)


if __name__ == "__main__":
    if sys.argv[1:] != ["--regenerate"]:
        sys.exit(f"usage: python {sys.argv[0]} --regenerate")
    logging.disable(logging.WARNING)
    golden = build_golden(GrowthBookOracle(), UnleashOracle(), EppoOracle())
    # One vector per line: readable diffs. ASCII escapes keep lone surrogates representable.
    sections = [
        f"{json.dumps(name)}: [\n"
        + ",\n".join(json.dumps(v, ensure_ascii=True, allow_nan=False) for v in vectors)
        + "\n]"
        for name, vectors in golden.items()
    ]
    GOLDEN_PATH.write_text("{\n" + ",\n".join(sections) + "\n}\n", encoding="ascii")
    print(f"wrote {GOLDEN_PATH}")
