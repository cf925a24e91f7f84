"""Feature flags: defaults in ``config/flags.yaml``, overrides in Redis, a per-replica cache.

The hot path only reads ``FlagCache.for_experiment``: a dict lookup. A background task keeps
the cache fresh (pub/sub for changes, a periodic refresh as a safety net) and keeps the last
known flags when Redis is unreachable. Every change is one atomic Lua call that sets the
flag, appends the audit event to a capped stream and publishes the change.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from router.core import logs
from router.core.errors import ConfigError, InvalidInput, Unavailable
from router.core.metrics import GatewayMetrics
from router.core.settings import Settings
from router.storage import keys
from router.storage import scripts as redis_scripts

log = logging.getLogger("turnout.flags")

BUILTIN: dict[str, object] = {
    "kill_switch": False,
    "shadow_enabled": True,
    "forced_variant": None,
    "frozen": False,
}
FLAG_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_STRING = 256
PRIME_SECONDS = 2.0
CLEAR = object()
"""Passed as a value: remove the override, back to the default."""

_CHANGE_SCRIPT = """
local old = redis.call('HGET', KEYS[1], ARGV[1]) or ARGV[3]
local new = ARGV[2]
if new == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  new = ARGV[3]
else
  redis.call('HSET', KEYS[1], ARGV[1], new)
