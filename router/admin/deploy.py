"""Deploys: a registered version brought into an experiment by a safe rewrite of its file.

``turnout retrain --deploy`` asks for them. Like a promotion, the file stays the source of
truth: a file edited since it was loaded is never overwritten, the new file must load, and the
change is an audit event. ``rollout`` needs settings: the experiment's ``retrain.rollout``, else
its own ``rollout`` block's; it is refused while another rollout is in progress.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from router.admin.promotion import Promotions, audit, current_text
from router.config.experiments import NAME, Experiment, Variant
from router.config.loader import config_version, parse_experiment
from router.config.rewrite import DEPLOY_MODES, deployed_yaml, write_atomically
from router.core.errors import ConfigError, Conflict, InvalidInput
from router.rollout.state import ACTIVE, RolloutState
from router.routing.table import Route


def rollout_settings(experiment: Experiment) -> dict[str, Any] | None:
    """What ``--deploy rollout`` starts a rollout with (None: the experiment has none)."""
    if experiment.retrain is not None and experiment.retrain.rollout is not None:
        return experiment.retrain.rollout.model_dump(mode="json", exclude_defaults=True)
    if experiment.rollout is not None:
        data = experiment.rollout.model_dump(mode="json", exclude_defaults=True)
        data.pop("candidate", None)
        return data
    return None


@dataclass
class Deployments:
    promotions: Promotions
    state_of: Callable[[Route], Any]
    """The rollout state of an experiment (an awaitable), to refuse a second rollout."""

    async def deploy(
        self,
        route: Route,
        version: str,
        variant: str,
        url: str,
        mode: str,
        actor: str,
        reason: str,
    ) -> dict[str, Any]:
        if mode not in DEPLOY_MODES:
            raise InvalidInput(f"'as' must be one of {', '.join(DEPLOY_MODES)}, got {mode!r}")
        for label, value in (("version", version), ("variant", variant)):
            if not re.match(NAME, value):
                raise InvalidInput(f"'{label}' must match {NAME}, got {value!r}")
        p = self.promotions
        try:
            Variant.model_validate({"url": url}, context={"allowed_hosts": p.allowed_hosts})
        except ValueError as exc:
            raise InvalidInput(f"'url': {exc}") from None
        store = p.flags.require_store()
        name = route.name
        async with p.lock:
            route = p.table.require(name)
            exp = route.experiment
            settings = None
            if mode == "rollout":
                settings = rollout_settings(exp)
                if settings is None:
                    raise Conflict(
                        f"{name} has no rollout settings: add a retrain.rollout block (or a "
                        "rollout block) to its file",
                        code="no_rollout_settings",
                    )
                if exp.rollout is not None and exp.rollout.candidate != variant:
                    state: RolloutState = await self.state_of(route)
                    if state.known and state.phase in ACTIVE:
                        raise Conflict(
                            f"{name} is rolling out {exp.rollout.candidate} ({state.phase}); "
                            "finish or abort it first",
                            code="rollout_in_progress",
                        )
            text = current_text(route)
            stamp = datetime.fromtimestamp(p.clock(), UTC).isoformat(timespec="seconds")
            note = (
                f"Deployed {version} as {variant} ({mode}) by {actor} at {stamp}: {reason}\n"
                f"Was config_version {route.config_version}."
            )
            sample = exp.retrain.shadow_sample if exp.retrain is not None else 1.0
            try:
                new_text = deployed_yaml(text, variant, url, version, mode, note, settings, sample)
                parse_experiment(new_text, route.loaded.path, p.allowed_hosts)
            except ConfigError as exc:
                raise Conflict(f"the deployed file would be refused: {exc.detail}") from None
            new_version = config_version(new_text.encode())
            write_atomically(route.loaded.path, new_text)
            await p.table.reload()
            event = await audit(
                store,
                name,
                actor,
                f"deploy_{mode}",
                {"config_version": route.config_version},
                {"version": version, "variant": variant, "url": url, "config_version": new_version},
                reason,
            )
        return p.result(name, route.loaded.path.name, new_version, event)
