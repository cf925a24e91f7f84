"""Every terminal rendering of a report: rich tables built from the reports' plain data."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from router.reports.experiment import COMPARED


def _fmt(value: Any, spec: str = ".3f") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return "-"
    return format(value, spec)


def _interval(pair: list[float] | None) -> str:
    return "-" if pair is None else f"[{pair[0]:.3f}, {pair[1]:.3f}]"


def render_report(console: Console, report: dict[str, Any]) -> None:
    console.print(
        f"[bold]{report['experiment']}[/bold] (model {report['model']}, policy "
        f"{report['policy']}, control {report['control']}, config {report['config_version']})",
        highlight=False,
    )
    traffic = Table(
        "variant",
        "version",
        "weight %",
        "share %",
        "assigned",
        "served",
        "errors",
        "fallbacks",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        title="traffic",
    )
    outcomes = Table(
        "variant",
        "positive rate",
        "mean score",
        "feedback",
        "mean reward [95%]",
        "accuracy [95%]",
        title="outcomes",
    )
    for row in report["variants"]:
        fb = row["feedback"]
        lat = row["latency_ms"]
        name = row["variant"] + (" (control)" if row["control"] else "")
        traffic.add_row(
            name,
            row["version"] or "-",
            _fmt(row["weight_pct"], "g"),
            _fmt(row["share_pct"], ".1f"),
            str(row["assigned"]),
            str(row["served"]),
            str(row["errors"]),
            str(row["fallbacks"]),
            _fmt(lat["p50"], ".1f"),
            _fmt(lat["p95"], ".1f"),
            _fmt(lat["p99"], ".1f"),
        )
        outcomes.add_row(
            name,
            _fmt(row["positive_rate"]),
            _fmt(row["mean_score"]),
            str(fb["count"]),
            f"{_fmt(fb['mean_reward'])} {_interval(fb['interval'])}",
            f"{_fmt(fb['accuracy'])} {_interval(fb['accuracy_interval'])}",
        )
    console.print(traffic)
    console.print(outcomes)
    check = report["srm"]
    if not check["checked"]:
        console.print(f"sample ratio: not checked ({check['reason']})", highlight=False)
    else:
        verdict = "[red]MISMATCH[/red]" if check["mismatch"] else "[green]ok[/green]"
        console.print(
            f"sample ratio: {verdict} (chi2 {_fmt(check['chi2'])}, df {check['df']}, "
            f"p {_fmt(check['p_value'], '.3g')}, flagged below {check['alpha']}; "
            f"observed {orjson.dumps(check['observed']).decode()})",
            highlight=False,
        )
    if report["comparisons"]:
        diff = Table(
            "variant vs control", *COMPARED, title="difference from control [95%], two-sided p"
        )
        for item in report["comparisons"]:
            cells = []
            for metric in COMPARED:
                d = item[metric]
                cells.append(
                    f"{_fmt(d['difference'], '+.3f')} {_interval(d['interval'])} "
                    f"p={_fmt(d['p_value'], '.3g')}"
                )
            diff.add_row(f"{item['variant']} - {item['control']}", *cells)
        console.print(diff)
    if report.get("bandit"):
        render_bandit(console, report["bandit"])


def render_bandit(console: Console, section: dict[str, Any]) -> None:
    table = Table(
        "arm",
        "alpha",
        "beta",
        "mean [95%]",
        "P(best)",
        "share now",
        "pulls",
        "sticky",
        "regret",
        "naive mean",
        "IPW",
        "SNIPW",
        title="bandit posteriors",
    )
    for arm in section["arms"]:
        name = arm["arm"] + ("" if arm["sampled"] else " (not an arm now)")
        table.add_row(
            name,
            _fmt(arm["alpha"], ".1f"),
            _fmt(arm["beta"], ".1f"),
            f"{_fmt(arm['mean'])} {_interval(arm['interval'])}",
            _fmt(arm["prob_best"]),
            _fmt(arm["traffic_share"]),
            str(arm["pulls"]),
            str(arm["sticky_pulls"]),
            _fmt(arm["expected_regret"], ".1f"),
            _fmt(arm["naive_mean"]),
            _fmt(arm["ipw_mean"]),
            _fmt(arm["snipw_mean"]),
        )
    console.print(table)
    posterior = section.get("posterior") or {}
    age = posterior.get("age_seconds")
    console.print(
        f"expected regret so far {section['expected_regret']:.1f}; "
        f"{section['sticky_pulls']} of {section['pulls']} assignments sticky; posterior age "
        f"{_fmt(age, '.1f')} s (refreshed every {_fmt(posterior.get('refresh_interval'), 'g')} s, "
        f"Redis {posterior.get('redis', '-')})",
        highlight=False,
    )


def render_shadow_report(console: Console, report: dict[str, Any]) -> None:
    table = Table(title=f"shadow comparison: {report['experiment']}")
    for column in ("primary", "shadow", "pairs", "agree", "95% CI", "McNemar p"):
        table.add_column(column)
    for column in ("delta mean", "p5/p50/p95", "p50 ms (p/s)", "p99 ms (p/s)", "err/drop"):
        table.add_column(column)
    table.add_column("acc (p/s)")
    for row in report["pairs"]:
        ci = row["agreement_interval"]
        delta = row["score_delta"]
        lat = row["latency_ms"]
        fb = row["labelled_feedback"]
        table.add_row(
            row["primary"],
            row["shadow"],
            str(row["pairs"]),
            _fmt(row["agreement"]),
            "-" if ci is None else f"{ci[0]:.3f}-{ci[1]:.3f}",
            _fmt(row["mcnemar"]["p_value"] if row["mcnemar"] else None, ".3g"),
            _fmt(delta["mean"], "+.3f"),
            "/".join(_fmt(delta[q], "+.2f") for q in ("p5", "p50", "p95")),
            f"{_fmt(lat['primary']['p50'], '.1f')}/{_fmt(lat['shadow']['p50'], '.1f')}",
            f"{_fmt(lat['primary']['p99'], '.1f')}/{_fmt(lat['shadow']['p99'], '.1f')}",
            f"{row['shadow_errors']}/{row['shadow_dropped']}",
            f"{_fmt(fb['primary_accuracy'])}/{_fmt(fb['shadow_accuracy'])} (n={fb['n']})",
        )
    console.print(table)
    for row in report["pairs"]:
        console.print(
            f"confusion {row['primary']} (rows) x {row['shadow']} (columns): "
            f"{orjson.dumps(row['confusion']).decode()}",
            highlight=False,
        )


def show(value: Any) -> str:
    return "null" if value is None else json.dumps(value) if not isinstance(value, str) else value


def when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def events_table(events: list[dict[str, Any]], title: str = "audit history") -> Table:
    table = Table("time (UTC)", "by", "action", "experiment", "flag", "old", "new", "reason")
    table.title = title
    for e in events:
        table.add_row(
            when(float(e["ts"])),
            str(e["actor"]),
            str(e["action"]),
            str(e["experiment"]),
            str(e["flag"] or ""),
            show(e["old"]),
            show(e["new"]),
            str(e["reason"]),
        )
    return table


def flags_table(data: dict[str, Any]) -> Table:
    table = Table("experiment", "flag", "value", "source")
    for name, item in data["experiments"].items():
        for flag, value in item["flags"].items():
            source = "override" if flag in item["overrides"] else "default"
            style = "bold yellow" if source == "override" else None
            table.add_row(name, flag, show(value), source, style=style)
    return table


def weights_text(weights: dict[str, float]) -> str:
    return ", ".join(f"{v} {w:g}%" for v, w in weights.items())


def status_table(experiments: dict[str, Any], flags: dict[str, Any] | None) -> Table:
    table = Table(
        "experiment", "model", "policy", "weights", "rollout / srm", "flags", "upstreams", "config"
    )
    for exp in experiments["experiments"]:
        health = " ".join(
            f"{v} {'[green]up[/green]' if u.get('ready', u['healthy']) else '[red]down[/red]'}"
            + ("" if u.get("protocol", "turnout") == "turnout" else f" ({u['protocol']})")
            + ("" if u["breaker"] == "closed" else f" ({u['breaker']})")
            for v, u in exp["upstreams"].items()
        )
        table.add_row(
            exp["name"],
            exp["model"],
            f"{exp['policy']} (control {exp['control']})",
            weights_text((exp.get("rollout") or {}).get("weights") or exp["weights"]),
            rollout_cell(exp.get("rollout")),
            flag_summary(flags, exp["name"]),
            health,
            exp["config_version"],
        )
    return table


def rollout_cell(summary: dict[str, Any] | None) -> str:
    """A rollout's phase and step, and the SRM check's status, in one table cell."""
    if not summary:
        return "-"
    parts = []
    rollout = summary.get("rollout")
    if rollout:
        step = rollout.get("step")
        where = "" if step is None else f" step {step + 1}/{len(rollout['steps'])}"
        parts.append(f"{rollout['candidate']} {rollout['phase']}{where}")
    srm = summary.get("srm")
    if srm:
        colour = {"ok": "green", "warn": "yellow", "halt": "bold red"}.get(srm["status"], "white")
        parts.append(f"srm [{colour}]{srm['status']}[/{colour}]")
    return ", ".join(parts) or "-"


def srm_problems(experiments: dict[str, Any]) -> list[str]:
    """Why an experiment's SRM check warns or halts, one line each."""
    lines = []
    for exp in experiments["experiments"]:
        srm = (exp.get("rollout") or {}).get("srm")
        if srm and srm["status"] != "ok":
            last = srm.get("last") or {}
            lines.append(
                f"{exp['name']}: sample ratio mismatch ({srm['status']}): assigned "
                f"{last.get('counts')}, expected shares {last.get('expected')}, anytime p "
                f"{_fmt(last.get('p_value'), '.2g')}"
            )
    return lines


