"""Deploys: a registered version brought into an experiment by a safe rewrite of its file.

``turnout retrain --deploy`` asks for them. Like a promotion, the file stays the source of
truth: a file edited since it was loaded, even during the deploy, is never overwritten, the
new file must load, and the change is an audit event. ``rollout`` needs settings: the
experiment's ``retrain.rollout``, else its own ``rollout`` block's; it is refused while
another rollout is in progress.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from router.admin.promotion import Promotions, audit, current_text, require_ready
from router.config.experiments import NAME, VARIANT_MODELS, Experiment
from router.config.loader import config_version, parse_experiment
from router.config.rewrite import DEPLOY_MODES, deployed_yaml, replace_if_unchanged
from router.core.errors import ConfigError, Conflict, InvalidInput, cut, echo
from router.rollout.state import ACTIVE, RolloutState
from router.routing.table import Route
from router.upstream.protocols import DEFAULT_PROTOCOL


def has_rollout_settings(experiment: Experiment) -> bool:
    """Whether ``--deploy rollout`` has settings: ``retrain.rollout``, or a ``rollout`` block."""
    retrain = experiment.retrain
    return (retrain is not None and retrain.rollout is not None) or experiment.rollout is not None


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
        force: bool = False,
    ) -> dict[str, Any]:
        if mode not in DEPLOY_MODES:
            raise InvalidInput(f"'as' must be one of {', '.join(DEPLOY_MODES)}, got {echo(mode)}")
        for label, value in (("version", version), ("variant", variant)):
            if not re.match(NAME, value):
                raise InvalidInput(f"'{label}' must match {NAME}, got {echo(value)}")
        p = self.promotions
        try:  # deployed versions are Turnout workers: their variant is of the default protocol
            VARIANT_MODELS[DEFAULT_PROTOCOL].model_validate(
                {"url": url}, context={"allowed_hosts": p.allowed_hosts}
            )
        except ValidationError as exc:
            raise InvalidInput(f"'url': {cut(exc.errors()[0]['msg'])}") from None
        store = p.flags.require_store()
        name = route.name
        async with p.lock:
            route = p.table.require(name)
            exp = route.experiment
            if mode == "rollout":
                if not has_rollout_settings(exp):
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
            if mode == "rollout" and not force:  # the only mode that gives it user traffic
                await require_ready(p.table.pool.get(url), variant)
            text = current_text(route)
            stamp = datetime.fromtimestamp(p.clock(), UTC).isoformat(timespec="seconds")
            note = (
                f"Deployed {version} as {variant} ({mode}) by {actor} at {stamp}: {reason}\n"
                f"Was config_version {route.config_version}."
            )
            sample = exp.retrain.shadow_sample if exp.retrain is not None else 1.0
            try:
                new_text = deployed_yaml(text, variant, url, version, mode, note, sample)
                parse_experiment(new_text, route.loaded.path, p.allowed_hosts)
            except ConfigError as exc:
                raise Conflict(f"the deployed file would be refused: {exc.detail}") from None
            new_version = config_version(new_text.encode())
            replace_if_unchanged(route.loaded.path, route.config_version, new_text)
            await p.table.reload()
            event = await audit(
                store,
                name,
                actor,
                f"deploy_{mode}",
                {"config_version": route.config_version},
                {
                    "version": version,
                    "variant": variant,
                    "url": url,
                    "config_version": new_version,
                    "forced": force,
                },
                reason,
            )
        return p.result(name, route.loaded.path.name, new_version, event)