end
local fields = {'old', old, 'new', new}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[4], '*', unpack(fields))
redis.call('PUBLISH', ARGV[5], ARGV[1])
return {id, old}
"""


@dataclass(frozen=True)
class ExperimentFlags:
    """The flags in force for one experiment (what the hot path, policies and shadows read)."""

    kill_switch: bool = False
    forced_variant: str | None = None
    shadow_enabled: bool = True
    frozen: bool = False
    custom: Mapping[str, object] = field(default_factory=dict)
    values: Mapping[str, object] = field(init=False, repr=False, compare=False)
    """Every flag by name, built-ins and custom: what ``RoutingView.flags`` carries."""

    def __post_init__(self) -> None:
        values = {
            "kill_switch": self.kill_switch,
            "forced_variant": self.forced_variant,
            "shadow_enabled": self.shadow_enabled,
            "frozen": self.frozen,
            **self.custom,
        }
        object.__setattr__(self, "values", MappingProxyType(values))

    @property
    def shadow_active(self) -> bool:
        """Mirror to shadows only when enabled and the kill switch is off."""
        return self.shadow_enabled and not self.kill_switch

    @classmethod
    def from_values(cls, values: Mapping[str, object]) -> ExperimentFlags:
        forced = values.get("forced_variant")
        return cls(
            kill_switch=bool(values.get("kill_switch", False)),
            forced_variant=forced if isinstance(forced, str) else None,
            shadow_enabled=bool(values.get("shadow_enabled", True)),
            frozen=bool(values.get("frozen", False)),
            custom=MappingProxyType({k: v for k, v in values.items() if k not in BUILTIN}),
        )


class _DefaultsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    defaults: dict[str, Any] = {}
    custom: dict[str, Any] = {}
    experiments: dict[str, dict[str, Any]] = {}


@dataclass(frozen=True)
class FlagDefaults:
    """Defaults of every known flag, and per-experiment defaults that override them."""

    flags: Mapping[str, object] = field(default_factory=lambda: dict(BUILTIN))
    experiments: Mapping[str, Mapping[str, object]] = field(default_factory=dict)

    def default(self, experiment: str, flag: str) -> object:
        return self.experiments.get(experiment, {}).get(flag, self.flags.get(flag))

    def check(self, flag: str, value: object) -> object:
        """Validate ``value`` for ``flag``; ``InvalidInput`` (422) names the problem."""
        if flag not in self.flags:
            known = ", ".join(sorted(self.flags))
            raise InvalidInput(
                f"unknown flag {flag!r} (known: {known}); declare custom flags in the "
                "flags file (TURNOUT_FLAGS_FILE)",
                code="unknown_flag",
            )
        default = self.flags[flag]
        if flag == "forced_variant":
            if value is not None and not isinstance(value, str):
                raise InvalidInput("'forced_variant' must be a variant name or null")
            return value
        if not _scalar(value):
            raise InvalidInput(f"flag {flag!r} must be a string, number, boolean or null")
        if isinstance(default, bool) and not isinstance(value, bool):
            raise InvalidInput(f"flag {flag!r} must be true or false")
        if _number(default) and not _number(value):
            raise InvalidInput(f"flag {flag!r} must be a number")
        if isinstance(default, str) and not isinstance(value, str):
            raise InvalidInput(f"flag {flag!r} must be a string")
        if isinstance(value, str) and len(value) > MAX_STRING:
            raise InvalidInput(f"flag {flag!r} is longer than {MAX_STRING} characters")
        return value

    def resolve(self, experiment: str, overrides: Mapping[str, object]) -> ExperimentFlags:
        values = dict(self.flags)
        values.update(self.experiments.get(experiment, {}))
        for flag, value in overrides.items():
            if flag in self.flags:
                values[flag] = value
        return ExperimentFlags.from_values(values)


def _scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def load_defaults(path: Path) -> FlagDefaults:
    """Read the defaults file (a missing file means the built-in defaults)."""
    if not path.is_file():
        return FlagDefaults()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        parsed = _DefaultsFile.model_validate(data)
    except (yaml.YAMLError, ValidationError, OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid flags file: {exc}") from None
    unknown = sorted(set(parsed.defaults) - set(BUILTIN))
    if unknown:
        raise ConfigError(
            f"{path}: defaults names unknown flags {', '.join(unknown)}; "
            "declare custom flags under 'custom'"
        )
    clash = sorted(set(parsed.custom) & set(BUILTIN))
    bad = [n for n in parsed.custom if not FLAG_NAME.match(n)]
    if clash or bad:
        raise ConfigError(f"{path}: invalid custom flag names: {', '.join(clash + bad)}")
    typed = FlagDefaults({**BUILTIN, **parsed.custom})
    try:
        for flag, value in {**parsed.custom, **parsed.defaults}.items():
            typed.check(flag, value)
        result = FlagDefaults({**typed.flags, **parsed.defaults}, parsed.experiments)
        for overrides in parsed.experiments.values():
            for flag, value in overrides.items():
                result.check(flag, value)
    except InvalidInput as exc:
        raise ConfigError(f"{path}: {exc.detail}") from None
    return result


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
    if isinstance(value, bytes):
        return value.decode()
    return "" if value is None else value


def _field(experiment: str, flag: str) -> str:
    return keys.flag_field(experiment, flag)


def connect(url: str) -> Redis:
    return redis_scripts.connect(url, socket_timeout=2.0, connect_timeout=1.0)


class FlagStore:
    """Flag overrides, the audit stream and promotion records in Redis."""

    def __init__(
        self,
        redis: Redis,
        defaults: FlagDefaults,
        audit_maxlen: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.defaults = defaults
        self.audit_maxlen = audit_maxlen
        self.clock = clock
        self._change = redis.register_script(_CHANGE_SCRIPT)

    async def overrides(self) -> dict[str, dict[str, object]]:
        raw = await self.redis.hgetall(keys.FLAGS)
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
        args: list[str | int] = [_field(experiment, flag), new, default, self.audit_maxlen]
        args.append(keys.FLAGS_CHANNEL)
        for name, text in audit.items():
            args += [name, text]
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

    async def save_promotion(self, experiment: str, record: Mapping[str, object]) -> None:
        await self.redis.hset(keys.PROMOTIONS, experiment, orjson.dumps(record).decode())

    async def last_promotion(self, experiment: str) -> dict[str, Any] | None:
        raw = await self.redis.hget(keys.PROMOTIONS, experiment)
        if raw is None:
            return None
        value = orjson.loads(raw)
        return value if isinstance(value, dict) else None

    async def forget_promotion(self, experiment: str) -> None:
        await self.redis.hdel(keys.PROMOTIONS, experiment)

    async def close(self) -> None:
        await self.redis.aclose()


class FlagCache:
    """Per-replica flags: read without I/O, refreshed in the background, stale-tolerant."""

    def __init__(
        self,
        store: FlagStore | None,
        defaults: FlagDefaults,
        refresh_interval: float,
        metrics: GatewayMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.defaults = defaults
        self.refresh_interval = refresh_interval
        self.metrics = metrics
        self.clock = clock
        self.overrides: dict[str, dict[str, object]] = {}
        self.refreshed_at: float | None = None
        self.redis_error: str | None = None if store else "no Redis configured"
        self._flags: dict[str, ExperimentFlags] = {}
        self._base: dict[str, ExperimentFlags] = {}

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        metrics: GatewayMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> FlagCache:
        """Defaults from the flags file; overrides from TURNOUT_REDIS_URL when it is set."""
        defaults = load_defaults(settings.flags_file)
        store = None
        if settings.redis_url:
            store = FlagStore(connect(settings.redis_url), defaults, settings.audit_maxlen, clock)
        return cls(store, defaults, settings.flags_refresh_interval, metrics, clock)

    def for_experiment(self, name: str) -> ExperimentFlags:
        flags = self._flags.get(name)
        if flags is None:
            flags = self._base.get(name)
            if flags is None:
                flags = self._base[name] = self.defaults.resolve(name, {})
        return flags

    def require_store(self) -> FlagStore:
        if self.store is None:
            raise Unavailable("flags need Redis: set TURNOUT_REDIS_URL", code="no_redis")
        return self.store

    async def refresh(self) -> None:
        """Fetch every override (one HGETALL) and swap the cache whole."""
        store = self.require_store()
        overrides = await store.overrides()
        self._install(overrides)
        self.refreshed_at = self.clock()
        if self.redis_error is not None:
            logs.event(log, "flags_redis_back")
        self.redis_error = None

    async def prime(self) -> None:
        """First load before serving, so a restarted replica does not start on defaults."""
        if self.store is None:
            return
        try:
            async with asyncio.timeout(PRIME_SECONDS):
                await self.refresh()
        except (RedisError, OSError, TimeoutError) as exc:
            self._down(exc)

    def _install(self, overrides: dict[str, dict[str, object]]) -> None:
        if self.metrics is not None:
            for experiment in set(overrides) | set(self.overrides):
                before = self.overrides.get(experiment, {})
                after = overrides.get(experiment, {})
                for flag in set(before) | set(after):
                    if before.get(flag, CLEAR) != after.get(flag, CLEAR):
                        self.metrics.flag_changes.labels(experiment, flag).inc()
        self._flags = {n: self.defaults.resolve(n, o) for n, o in overrides.items()}
        self.overrides = overrides

    def _down(self, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if self.redis_error is None:
            logs.event(log, "flags_redis_down", logging.WARNING, reason=reason)
        self.redis_error = reason

    async def run(self) -> None:
        """Follow changes over pub/sub, refresh every interval; survive Redis outages."""
        if self.store is None:
            return
        retry = min(1.0, self.refresh_interval)
        while True:
            try:
                async with self.store.redis.pubsub() as pubsub:
                    await pubsub.subscribe(keys.FLAGS_CHANNEL)
                    await self.refresh()
                    while True:
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=self.refresh_interval
                        )
                        while message is not None:  # a burst of changes: one refresh
                            message = await pubsub.get_message(
                                ignore_subscribe_messages=True, timeout=0
                            )
                        await self.refresh()
            except (RedisError, OSError) as exc:
                self._down(exc)
            await asyncio.sleep(retry)

    async def close(self) -> None:
        if self.store is not None:
            await self.store.close()

    def status(self) -> dict[str, object]:
        return {
            "redis": "down" if self.redis_error else "up",
            "error": self.redis_error,
            "refreshed_at": self.refreshed_at,
            "refresh_interval": self.refresh_interval,
        }
