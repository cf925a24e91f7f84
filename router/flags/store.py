"""Flags in Redis: overrides, and the audit trail every change writes (atomically with it)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import orjson

from router.core import logs
from router.flags.values import CLEAR, FlagDefaults
from router.storage import keys
from router.storage.client import RedisClient
from router.storage.codec import text
from router.storage.scripts import CHANGE_FLAG_LUA

log = logging.getLogger("turnout.flags")


@dataclass(frozen=True)
class AuditEvent:
    id: str
    ts: float
    actor: str
    """Name of the admin token that made the change (never the token itself)."""
    action: str
    experiment: str
    flag: str | None
    old: object
    new: object
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "ts": self.ts,
            "actor": self.actor,
            "action": self.action,
            "experiment": self.experiment,
            "flag": self.flag,
            "old": self.old,
            "new": self.new,
            "reason": self.reason,
        }

    @classmethod
    def from_entry(cls, entry_id: str, fields: Mapping[str, str]) -> AuditEvent:
        return cls(
            id=entry_id,
            ts=float(fields.get("ts", 0.0)),
            actor=fields.get("actor", ""),
            action=fields.get("action", ""),
            experiment=fields.get("experiment", ""),
            flag=fields.get("flag") or None,
            old=_loads(fields.get("old")),
            new=_loads(fields.get("new")),
            reason=fields.get("reason", ""),
        )


def _loads(raw: str | None) -> object:
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw


def _text(value: bytes | str | None) -> str:
    return "" if value is None else text(value)


class FlagStore:
    """Flag overrides and the audit stream of every operator or controller change, in Redis."""

    def __init__(
        self,
        redis: RedisClient,
        defaults: FlagDefaults,
        audit_maxlen: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.defaults = defaults
        self.audit_maxlen = audit_maxlen
        self.clock = clock
        self._change = redis.register_script(CHANGE_FLAG_LUA)

    async def snapshot(self) -> tuple[str | None, dict[str, dict[str, object]]]:
        """The dataset's epoch and every override, in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(keys.epoch())
            pipe.hgetall(keys.FLAGS)
            epoch, raw = await pipe.execute()
        return (None if epoch is None else _text(epoch)), self._parse(raw)

    async def claim_epoch(self) -> str:
        """The dataset's epoch, set now to a new random id if it has none."""
        await self.redis.set(keys.epoch(), uuid.uuid4().hex, nx=True)
        return _text(await self.redis.get(keys.epoch()))

    async def overrides(self) -> dict[str, dict[str, object]]:
        return self._parse(await self.redis.hgetall(keys.FLAGS))

    def _parse(self, raw: Mapping[bytes | str, bytes | str]) -> dict[str, dict[str, object]]:
        result: dict[str, dict[str, object]] = {}
        for raw_key, value in raw.items():
            key = _text(raw_key)
            experiment, _, flag = key.partition("/")
            try:
                result.setdefault(experiment, {})[flag] = orjson.loads(value)
            except orjson.JSONDecodeError:
                logs.event(log, "flag_unreadable", logging.WARNING, field=key)
        return result

    async def change(
        self,
        experiment: str,
        flag: str,
        value: object,
        *,
        actor: str,
        reason: str,
        action: str,
    ) -> AuditEvent:
        """Set (or with ``CLEAR`` remove) an override, audit and publish it, atomically."""
        default = orjson.dumps(self.defaults.default(experiment, flag)).decode()
        new = "" if value is CLEAR else orjson.dumps(value).decode()
        ts = self.clock()
        audit = {
            "ts": repr(ts),
            "actor": actor,
            "action": action,
            "experiment": experiment,
            "flag": flag,
            "reason": reason,
        }
        args: list[str | int] = [keys.flag_field(experiment, flag), new, default, self.audit_maxlen]
        args.append(keys.FLAGS_CHANNEL)
        for name, value_text in audit.items():
            args += [name, value_text]
        entry_id, old = await self._change(keys=[keys.FLAGS, keys.AUDIT], args=args)
        new_value = self.defaults.default(experiment, flag) if value is CLEAR else value
        return AuditEvent(
            entry_id, ts, actor, action, experiment, flag, _loads(old), new_value, reason
        )

    async def record(
        self,
        experiment: str,
        *,
        actor: str,
        action: str,
        old: object,
        new: object,
        reason: str,
    ) -> AuditEvent:
        """Audit a change that is not a flag (a promotion)."""
        ts = self.clock()
        entry: dict[str, str] = {
            "ts": repr(ts),
            "actor": actor,
            "action": action,
            "experiment": experiment,
            "flag": "",
            "reason": reason,
            "old": orjson.dumps(old).decode(),
            "new": orjson.dumps(new).decode(),
        }
        entry_id = await self.redis.xadd(
            keys.AUDIT,
            entry,  # type: ignore[arg-type]
            maxlen=self.audit_maxlen,
            approximate=False,
        )
        return AuditEvent(_text(entry_id), ts, actor, action, experiment, None, old, new, reason)

    async def history(self, experiment: str | None = None, limit: int = 50) -> list[AuditEvent]:
        """Newest first; filtered by experiment when one is named."""
        events: list[AuditEvent] = []
        upper = "+"
        while len(events) < limit:
            batch = await self.redis.xrevrange(keys.AUDIT, upper, "-", count=max(limit, 100))
            if not batch:
                break
            for raw_id, raw_fields in batch:
                fields = {_text(k): _text(v) for k, v in (raw_fields or {}).items()}
                if experiment is None or fields.get("experiment") == experiment:
                    events.append(AuditEvent.from_entry(_text(raw_id), fields))
                    if len(events) == limit:
                        break
            upper = f"({_text(batch[-1][0])}"
        return events

    async def close(self) -> None:
        await self.redis.aclose()
