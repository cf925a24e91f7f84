"""Flag values: the built-in flags, the defaults file, and what one experiment's flags say.

Pure: no I/O but reading the defaults file. ``FlagDefaults.check`` is the one validation of a
flag value, used by the admin API and by the defaults file alike.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from router.core.errors import ConfigError, InvalidInput, echo

BUILTIN: dict[str, object] = {
    "kill_switch": False,
    "shadow_enabled": True,
    "forced_variant": None,
    "frozen": False,
}
FLAG_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_STRING = 256
CLEAR = object()
"""Passed as a value: remove the override, back to the default."""


def parse_value(text: str) -> Any:
    """A flag value typed by a person: JSON when it parses (true, 3, null, "x"), else the text
    itself (the CLI's argument and the console's form field alike)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


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
                f"unknown flag {echo(flag)} (known: {known}); declare custom flags in the "
                "flags file (TURNOUT_FLAGS_FILE)",
                code="unknown_flag",
            )
        default = self.flags[flag]
        if flag == "forced_variant":
            if value is not None and not isinstance(value, str):
                raise InvalidInput("'forced_variant' must be a variant name or null")
            return value
        if not _scalar(value):
            raise InvalidInput(f"flag {echo(flag)} must be a string, number, boolean or null")
        if isinstance(default, bool) and not isinstance(value, bool):
            raise InvalidInput(f"flag {echo(flag)} must be true or false")
        if _number(default) and not _number(value):
            raise InvalidInput(f"flag {echo(flag)} must be a number")
        if isinstance(default, str) and not isinstance(value, str):
            raise InvalidInput(f"flag {echo(flag)} must be a string")
        if isinstance(value, str) and len(value) > MAX_STRING:
            raise InvalidInput(f"flag {echo(flag)} is longer than {MAX_STRING} characters")
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
