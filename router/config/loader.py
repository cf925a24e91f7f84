"""Experiment YAML files -> validated experiments; refusals name the file, line and reason."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from router.config.experiments import (
    GATE_METRICS,
    Experiment,
    FieldError,
    protocol_of,
    protocol_settings,
)
from router.core.errors import ConfigError
from router.upstream.protocols import PROTOCOLS


@dataclass(frozen=True)
class LoadedExperiment:
    experiment: Experiment
    path: Path
    config_version: str


@dataclass(frozen=True)
class LoadReport:
    experiments: dict[str, LoadedExperiment] = field(default_factory=dict)
    errors: dict[Path, ConfigError] = field(default_factory=dict)
    """Refused files and why."""


def config_version(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()[:12]


def _line_of(node: yaml.Node | None, loc: Iterable[Any]) -> int | None:
    """Follow a pydantic error location through the YAML node tree to a 1-based line."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == str(part):
                    node = value_node
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
        else:
            return line
        line = node.start_mark.line + 1
    return line


def parse_experiment(
    text: str, path: Path, allowed_hosts: list[str] | None = None
) -> LoadedExperiment:
    """Parse one file; raise ``ConfigError`` naming the file, the line and the reason."""
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else "?"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}:{line}: invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: an experiment file must hold one mapping")
    try:
        experiment = Experiment.model_validate(data, context={"allowed_hosts": allowed_hosts})
    except ValidationError as exc:
        reasons = []
        for err in exc.errors():
            loc = _without_tags(err["loc"])
            cause = (err.get("ctx") or {}).get("error")
            if isinstance(cause, FieldError):  # a cross-field check names the key it is about
                loc += list(cause.loc)
            where = ".".join(str(p) for p in loc) or "(top level)"
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = _unknown_key(data, loc)
            elif err["type"] == "unknown_protocol":
                message = (
                    f"unknown protocol {protocol_of(err['input'])!r} "
                    f"(known: {', '.join(PROTOCOLS)})"
                )
            reasons.append(f"{path}:{_line_of(root, loc)}: {where}: {message}")
        raise ConfigError("; ".join(reasons)) from None
    return LoadedExperiment(experiment, path, config_version(text.encode()))


_POLICY_TAGS = {"blue_green", "canary", "ab", "bandit"}
_GATE_TAGS = set(GATE_METRICS)


def _without_tags(loc: Iterable[Any]) -> list[Any]:
    """A pydantic location without the union tags it adds (``policy.canary.weights``)."""
    out: list[Any] = []
    for part in loc:
        policy_tag = out == ["policy"] and part in _POLICY_TAGS
        variant_tag = len(out) == 2 and out[0] == "variants" and part in PROTOCOLS
        if not (policy_tag or variant_tag or part in _GATE_TAGS):
            out.append(part)
    return out


def _unknown_key(data: dict[str, Any], loc: list[Any]) -> str:
    """Name what a variant's protocol takes when a variant has a key it does not."""
    if len(loc) == 3 and loc[0] == "variants":
        variant = (data.get("variants") or {}).get(loc[1])
        if isinstance(variant, dict):
            protocol = protocol_of(variant)
            if protocol in PROTOCOLS:
                takes = ", ".join(["url", "version", "protocol", *protocol_settings(protocol)])
                return f"not a setting of protocol {protocol} (it takes {takes})"
    return "unknown key"


def experiment_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))


def load_directory(directory: Path, allowed_hosts: list[str] | None = None) -> LoadReport:
    """Load every file; a file that fails, or duplicates a name or model, is reported."""
    report = LoadReport()
    if not directory.is_dir():
        report.errors[directory] = ConfigError(f"{directory}: experiments folder not found")
        return report
    by_model: dict[str, Path] = {}
    for path in experiment_files(directory):
        try:
            loaded = parse_experiment(path.read_text(encoding="utf-8"), path, allowed_hosts)
        except ConfigError as exc:
            report.errors[path] = exc
            continue
        except (OSError, UnicodeDecodeError) as exc:
            report.errors[path] = ConfigError(f"{path}:1: unreadable: {exc}")
            continue
        exp = loaded.experiment
        if exp.model in by_model:
            report.errors[path] = ConfigError(
                f"{path}:1: model {exp.model!r} already has an experiment in "
                f"{by_model[exp.model].name}; one active experiment per model"
            )
            continue
        if exp.name in report.experiments:
            report.errors[path] = ConfigError(f"{path}:1: duplicate experiment name {exp.name!r}")
            continue
        by_model[exp.model] = path
        report.experiments[exp.name] = loaded
    return report
