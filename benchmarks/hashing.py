"""Assignments per second for each hash scheme in router.hashing, in-process.

    python benchmarks/hashing.py [--keys N] [--repeat R]

Each row assigns N distinct user keys and keeps the best of R rounds. Under each scheme come the
official SDK's equivalents that run offline: its bare hashing functions where it exposes them, and
its public client API (which adds context handling and, for Unleash and Eppo, a native engine).
"ratio" is our rate over the SDK's: above 1 means router.hashing is faster. A missing SDK row
means that SDK is not importable.

A second table runs the same splits through the policy path the gateway takes
(``WeightedPolicy.choose`` of a canary built from an experiment with ``sticky: {hash: ...}``);
its "ratio" is the policy's rate over the bare hashing row above it (the cost of the Decision,
the dispatch and, for Unleash and Eppo, the key-encoding guard).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from router.config.experiments import Experiment
from router.hashing import (
    choose_by_ranges,
    eppo_choose_split,
    growthbook_bucket_ranges,
    growthbook_choose_variation,
    growthbook_hash,
    turnout_unit,
    unleash_in_rollout,
    unleash_variant_index,
)
from router.routing.policies import build_policy
from router.routing.policies.base import EMPTY_VIEW, Policy

Assign = Callable[[str], object]
Equivalents = dict[str, list[tuple[str, Assign]]]

GB_WEIGHTS = [0.9, 0.1]
UNLEASH_WEIGHTS = [900, 100]
EPPO_SPLITS = [
    [("exp-split", [(0, 9000)])],
    [("exp-split", [(9000, 10000)])],
]


def rate(assign: Assign, keys: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for key in keys:
            assign(key)
        best = min(best, time.perf_counter() - start)
    return len(keys) / best


def ours() -> dict[str, Assign]:
    ranges = growthbook_bucket_ranges(2, 1.0, GB_WEIGHTS)
    return {
        "turnout": lambda key: choose_by_ranges(turnout_unit("bench", key), [90, 10]),
        "growthbook v1": lambda key: growthbook_choose_variation(
            growthbook_hash("bench", key, 1) or 0.0, ranges
        ),
        "growthbook v2": lambda key: growthbook_choose_variation(
            growthbook_hash("bench", key, 2) or 0.0, ranges
        ),
        "unleash rollout": lambda key: unleash_in_rollout(key, "bench", 10),
        "unleash variant": lambda key: unleash_variant_index(key, "bench", UNLEASH_WEIGHTS),
        "eppo": lambda key: eppo_choose_split(key, EPPO_SPLITS, 10000),
    }


# Policy-level equivalents of the rows in ours(): control v1 at 90%, v2 at 10%.
POLICY_STICKY: dict[str, tuple[str, dict[str, Any]]] = {
    "turnout": ("turnout", {"hash": "turnout", "salt": "bench"}),
    "growthbook v1": ("growthbook v1", {"hash": "growthbook", "seed": "bench", "hash_version": 1}),
    "growthbook v2": ("growthbook v2", {"hash": "growthbook", "seed": "bench", "hash_version": 2}),
    "unleash": ("unleash rollout", {"hash": "unleash", "group_id": "bench"}),
    "eppo": ("eppo", {"hash": "eppo", "salt": "exp-split"}),
}


def policies() -> dict[str, Assign]:
    assigners: dict[str, Assign] = {}
    for name, (_, sticky) in POLICY_STICKY.items():
        experiment = Experiment.model_validate(
            {
                "name": "bench",
                "model": "m",
                "control": "v1",
                "variants": {
                    "v1": {"url": "http://127.0.0.1:8101"},
                    "v2": {"url": "http://127.0.0.1:8102"},
                },
                "policy": {"kind": "canary", "weights": {"v1": 90, "v2": 10}, "sticky": sticky},
            }
        )
        assigners[name] = _choose(build_policy(experiment))
    return assigners


def _choose(policy: Policy) -> Assign:
    rng = random.Random(0)
    return lambda key: policy.choose(key, rng, EMPTY_VIEW)


def growthbook_sdk() -> Equivalents:
    try:
        from growthbook import Experiment, GrowthBook
        from growthbook.core import chooseVariation, gbhash, getBucketRanges
    except ImportError:
        return {}

    def run(key: str, version: int) -> object:
        experiment = Experiment(
            key="bench", variations=[0, 1], weights=GB_WEIGHTS, hashVersion=version
        )
        return GrowthBook(attributes={"id": key}).run(experiment).variationId

    ranges = getBucketRanges(2, 1.0, GB_WEIGHTS)
    return {
        "growthbook v1": [
            (
                "growthbook.core gbhash+chooseVariation",
                lambda k: chooseVariation(gbhash("bench", k, 1), ranges),
            ),
            ("GrowthBook.run", lambda key: run(key, 1)),
        ],
        "growthbook v2": [
            (
                "growthbook.core gbhash+chooseVariation",
                lambda k: chooseVariation(gbhash("bench", k, 2), ranges),
            ),
            ("GrowthBook.run", lambda key: run(key, 2)),
        ],
    }


def unleash_sdk() -> Equivalents:
    try:
        from UnleashClient import UnleashClient
        from UnleashClient.cache import BaseCache
        from UnleashClient.constants import FEATURES_URL
        from UnleashClient.utils import InstanceAllowType, normalized_hash
    except ImportError:
        return {}

    rollout = {"rollout": "10", "stickiness": "default", "groupId": "bench"}
    variants = [
        {"name": f"v{i}", "weight": w, "weightType": "variable", "stickiness": "default"}
        for i, w in enumerate(UNLEASH_WEIGHTS)
    ]
    features = [
        {
            "name": "canary",
            "enabled": True,
            "strategies": [{"name": "flexibleRollout", "parameters": rollout}],
        },
        {
            "name": "bench",
            "enabled": True,
            "strategies": [{"name": "default", "parameters": {}}],
            "variants": variants,
        },
    ]

    class MemoryCache(BaseCache):
        def __init__(self) -> None:
            self.data: dict[str, Any] = {
                FEATURES_URL: json.dumps({"version": 2, "features": features})
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

    client = UnleashClient(
        "http://127.0.0.1:9/api",
        "turnout-bench",
        disable_metrics=True,
        disable_registration=True,
        cache=MemoryCache(),
        multiple_instance_mode=InstanceAllowType.SILENTLY_ALLOW,
    )
    return {
        "unleash rollout": [
            (
                "UnleashClient.utils.normalized_hash (mmh3)",
                lambda k: normalized_hash(k, "bench") <= 10,
            ),
            ("UnleashClient.is_enabled", lambda k: client.is_enabled("canary", {"userId": k})),
        ],
        "unleash variant": [
            ("UnleashClient.get_variant", lambda k: client.get_variant("bench", {"userId": k})),
        ],
    }


def eppo_sdk() -> Equivalents:
    try:
        import eppo_client
    except ImportError:
        return {}

    class NullLogger(eppo_client.AssignmentLogger):
        def log_assignment(self, event: dict[str, Any]) -> None:
            pass

    flag = {
        "key": "bench",
        "enabled": True,
        "variationType": "STRING",
        "totalShards": 10000,
        "variations": {name: {"key": name, "value": name} for name in ("control", "treatment")},
        "allocations": [
            {
                "key": "allocation",
                "doLog": False,
                "splits": [
                    {
                        "variationKey": name,
                        "shards": [
                            {"salt": salt, "ranges": [{"start": a, "end": b} for a, b in ranges]}
                            for salt, ranges in split
                        ],
                    }
                    for name, split in zip(("control", "treatment"), EPPO_SPLITS, strict=True)
                ],
            }
        ],
    }
    ufc = {
        "createdAt": "2024-01-01T00:00:00Z",
        "format": "SERVER",
        "environment": {"name": "bench"},
        "flags": {"bench": flag},
    }
    client = eppo_client.init(
        eppo_client.ClientConfig(
            api_key="turnout-bench",
            base_url="http://127.0.0.1:9/api",
            assignment_logger=NullLogger(),
            initial_configuration=eppo_client.Configuration(
                flags_configuration=json.dumps(ufc).encode()
            ),
            poll_interval_seconds=None,
        )
    )
    return {
        "eppo": [
            (
                "EppoClient.get_string_assignment",
                lambda key: client.get_string_assignment("bench", key, {}, "control"),
            )
        ]
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keys", type=int, default=20_000, help="distinct keys per round")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best one counts")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    keys = [f"user-{i}" for i in range(args.keys)]

    sdk = {**growthbook_sdk(), **unleash_sdk(), **eppo_sdk()}
    print(f"{args.keys} keys, best of {args.repeat} rounds, assignments per second")
    print(f"{'scheme / SDK equivalent':<46} {'assign/s':>12} {'ratio':>8}")
    bare: dict[str, float] = {}
    for name, assign in ours().items():
        mine = bare[name] = rate(assign, keys, args.repeat)
        print(f"{name + ' (router.hashing)':<46} {mine:>12,.0f}")
        for label, equivalent in sdk.get(name, []):
            theirs = rate(equivalent, keys, args.repeat)
            print(f"{'  ' + label:<46} {theirs:>12,.0f} {mine / theirs:>7.2f}x")
    print()
    print(f"{'policy level: WeightedPolicy.choose, canary':<46} {'assign/s':>12} {'ratio':>8}")
    for name, assign in policies().items():
        mine = rate(assign, keys, args.repeat)
        row = POLICY_STICKY[name][0]
        print(f"{'hash: ' + name:<46} {mine:>12,.0f} {mine / bare[row]:>7.2f}x")


if __name__ == "__main__":
    main()
