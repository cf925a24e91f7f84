"""Shadow sampling and comparison logic (pure parts)."""

from __future__ import annotations

import random

from router.config.experiments import ShadowConfig
from router.gateway.mirror import mirrored
from router.recording.events import ShadowComparison


def test_sampling_is_sticky_by_key_and_matches_the_rate() -> None:
    config = ShadowConfig(targets=["v3"], sample=0.3)
    rng = random.Random(0)
    first = [mirrored(config, "exp", f"user-{i}", rng) for i in range(10_000)]
    again = [mirrored(config, "exp", f"user-{i}", random.Random(5)) for i in range(10_000)]
    assert first == again
    assert 0.27 < sum(first) / len(first) < 0.33


def test_sampling_without_key_uses_the_injected_rng() -> None:
    config = ShadowConfig(targets=["v3"], sample=0.5)
    runs = [[mirrored(config, "exp", None, random.Random(3)) for _ in range(1)] for _ in range(2)]
    assert runs[0] == runs[1]
    rng = random.Random(1)
    share = sum(mirrored(config, "exp", None, rng) for _ in range(4000)) / 4000
    assert 0.46 < share < 0.54


def test_sample_edges() -> None:
    rng = random.Random(0)
    assert all(
        mirrored(ShadowConfig(targets=["a"], sample=1.0), "e", f"k{i}", rng) for i in range(50)
    )
    assert not any(
        mirrored(ShadowConfig(targets=["a"], sample=0.0), "e", None, rng) for _ in range(50)
    )


def test_comparison_properties() -> None:
    base = ShadowComparison("r", "e", "c", "v1", "v3", 1, 0.8, 2.0, 1, 0.6, 3.0)
    assert base.compared
    assert base.agree
    assert abs(base.score_delta - (-0.2)) < 1e-12  # type: ignore[operator]
    failed = ShadowComparison("r", "e", "c", "v1", "v3", 1, 0.8, 2.0, error="error")
    assert not failed.compared
    assert not failed.agree
    assert failed.score_delta is None
