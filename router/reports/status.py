"""What one experiment in force looks like from outside: its config and its upstreams' health.

Plain data shared by ``GET /experiments`` and the console's overview. Pure.
"""

from __future__ import annotations

from typing import Any

from router.routing.table import Route


def experiment_status(route: Route, rollout: dict[str, Any] | None) -> dict[str, Any]:
    """``rollout`` is the rollout runtime's summary (weights in force, rollout, SRM) or None."""
    exp = route.experiment
    return {
        "name": exp.name,
        "model": exp.model,
        "policy": exp.policy.kind,
        "control": exp.control,
        "weights": exp.configured_weights(),
        "config_version": route.config_version,
        "file": route.loaded.path.name,
        "shadow": exp.shadow.model_dump() if exp.shadow else None,
        "capture": exp.capture.model_dump() if exp.capture else None,
        "input": exp.input.model_dump(exclude_defaults=True) or {"kind": "text"},
        "fallback": list(exp.fallback),
        "sample_input": exp.sample_input,
        "upstreams": {
            v: {
                "url": u.url,
                "protocol": u.protocol,
                "version": exp.version_of(v),
                "ready": u.ready(),
                "healthy": u.healthy,
                "health": "passive" if u.passive else "active",
                "breaker": u.breaker.state.name.lower(),
            }
            for v, u in route.upstreams.items()
        },
        "rollout": rollout,
    }
