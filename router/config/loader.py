"""Experiment YAML files -> validated experiments; refusals name the file, line and reason.

A file larger than the size cap is refused before it is read whole. ``scan_directory`` reads a
folder file by file; ``router.config.resolve`` then decides which file serves each model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
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

DEFAULT_MAX_BYTES = 1_048_576


@dataclass(frozen=True)
class LoadedExperiment:
    experiment: Experiment
    path: Path
    config_version: str
    content: str = field(default="", repr=False, compare=False)
    """The file's text, kept as its last good version (``router.core.state``)."""


@dataclass(frozen=True)
class LoadReport:
    experiments: dict[str, LoadedExperiment] = field(default_factory=dict)
    errors: dict[Path, ConfigError] = field(default_factory=dict)
    """Refused files and why."""
    conflicts: dict[str, tuple[Path, ...]] = field(default_factory=dict)
    """Models claimed by several files, none of which serves (model -> the files)."""


Scan = Mapping[Path, "LoadedExperiment | ConfigError"]
"""Every experiment file of a folder, read and validated one by one (no cross-file rule)."""


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


def experiment_from_data(
    data: Any, text: str, path: Path, allowed_hosts: list[str] | None = None
) -> LoadedExperiment:
    """The experiment of a file already parsed and validated elsewhere (its YAML ``data``);
    a refusal here names the file only (``parse_experiment`` gives the line)."""
    try:
        experiment = Experiment.model_validate(data, context={"allowed_hosts": allowed_hosts})
    except ValidationError as exc:
        raise ConfigError(
            f"{path}: {exc.error_count()} errors; read it again for the lines"
        ) from None
    return LoadedExperiment(experiment, path, config_version(text.encode()), text)


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
    return LoadedExperiment(experiment, path, config_version(text.encode()), text)


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


def read_capped(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """A file's text; over ``max_bytes`` it is refused before being read whole."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ConfigError(_too_large(path, size, max_bytes))
        with path.open("rb") as handle:
            raw = handle.read(max_bytes + 1)  # the file may grow between stat and read
    except OSError as exc:
        raise ConfigError(f"{path}:1: unreadable: {exc}") from None
    if len(raw) > max_bytes:
        raise ConfigError(_too_large(path, len(raw), max_bytes))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}:1: not UTF-8: {exc}") from None


def _too_large(path: Path, size: int, max_bytes: int) -> str:
    return (
        f"{path}:1: {size} bytes, over the limit of {max_bytes} bytes "
        "(TURNOUT_EXPERIMENT_MAX_BYTES); not read"
    )


def scan_directory(
    directory: Path, allowed_hosts: list[str] | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> dict[Path, LoadedExperiment | ConfigError]:
    """Every experiment file of ``directory``, each loaded or refused on its own."""
    if not directory.is_dir():
        raise ConfigError(f"{directory}: experiments folder not found")
    scan: dict[Path, LoadedExperiment | ConfigError] = {}
    for path in experiment_files(directory):
        try:
            scan[path] = parse_experiment(read_capped(path, max_bytes), path, allowed_hosts)
        except ConfigError as exc:
            scan[path] = exc
    return scan


def refuse_unsigned(
    scan: Scan, feedback_secret: bool
) -> dict[Path, LoadedExperiment | ConfigError]:
    """``scan`` with every experiment whose feedback is signed refused when the gateway has no
    feedback secret: it could neither make nor check its tokens."""
    if feedback_secret:
        return dict(scan)
    return {
        path: (
            ConfigError(
                f"{path}: feedback.auth: signed needs TURNOUT_FEEDBACK_SECRET, the same on every "
                "gateway replica; it is not set here"
            )
            if isinstance(item, LoadedExperiment) and item.experiment.feedback.auth == "signed"
            else item
        )
        for path, item in scan.items()
    }
