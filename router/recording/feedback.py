"""``POST /feedback``: exactly once per request id, credited to the variant that answered."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from redis.asyncio.client import Pipeline

from router.bandit.evidence import BanditTarget, evidence_commands
from router.core.errors import Conflict, InvalidInput, NotFound, cut, echo
from router.core.ids import REQUEST_ID_RULE, valid_request_id
from router.recording.events import (
    UnitBounds,
    label_type,
    unit_feedback_commands,
    window_feedback_commands,
)
from router.recording.feedback_auth import MAX_TOKEN_CHARS, NO_PROOF, PROOF_FIELD, Proof, demand
from router.storage import keys
from router.storage.client import RedisClient
from router.storage.codec import as_text_dict, dumps, text
from router.storage.scripts import ACCEPT_FEEDBACK_LUA, Command, KeyTable

FIELDS = frozenset({"request_id", "reward", "label", PROOF_FIELD})


class LabelSource(Protocol):
    """The labels each variant can answer, as JSON text (from its model card, ``/info``)."""

    def labels_of(self, experiment: str, variant: str) -> frozenset[str] | None:
        """The variant's labels; None when its model server does not say."""

    def known_labels(self) -> frozenset[str] | None:
        """Every label any routed variant can answer; None when some server does not say."""


LABEL_TYPES = (str, int, float, bool)


@dataclass(frozen=True, slots=True)
class FeedbackInput:
    request_id: str
    reward: float | None
    label: str | int | float | bool | None
    """Set when the feedback is a true label (then the reward is whether the served one matched)."""
    proof: Proof = NO_PROOF
    """What it brought to be trusted (``router.recording.feedback_auth``)."""


@dataclass(frozen=True, slots=True)
class Credit:
    request_id: str
    experiment: str
    variant: str
    """The variant the policy chose."""
    credited_variant: str
    """The variant that answered, which the feedback is credited to."""
    version: str | None
    reward: float
    fallback: bool
    correct: bool | None
    bandit: str | None = None
    """``updated`` when the reward went into the bandit posterior of the credited arm,
    ``frozen`` when the frozen flag held it back, None when the credited variant is no arm."""


class AppliedBefore(Conflict):
    """This very feedback (same token) was applied by an earlier attempt whose reply was lost."""

    def __init__(self, request_id: str, experiment: str, version: str | None) -> None:
        super().__init__(
            f"feedback for request {request_id!r} was applied by an earlier attempt",
            code="duplicate",
        )
        self.experiment = experiment
        self.version = version


def require_label(label: object, allowed: frozenset[str] | None, who: str) -> None:
    if allowed is not None and dumps(label) not in allowed:
        raise InvalidInput(
            f"'label' must be one of the labels {who} answers: {', '.join(sorted(allowed))}; "
            f"got {cut(dumps(label))}"
        )


def parse_feedback(
    body: Any, source: str | None = None, header_token: str | None = None
) -> FeedbackInput:
    """Validate a feedback body; every refusal is a 422 naming the field. ``source`` is the
    label source's credential the route checked, ``header_token`` the X-Turnout-Feedback-Token
    header."""
    if not isinstance(body, dict):
        raise InvalidInput("body must be a JSON object")
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise InvalidInput(f"unknown fields: {cut(', '.join(map(repr, unknown)))}")
    request_id = body.get("request_id")
    if request_id is None:
        raise InvalidInput("'request_id' is required")
    if not valid_request_id(request_id):
        raise InvalidInput(f"'request_id' must be {REQUEST_ID_RULE}")
    proof = Proof(_token_of(body, header_token), source)
    has_reward, has_label = "reward" in body, "label" in body
    if has_reward == has_label:
        raise InvalidInput("give exactly one of 'reward' (a number in [0, 1]) or 'label'")
    if has_reward:
        reward = body["reward"]
        if isinstance(reward, bool) or not isinstance(reward, int | float):
            raise InvalidInput("'reward' must be a number in [0, 1]")
        if not (math.isfinite(reward) and 0.0 <= reward <= 1.0):
            raise InvalidInput(f"'reward' must be in [0, 1], got {echo(reward)}")
        return FeedbackInput(request_id, float(reward), None, proof)
    label = body["label"]
    if not isinstance(label, LABEL_TYPES):
        raise InvalidInput("'label' must be a string, a number or a boolean")
    return FeedbackInput(request_id, None, label, proof)


def _token_of(body: dict[str, Any], header: str | None) -> str | None:
    given = body.get(PROOF_FIELD)
    if given is not None and (not isinstance(given, str) or len(given) > MAX_TOKEN_CHARS):
        raise InvalidInput(
            f"'{PROOF_FIELD}' must be a string of at most {MAX_TOKEN_CHARS} characters"
        )
    if header is not None and len(header) > MAX_TOKEN_CHARS:
        raise InvalidInput(f"X-Turnout-Feedback-Token must be at most {MAX_TOKEN_CHARS} characters")
    if given is not None and header is not None and given != header:
        raise InvalidInput(f"'{PROOF_FIELD}' and X-Turnout-Feedback-Token differ: send one")
    return given if given is not None else header


