"""``turnout validate --probe``: one sample input through each variant's adapter, for real.

A wrong field path, a model name the server does not know or a server that is down shows up here,
before traffic flows: each variant's normalized label and score, or why there is none.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from router.config.experiments import Experiment
from router.core.errors import TurnoutError
from router.upstream.breaker import CircuitBreaker
from router.upstream.failures import UpstreamFailure
from router.upstream.health import check_ready
from router.upstream.pool import UpstreamPool, UpstreamTimeouts


@dataclass(frozen=True)
class Probed:
    variant: str
    protocol: str
    version: str
    ready: bool | None
    label: object | None = None
    score: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


async def probe_experiment(
    experiment: Experiment, limit_seconds: float, max_chars: int
) -> list[Probed]:
    """Check readiness, then send ``sample_input`` to every variant (concurrently)."""
    assert experiment.sample_input is not None
    payload = experiment.input.payload(experiment.sample_input, max_chars)
    pool = UpstreamPool(
        UpstreamTimeouts(limit_seconds, limit_seconds, 4), lambda: CircuitBreaker(1000, 1.0)
    )

    async def one(name: str) -> Probed:
        variant = experiment.variants[name]
        upstream = pool.get(variant.url, variant.protocol, variant.settings())
        base = Probed(name, variant.protocol, experiment.version_of(name), None)
        ready = await check_ready(upstream, limit_seconds)
        base = Probed(name, variant.protocol, base.version, ready)
        try:
            answer = await upstream.predict(payload, f"probe-{experiment.name}-{name}")
        except UpstreamFailure as failure:
            return _failed(base, failure.reason)
        if answer.decoded is None:
            return _failed(base, f"refused the sample input ({answer.status})")
        return Probed(
            name, base.protocol, base.version, ready, answer.decoded.label, answer.decoded.score
        )

    try:
        return list(await asyncio.gather(*(one(name) for name in experiment.variants)))
    finally:
        await pool.close()


def _failed(base: Probed, reason: str) -> Probed:
    return Probed(base.variant, base.protocol, base.version, base.ready, error=reason)


def probe(experiment: Experiment, timeout: float, max_chars: int) -> list[Probed]:
    try:
        return asyncio.run(probe_experiment(experiment, timeout, max_chars))
    except TurnoutError as exc:  # the sample no longer fits the input (checked at load)
        return [Probed("-", "-", "-", None, error=exc.detail)]
