"""Flags before policy: kill switch, then forced variant flag, then an authorised header."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from router.config.experiments import Experiment
from router.core.errors import InvalidInput, echo
from router.flags.values import ExperimentFlags
from router.routing.policies.base import Decision, Policy, RoutingView

KILL_SWITCH = "kill_switch"
FORCED_FLAG = "forced_variant"
HEADER = "header"


@dataclass(frozen=True, slots=True)
class Steering:
    decision: Decision
    forced_by: str | None
    """What overrode the policy: ``kill_switch``, ``forced_variant``, ``header``; None if not."""
    ignored: bool
    """An ``X-Turnout-Variant`` header was ignored for lack of a valid admin token."""


def resolve_variant(experiment: Experiment, name: str) -> str:
    """A variant by its name, or by the model version it serves when that is unambiguous."""
    if name in experiment.variants:
        return name
    matches = [v for v in experiment.variants if experiment.version_of(v) == name]
    if len(matches) == 1:
        return matches[0]
    raise InvalidInput(
        f"{echo(name)} is not a variant of {experiment.name} "
        f"(variants: {', '.join(sorted(experiment.variants))})",
        code="unknown_variant",
    )


def steer(
    experiment: Experiment,
    policy: Policy,
    flags: ExperimentFlags,
    key: str | None,
    rng: random.Random,
    header: str | None,
    authorized: Callable[[], bool],
    view: RoutingView | None = None,
) -> Steering:
    """Choose the variant; ``authorized`` is asked only when a header asks to force one.

    ``view`` is what the policy sees (a bandit's cached posteriors); by default the flags.
    """
    if flags.kill_switch:
        return Steering(Decision(experiment.control, False, 1.0), KILL_SWITCH, False)
    forced = flags.forced_variant
    if forced is not None and forced in experiment.variants:
        return Steering(Decision(forced, False, 1.0), FORCED_FLAG, False)
    if header is not None:
        if authorized():
            variant = resolve_variant(experiment, header.strip())
            return Steering(Decision(variant, False, 1.0), HEADER, False)
        decision = policy.choose(key, rng, view or RoutingView(flags=flags.values))
        return Steering(decision, None, True)
    return Steering(policy.choose(key, rng, view or RoutingView(flags=flags.values)), None, False)