class FeedbackWriter:
    """Checks and writes feedback against the attribution the recorder stored in Redis."""

    def __init__(
        self,
        client: RedisClient,
        stream_maxlen: int,
        bandit: Callable[[str], BanditTarget | None] | None = None,
        replicas: int = 0,
        wait_timeout: float = 0.1,
        unreplicated: Callable[[], object] | None = None,
        labels: LabelSource | None = None,
        units: UnitBounds = UnitBounds(),
        auth_of: Callable[[str], str] | None = None,
        secret: bytes | None = None,
    ) -> None:
        self.redis = client
        self.auth_of = auth_of
        """The ``feedback.auth`` of an experiment as loaded here (None: every one is open)."""
        self.secret = secret
        self.units = units
        self.stream_maxlen = stream_maxlen
        self.bandit = bandit
        """The bandit experiment's arms by name (None: not a bandit, as loaded here)."""
        self.replicas = replicas
        """Replicas that must have the write before it is acknowledged (``WAIT``)."""
        self.wait_ms = max(1, round(wait_timeout * 1000))
        self.unreplicated = unreplicated
        self.labels = labels
        self._script = client.register_script(ACCEPT_FEEDBACK_LUA)

    async def _apply(self, names: list[str], args: list[str]) -> object:
        """The script, then ``WAIT`` on the same connection (a pipeline holds one)."""
        if not self.replicas:
            return await self._script(keys=names, args=args)
        async with self.redis.pipeline(transaction=False) as pipe:
            assert isinstance(pipe, Pipeline)  # never a Cluster's: it waits for no replica
            await self._script(keys=names, args=args, client=pipe)
            pipe.execute_command("WAIT", self.replicas, self.wait_ms)
            result, acked = await pipe.execute()
        if result == "ok" and int(acked) < self.replicas and self.unreplicated is not None:
            self.unreplicated()
        return result

    def check_label(self, feedback: FeedbackInput) -> None:
        """Before anything is looked up: a label no routed version can answer is a 422."""
        if feedback.label is None or self.labels is None:
            return
        require_label(feedback.label, self.labels.known_labels(), "any routed version")

    async def accept(
        self, feedback: FeedbackInput, now: float, feedback_token: str | None = None
    ) -> Credit:
        """Credit ``feedback`` exactly once. ``feedback_token`` names this very feedback across
        retries (the deferred queue's): it is stored with it, so a retry whose first attempt did
        apply raises ``AppliedBefore`` instead of counting as someone else's duplicate."""
        rid = feedback.request_id
        located = await self.redis.get(keys.request(rid))
        if located is None:
            raise NotFound(
                f"no recorded request {rid!r}: unknown, older than the attribution TTL, or "
                "served by another replica moments ago (retry shortly)",
                code="unknown_request",
            )
        experiment = text(located)
        target = self.bandit(experiment) if self.bandit else None
        where = keys.attribution(experiment, rid)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(where)
            if target is not None:
                # Read from Redis, not from this replica's cache: a freeze holds at once.
                pipe.hget(keys.FLAGS, keys.flag_field(experiment, "frozen"))
            replies = await pipe.execute()
        attribution = as_text_dict(replies[0])
        token = attribution.get(keys.TOKEN)
        if token is None:
            raise NotFound(
                f"no recorded request {rid!r}: unknown, older than the attribution TTL, or "
                "served by another replica moments ago (retry shortly)",
                code="unknown_request",
            )
        answered = attribution.get("served_variant")
        if answered is None:
            raise NotFound(
                f"request {rid!r} got no prediction, so there is nothing to credit",
                code="no_prediction",
            )
        if self.auth_of is not None:
            # Before the duplicate check: an untrusted feedback learns nothing of the request.
            version = attribution.get("version", answered)
            demand(
                self.auth_of(experiment), feedback.proof, self.secret, rid, experiment, version, now
            )
        if keys.FEEDBACK_REWARD in attribution:
            if (
                feedback_token is not None
                and attribution.get(keys.FEEDBACK_TOKEN) == feedback_token
            ):
                raise AppliedBefore(rid, experiment, attribution.get("version"))
            raise Conflict(f"feedback for request {rid!r} was already accepted", code="duplicate")
        correct = None
        if feedback.label is not None:
            served_type = attribution.get("label_type")
            if served_type is None:
                raise InvalidInput(f"request {rid!r} was answered without a label to compare")
            if label_type(feedback.label) != served_type:
                raise InvalidInput(
                    f"'label' must be of the served label's type ({served_type}), "
                    f"got {label_type(feedback.label)}"
                )
            if self.labels is not None:
                allowed = self.labels.labels_of(experiment, answered)
                version = attribution.get("version", answered)
                require_label(feedback.label, allowed, f"version {version}")
            correct = dumps(feedback.label) == attribution.get("label")
            reward = 1.0 if correct else 0.0
        else:
            assert feedback.reward is not None
            reward = feedback.reward
        commands = self._commands(rid, attribution, answered, reward, feedback.label, correct, now)
        if feedback_token is not None:
            commands.append(("HSET", where, (keys.FEEDBACK_TOKEN, feedback_token)))
        bandit = None
        if target is not None and answered in target.arms:
            # The arm that answered: after a fallback the control, never the arm that failed.
            frozen = replies[1] if replies[1] is not None else dumps(target.frozen_default)
            bandit = "frozen" if frozen == "true" else "updated"
            if bandit == "updated":
                commands += evidence_commands(experiment, answered, reward)
        table = KeyTable()
        table.ref(where)
        args = [token, repr(reward), dumps(table.encode(commands))]
        args += shadow_args(attribution, experiment, answered, feedback.label, table)
        result = await self._apply(table.keys, args)
        if result == "shadows":  # a shadow's label arrived since the read: read it too
            return await self.accept(feedback, now, feedback_token)
        if result == "missing":
            raise NotFound(f"request {rid!r} expired meanwhile", code="unknown_request")
        if result == "duplicate":
            if (
                feedback_token is not None
                and await self.redis.hget(where, keys.FEEDBACK_TOKEN) == feedback_token
            ):
                raise AppliedBefore(rid, experiment, attribution.get("version"))
            raise Conflict(f"feedback for request {rid!r} was already accepted", code="duplicate")
        return Credit(
            rid,
            experiment,
            attribution["variant"],
            answered,
            attribution.get("version"),
            reward,
            attribution.get("fallback") == "1",
            correct,
            bandit,
        )

    def _commands(
        self,
        rid: str,
        attribution: dict[str, str],
        answered: str,
        reward: float,
        label: object | None,
        correct: bool | None,
        now: float,
    ) -> list[Command]:
        experiment = attribution["experiment"]
        counters = keys.counters(experiment, answered)
        commands: list[Command] = [
            ("HINCRBY", counters, (keys.FEEDBACK_N, "1")),
            ("HINCRBYFLOAT", counters, (keys.FEEDBACK_SUM, repr(reward))),
            ("HINCRBYFLOAT", counters, (keys.FEEDBACK_SUMSQ, repr(reward * reward))),
            ("HSET", keys.attribution(experiment, rid), ("fb_ts", repr(now))),
        ]
        if reward in (0.0, 1.0):
            commands.append(("HINCRBY", counters, (keys.FEEDBACK_BINARY, "1")))
        if "unit" in attribution:
            commands += unit_feedback_commands(
                experiment,
                attribution["config_version"],
                answered,
                attribution["unit"],
                reward,
                self.units,
                correct,
            )
        if "window" in attribution and "slot" in attribution:
            window, slot = int(attribution["window"]), int(attribution["slot"])
            user = attribution.get("unit")
            commands += window_feedback_commands(
                experiment, window, slot, answered, reward, user, self.units
            )
        propensity = float(attribution.get("propensity", "0"))
        if answered == attribution["variant"] and propensity > 0:
            # Inverse-propensity sums on the chosen arm, when that arm produced the reward.
            commands += [
                ("HINCRBY", counters, (keys.IPW_N, "1")),
                ("HINCRBYFLOAT", counters, (keys.IPW_SUM, repr(reward / propensity))),
                ("HINCRBYFLOAT", counters, (keys.IPW_WEIGHT, repr(1.0 / propensity))),
            ]
        event = {
            "request_id": rid,
            "variant": attribution["variant"],
            "credited_variant": answered,
            "reward": repr(reward),
            "fallback": attribution.get("fallback", "0"),
            "ts": repr(now),
        }
        if "version" in attribution:
            event["version"] = attribution["version"]
        if correct is not None:
            cell = f"{keys.FEEDBACK_CONFUSION}{attribution.get('label')}|{dumps(label)}"
            commands.append(("HINCRBY", counters, (cell, "1")))
            commands.append(("HINCRBY", counters, (keys.FEEDBACK_LABELLED, "1")))
            commands.append(("HINCRBY", counters, (keys.FEEDBACK_CORRECT, "1" if correct else "0")))
            event["label"] = dumps(label)
            event["correct"] = "1" if correct else "0"
        flat = tuple(item for pair in event.items() for item in pair)
        commands.append(
            (
                "XADD",
                keys.feedback(experiment),
                ("MAXLEN", "~", str(self.stream_maxlen), "*", *flat),
            )
        )
        return commands


def shadow_args(
    attribution: dict[str, str],
    experiment: str,
    answered: str,
    label: object | None,
    table: KeyTable,
) -> list[str]:
    """The true label and the pair counters of every shadow that answered the request so far,
    for the script to score them; a shadow that answers later scores itself when recorded."""
    if label is None:
        return ["", "{}"]
    shadows = {
        field.removeprefix(keys.SHADOW_LABEL): table.ref(
            keys.shadow_counters(experiment, answered, field.removeprefix(keys.SHADOW_LABEL))
        )
        for field in attribution
        if field.startswith(keys.SHADOW_LABEL)
    }
    return [dumps(label), dumps(shadows)]