def render_rollout(console: Console, data: dict[str, Any]) -> None:
    """``turnout rollout status``: where the rollout stands, each gate, what comes next."""
    console.print(
        f"[bold]{data['experiment']}[/bold] (control {data['control']}); weights in force "
        f"{weights_text(data['weights'])}",
        highlight=False,
    )
    rollout = data.get("rollout")
    if rollout:
        step = rollout["step"]
        where = "-" if step is None else ("entry gate" if step < 0 else f"{step + 1}")
        console.print(
            f"candidate {rollout['candidate']}: {rollout['phase']}, step {where} of "
            f"{rollout['steps']} ({_fmt(rollout['percent'], 'g')}%), "
            f"{_fmt(rollout['step_age_s'], '.0f')} s on this step; "
            f"alpha {rollout['alpha']:g} ({rollout['alpha_per_gate_and_step']:.2g} per gate "
            "and step)",
            highlight=False,
        )
        if rollout["reason"]:
            console.print(f"last change: {rollout['reason']}", highlight=False)
        gates = Table("gate", "verdict", "estimate", "interval", "n", "method", "detail")
        for gate in rollout["gates"]:
            n = ", ".join(f"{k} {v:g}" for k, v in (gate.get("n") or {}).items())
            gates.add_row(
                gate["gate"],
                gate["verdict"],
                _fmt(gate.get("estimate"), ".4f"),
                _interval(gate.get("interval")),
                n or "-",
                gate.get("method", ""),
                gate.get("detail", ""),
            )
        console.print(gates)
        console.print(f"next: {rollout['next']}", highlight=False)
    srm = data.get("srm")
    if srm:
        last = srm.get("last") or {}
        console.print(
            f"srm ({srm['action']}, p {srm['p']:g}): {srm['status']}; anytime p "
            f"{_fmt(last.get('p_value'), '.2g')}, assigned {last.get('counts')}",
            highlight=False,
        )
    history = Table("when", "action", "by", "from", "to", "reason", title="history")
    for item in data.get("history", [])[-10:]:
        history.add_row(
            when(float(item.get("ts", 0))),
            str(item.get("action")),
            str(item.get("actor", "")),
            _position(item.get("from")),
            _position(item.get("to")),
            str(item.get("reason", "")),
        )
    console.print(history)


def _position(value: Any) -> str:
    if not isinstance(value, dict):
        return "-"
    return f"{value.get('phase')} {_fmt(value.get('percent'), 'g')}%"


def flag_summary(flags: dict[str, Any] | None, name: str) -> str:
    if flags is None:
        return "?"
    item = flags["experiments"].get(name)
    if item is None:
        return "?"
    values = item["flags"]
    parts = []
    if values.get("kill_switch"):
        parts.append("[bold red]KILL SWITCH[/bold red]")
    if values.get("forced_variant"):
        parts.append(f"[bold yellow]forced {values['forced_variant']}[/bold yellow]")
    if not values.get("shadow_enabled", True):
        parts.append("shadow off")
    if values.get("frozen"):
        parts.append("frozen")
    builtin = {"kill_switch", "forced_variant", "shadow_enabled", "frozen"}
    parts += [f"{k}={show(v)}" for k, v in item["overrides"].items() if k not in builtin]
    return ", ".join(parts) or "-"
