"""What the shipped configuration refers to: PromQL metric names, CLI commands, settings.

Shared by tests/unit/project/test_config_files.py, tests/unit/project/test_packaging.py and
tests/e2e/test_observability.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer.main
import yaml
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from router.cli import app
from router.core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config"
ALERTS = CONFIG / "alerts.yml"
DASHBOARDS = sorted((CONFIG / "grafana" / "dashboards").glob("*.json"))

# PromQL words that are not metric names: aggregations, functions are recognised by "(".
PROMQL_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
}
# Series that Prometheus itself makes for every target.
PROMETHEUS_SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}

SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "info": ("_info",),
    "unknown": ("",),
}


def metric_names(expr: str) -> set[str]:
    """Every metric (or recorded series) name a PromQL expression selects."""
    label_values = re.fullmatch(r"\s*label_values\(\s*([A-Za-z_:][\w:]*)\s*(?:\{[^}]*\})?,.*", expr)
    if label_values:  # a Grafana variable query
        return {label_values.group(1)}
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    text = re.sub(r"'(?:\\.|[^'\\])*'", "''", text)
    text = re.sub(r"\{[^{}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # Grafana variables
    names = set()
    for match in re.finditer(r"(?<![\w.:])[A-Za-z_:][\w:]*", text):
        word = match.group(0)
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        if word.lower() in PROMQL_KEYWORDS:
            continue
        names.add(word)
    return names


@dataclass(frozen=True)
class Expression:
    where: str
    expr: str


def rule_groups(path: Path = ALERTS) -> list[dict[str, Any]]:
    return list(yaml.safe_load(path.read_text())["groups"])


def rules(path: Path = ALERTS) -> Iterator[dict[str, Any]]:
    for group in rule_groups(path):
        yield from group["rules"]


def recorded_names(path: Path = ALERTS) -> set[str]:
    return {rule["record"] for rule in rules(path) if "record" in rule}


def rule_expressions(path: Path = ALERTS) -> list[Expression]:
    return [
        Expression(f"{path.name}: {rule.get('alert') or rule.get('record')}", rule["expr"])
        for rule in rules(path)
    ]


def dashboard_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # collapsed rows hold their panels


def dashboard_expressions(paths: Iterable[Path] = DASHBOARDS) -> list[Expression]:
    found = []
    for path in paths:
        board = json.loads(path.read_text())
        for panel in dashboard_panels(board):
            for target in panel.get("targets", []):
                found.append(Expression(f"{path.name}: {panel['title']}", target["expr"]))
        for variable in board.get("templating", {}).get("list", []):
            if variable.get("type") == "query":
                query = variable["query"]
                text = query["query"] if isinstance(query, dict) else query
                found.append(Expression(f"{path.name}: variable {variable['name']}", text))
        for annotation in board.get("annotations", {}).get("list", []):
            if "expr" in annotation:
                found.append(
                    Expression(f"{path.name}: annotation {annotation['name']}", annotation["expr"])
                )
    return found


def all_expressions() -> list[Expression]:
    return rule_expressions() + dashboard_expressions()


def sample_names(families: Iterable[tuple[str, str]]) -> set[str]:
    """Series names a scrape can hold for (family name, type) pairs."""
    names = set()
    for name, kind in families:
        for suffix in SUFFIXES.get(kind, ("",)):
            names.add(name + suffix)
    return names


def registry_families(registry: Collector) -> set[tuple[str, str]]:
    return {(family.name, family.type) for family in registry.collect()}


def scrape_families(text: str) -> set[tuple[str, str]]:
    """Families of a real ``/metrics`` answer (declared ones appear even before a sample)."""
    return {(family.name, family.type) for family in text_string_to_metric_families(text)}


def scrape_samples(text: str) -> set[str]:
    """Series names that have at least one sample in a real ``/metrics`` answer."""
    return {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }


def unknown_names(expressions: Iterable[Expression], exported: set[str]) -> dict[str, set[str]]:
    """Names used in ``expressions`` that are neither exported, recorded nor Prometheus' own."""
    known = exported | recorded_names() | PROMETHEUS_SYNTHETIC
    unknown: dict[str, set[str]] = {}
    for item in expressions:
        missing = metric_names(item.expr) - known
        if missing:
            unknown.setdefault(item.where, set()).update(missing)
    return unknown


# --- the CLI and the settings -----------------------------------------------------------------


def settings_env_names() -> set[str]:
    return {f"TURNOUT_{name.upper()}" for name in Settings.model_fields}


class CliMismatch(Exception):
    """A command line that the real ``turnout`` CLI would refuse."""


def parse_cli(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse ``turnout ARGV`` with the real typer command tree, without running anything.

    Returns the command path (``"worker"``, ``"models list"``) and its parsed parameters;
    raises ``CliMismatch`` for an unknown command or option, a missing or ill-typed value.
    (Duck-typed: typer ships its own copy of click.)
    """
    command: Any = typer.main.get_command(app)
    path: list[str] = []
    args = list(argv)
    parent: Any = None
    while hasattr(command, "list_commands"):  # a group: descend into the named command
        if not args:
            raise CliMismatch(f"'turnout {' '.join(path)}' needs a command")
        name, *args = args
        ctx = command.context_class(command, info_name=" ".join(["turnout", *path]), parent=parent)
        sub = command.get_command(ctx, name)
        if sub is None:
            raise CliMismatch(f"no such command: turnout {' '.join([*path, name])}")
        path.append(name)
        command, parent = sub, ctx
    try:
        ctx = command.make_context(" ".join(["turnout", *path]), args, parent=parent)
    except Exception as exc:
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        raise CliMismatch(f"turnout {' '.join(argv)}: {message}") from exc
    return " ".join(path), dict(ctx.params)


def interpolate(value: str, variables: dict[str, str] | None = None) -> str:
    """Compose-style ``${VAR}``, ``${VAR:-default}``, ``${VAR:?message}`` substitution."""
    variables = variables or {}

    def sub(match: re.Match[str]) -> str:
        name, op, default = match.group(1), match.group(2), match.group(3)
        if name in variables:
            return variables[name]
        if op == ":-":
            return default or ""
        return f"test-{name.lower()}"

    return re.sub(r"\$\{(\w+)(?:(:-|:\?|-|\?)([^}]*))?\}", sub, value)
