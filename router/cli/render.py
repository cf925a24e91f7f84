"""Every terminal rendering of a report: tables built from the reports' plain data.

Tables are ``Grid``s: a grid is drawn as a table, stretched to the full width, when every cell
fits in full; on a narrower terminal each row is stacked instead (its first cell as a heading,
then ``column value`` pairs flowed across the width), so no number is ever cut to "0.9…".
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from router.reports.experiment import COMPARED

CELL_GAP = 3


class Grid:
    """A table that fits its terminal: whole cells in columns, or each row stacked."""

    def __init__(self, *headers: str, title: str | None = None) -> None:
        self.headers = list(headers)
        self.title = title
        self.rows: list[tuple[list[str], str | None]] = []

    def add_row(self, *cells: str, style: str | None = None) -> None:
        self.rows.append((list(cells), style))

    def width_needed(self) -> int:
        """Characters the table takes with every cell on one line (borders and padding in)."""
        widths = [Text.from_markup(h).cell_len for h in self.headers]
        for cells, _ in self.rows:
            for i, cell in enumerate(cells):
                widths[i] = max(widths[i], max(_lines(cell)))
        return sum(widths) + 3 * len(widths) + 1

    def table(self) -> Table:
        table = Table(title=self.title, expand=True)
        for header in self.headers:
            table.add_column(header, no_wrap=True, overflow="fold")
        for cells, style in self.rows:
            table.add_row(*cells, style=style)
        return table

    def stacked(self, width: int) -> Group:
        parts: list[RenderableType] = []
        if self.title:
            parts.append(Text(self.title, style="bold italic"))
        for cells, style in self.rows:
            heading = Text.assemble((f"{self.headers[0]} ", "dim"))
            heading.append_text(Text.from_markup(cells[0], style=style or "bold"))
            parts.append(heading)
            pairs = [
                Text.assemble((f"{header} ", "dim"), Text.from_markup(cell))
                for header, cell in zip(self.headers[1:], cells[1:], strict=True)
            ]
            parts.extend(_flow(pairs, width))
        if not self.rows:
            parts.append(Text("(none)", style="dim"))
        return Group(*parts)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if self.width_needed() <= options.max_width:
            yield self.table()
        else:
            yield self.stacked(options.max_width)


def _lines(cell: str) -> Iterable[int]:
    return (Text.from_markup(line).cell_len for line in cell.split("\n"))


def _flow(pairs: list[Text], width: int, indent: int = 2) -> list[Text]:
    """``column value`` pairs laid out left to right, a new line when the next would not fit."""
    lines: list[Text] = []
    line = Text(" " * indent)
    for pair in pairs:
        used = line.cell_len > indent
        if used and line.cell_len + CELL_GAP + pair.cell_len > width:
            lines.append(line)
            line, used = Text(" " * indent), False
        if used:
            line.append(" " * CELL_GAP)
        line.append_text(pair)
    lines.append(line)
    return lines


def _fmt(value: Any, spec: str = ".3f") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return "-"
    return format(value, spec)


def unit_line(report: dict[str, Any]) -> str:
    """Which unit the intervals, differences and the sample-ratio check counted."""
    if report.get("unit") != "user":
        return "unit of analysis: the request (assignment is not sticky)"
    users = ", ".join(
        f"{row['variant']} {row['by_user']['users']}"
        + (
            f" (+{row['by_user']['keyless']} requests without a key)"
            if row["by_user"]["keyless"]
            else ""
        )
        + (" [partial: per-request figures shown]" if row["by_user"]["partial"] else "")
        for row in report["variants"]
        if "by_user" in row
    )
    return (
        "unit of analysis: the user (sticky assignment): reward, accuracy and error-rate "
        f"intervals and differences by the delta method over users, SRM on users; users {users}; "
        "positive rate per request"
    )


def _interval(pair: list[float] | None) -> str:
    return "-" if pair is None else f"[{pair[0]:.3f}, {pair[1]:.3f}]"


def line(markup: str) -> Text:
    return Text.from_markup(markup)


def render_report(console: Console, report: dict[str, Any]) -> None:
    console.print(report_view(report))


def report_view(report: dict[str, Any]) -> Group:
    """``turnout report``: traffic, outcomes, the SRM check, differences, a bandit's arms."""
    parts: list[RenderableType] = [
        line(
            f"[bold]{escape(report['experiment'])}[/bold] (model {report['model']}, policy "
            f"{report['policy']}, control {report['control']}, config {report['config_version']})"
        )
    ]
    traffic = Grid(
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
    outcomes = Grid(
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
    parts += [traffic, outcomes]
    parts.append(line(unit_line(report)))
    check = report["srm"]
    if not check["checked"]:
        parts.append(line(f"sample ratio: not checked ({check['reason']})"))
    else:
        verdict = "[red]MISMATCH[/red]" if check["mismatch"] else "[green]ok[/green]"
        parts.append(
            line(
                f"sample ratio: {verdict} (chi2 {_fmt(check['chi2'])}, df {check['df']}, "
                f"p {_fmt(check['p_value'], '.3g')}, flagged below {check['alpha']}; "
                f"observed {check.get('unit', 'request')}s "
                f"{orjson.dumps(check['observed']).decode()})"
            )
        )
    if report["comparisons"]:
        diff = Grid(
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
        parts.append(diff)
    if report.get("bandit"):
        parts.append(bandit_view(report["bandit"]))
    return Group(*parts)


def bandit_view(section: dict[str, Any]) -> Group:
    table = Grid(
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
    posterior = section.get("posterior") or {}
    age = posterior.get("age_seconds")
    return Group(
        table,
        line(
            f"expected regret so far {section['expected_regret']:.1f}; "
            f"{section['sticky_pulls']} of {section['pulls']} assignments sticky; posterior age "
            f"{_fmt(age, '.1f')} s (refreshed every "
            f"{_fmt(posterior.get('refresh_interval'), 'g')} s, "
            f"Redis {posterior.get('redis', '-')})"
        ),
    )


def render_shadow_report(console: Console, report: dict[str, Any]) -> None:
    console.print(shadow_view(report))


def shadow_view(report: dict[str, Any]) -> Group:
    table = Grid(
        "primary",
        "shadow",
        "pairs",
        "agree",
        "95% CI",
        "McNemar p",
        "delta mean",
        "p5/p50/p95",
        "p50 ms (p/s)",
        "p99 ms (p/s)",
        "err/drop",
        "acc (p/s)",
        title=f"shadow comparison: {report['experiment']}",
    )
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
    parts: list[RenderableType] = [table]
    for row in report["pairs"]:
        parts.append(
            line(
                f"confusion {row['primary']} (rows) x {row['shadow']} (columns): "
                f"{escape(orjson.dumps(row['confusion']).decode())}"
            )
        )
    return Group(*parts)


def show(value: Any) -> str:
    return "null" if value is None else json.dumps(value) if not isinstance(value, str) else value


def when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def events_table(events: list[dict[str, Any]], title: str = "audit history") -> Grid:
    table = Grid(
        "time (UTC)", "by", "action", "experiment", "flag", "old", "new", "reason", title=title
    )
    for e in events:
        table.add_row(
            when(float(e["ts"])),
            escape(str(e["actor"])),
            str(e["action"]),
            str(e["experiment"]),
            str(e["flag"] or ""),
            escape(show(e["old"])),
            escape(show(e["new"])),
            escape(str(e["reason"])),
        )
    return table


def flags_table(data: dict[str, Any]) -> Grid:
    table = Grid("experiment", "flag", "value", "source")
    for name, item in data["experiments"].items():
        for flag, value in item["flags"].items():
            source = "override" if flag in item["overrides"] else "default"
            style = "bold yellow" if source == "override" else None
            table.add_row(name, flag, escape(show(value)), source, style=style)
    return table


def weights_text(weights: dict[str, float]) -> str:
    return ", ".join(f"{v} {w:g}%" for v, w in weights.items())


def status_table(experiments: dict[str, Any], flags: dict[str, Any] | None) -> Grid:
    table = Grid(
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
    console.print(rollout_view(data))


def rollout_view(data: dict[str, Any]) -> Group:
    """``turnout rollout status``: where the rollout stands, each gate, what comes next."""
    parts: list[RenderableType] = [
        line(
            f"[bold]{data['experiment']}[/bold] (control {data['control']}); weights in force "
            f"{weights_text(data['weights'])}"
        )
    ]
    rollout = data.get("rollout")
    if rollout:
        step = rollout["step"]
        where = "-" if step is None else ("entry gate" if step < 0 else f"{step + 1}")
        parts.append(
            line(
                f"candidate {rollout['candidate']}: {rollout['phase']}, step {where} of "
                f"{rollout['steps']} ({_fmt(rollout['percent'], 'g')}%), "
                f"{_fmt(rollout['step_age_s'], '.0f')} s on this step; "
                f"alpha {rollout['alpha']:g} ({rollout['alpha_per_gate_and_step']:.2g} per gate "
                "and step)"
            )
        )
        if rollout["reason"]:
            parts.append(Text(f"last change: {rollout['reason']}"))
        gates = Grid("gate", "verdict", "estimate", "interval", "n", "method", "detail")
        for gate in rollout["gates"]:
            n = ", ".join(f"{k} {v:g}" for k, v in (gate.get("n") or {}).items())
            gates.add_row(
                gate["gate"],
                gate["verdict"],
                _fmt(gate.get("estimate"), ".4f"),
                _interval(gate.get("interval")),
                n or "-",
                escape(gate.get("method", "")),
                escape(gate.get("detail", "")),
            )
        parts.append(gates)
        parts.append(Text(f"next: {rollout['next']}"))
    srm = data.get("srm")
    if srm:
        last = srm.get("last") or {}
        parts.append(
            line(
                f"srm ({srm['action']}, p {srm['p']:g}): {srm['status']}; anytime p "
                f"{_fmt(last.get('p_value'), '.2g')}, assigned {escape(str(last.get('counts')))}"
            )
        )
    history = Grid("when", "action", "by", "from", "to", "reason", title="history")
    for item in data.get("history", [])[-10:]:
        history.add_row(
            when(float(item.get("ts", 0))),
            str(item.get("action")),
            escape(str(item.get("actor", ""))),
            _position(item.get("from")),
            _position(item.get("to")),
            escape(str(item.get("reason", ""))),
        )
    parts.append(history)
    return Group(*parts)


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


def replay_table(by_version: dict[str, int], accuracy: dict[str, float]) -> Grid:
    table = Grid("version", "requests", "accuracy on the file's labels")
    for version, n in sorted(by_version.items()):
        acc = accuracy.get(version)
        table.add_row(version, str(n), "-" if acc is None else f"{acc:.4f}")
    return table


def models_table(cards: list[dict[str, Any]]) -> Grid:
    table = Grid("model", "version", "recipe", "F1", "ROC AUC", "accuracy", "trained at")
    for c in cards:
        m = c.get("metrics", {})
        table.add_row(
            c["model"],
            c["version"],
            str(c.get("recipe")),
            f"{m.get('f1', m.get('macro_f1', 0)):.4f}",
            f"{m.get('roc_auc', 0):.4f}",
            f"{m.get('accuracy', 0):.4f}",
            str(c.get("trained_at")),
        )
    return table


VERDICT_STYLE = {"drift": "red", "ok": "green", "insufficient": "yellow", "skipped": "dim"}


def _verdict(verdict: str) -> str:
    return f"[{VERDICT_STYLE.get(verdict, 'white')}]{verdict}[/]"


def render_drift(console: Console, report: dict[str, Any]) -> None:
    """A drift check: one row per version (prediction) and per pair (paired), then the inputs."""
    cur, ref = report["current"], report["reference"]
    params = report["params"]
    console.print(
        f"[bold]{report['experiment']}[/bold] drift check at {when(report['checked_at'])}: "
        f"{'[red]drift found[/red]' if report['drift'] else '[green]no drift[/green]'}",
        highlight=False,
    )
    reference = (
        "each version's validation scores (model card)"
        if ref["kind"] == "training"
        else f"{when(ref['since'])} .. {when(ref['until'])}"
    )
    console.print(
        f"current {when(cur['since'])} .. {when(cur['until'])}; reference: {reference}; "
        f"data: {report['source']['kind']}",
        highlight=False,
    )
    table = Grid(
        "version",
        "check",
        "verdict",
        "n now",
        "n ref",
        "PSI",
        "KS",
        "KS p",
        "Wasserstein",
        "positive rate now / ref",
        "why",
        title="predictions",
    )
    for c in report["checks"]:
        d = c["distances"] or {}
        rates = (
            f"{_fmt(c['positive_rate_current'])} / {_fmt(c['positive_rate_reference'])}"
            if c["positive_rate_current"] is not None
            else "-"
        )
        table.add_row(
            c["version"],
            c["check"],
            _verdict(c["verdict"]),
            show(d.get("n_current")),
            show(d.get("n_reference")),
            _fmt(d.get("psi")),
            _fmt(d.get("ks")),
            _fmt(d.get("ks_p"), ".2g"),
            _fmt(d.get("wasserstein")),
            rates,
            c["reason"],
        )
    console.print(table)
    if report["input"] is not None:
        i = report["input"]
        console.print(
            f"inputs ({i['kind'] or '-'}): {_verdict(i['verdict'])}: {i['reason']}",
            highlight=False,
        )
    if report["html"]:
        console.print(f"HTML report: {report['html']}", highlight=False)
    console.print(
        f"thresholds: KS p < {params['check_alpha']:.3g} ({params['alpha']:g} over "
        f"{params['horizon'] / 86400:g} days of checks every {params['interval'] / 3600:g} h), "
        f"PSI >= {params['psi_min']:g} or Wasserstein >= {params['distance_min']:g}, "
        f"at least {params['min_samples']} per window",
        highlight=False,
    )
    skipped = report["source"].get("skipped") or {}
    if any(skipped.values()) or report["source"].get("unreadable_files"):
        console.print(
            f"[yellow]skipped captured lines:[/yellow] {skipped.get('corrupt', 0)} corrupt, "
            f"{skipped.get('truncated', 0)} truncated; unreadable files: "
            f"{report['source'].get('unreadable_files', 0)}",
            highlight=False,
        )


def render_retrain(console: Console, result: dict[str, Any]) -> None:
    """A retraining's paired evaluation, its decision, and where the version went."""
    ev = result["evaluation"]
    table = Table(
        "set",
        "rows",
        f"AUC {result['version']}",
        f"AUC {ev['production']}",
        "difference [95%]",
        "accuracy new / prod",
        "McNemar b / c (p)",
        title=f"{result['version']} against {ev['production']} on the same rows",
    )
    for label, key in (("recent window hold-out", "recent"), ("frozen base hold-out", "holdout")):
        e = ev[key]
        m = e["mcnemar"]
        table.add_row(
            label,
            show(e["rows"]),
            _fmt(e["auc_candidate"], ".4f"),
            _fmt(e["auc_production"], ".4f"),
            f"{e['auc_difference']:+.4f} [{e['interval'][0]:+.4f}, {e['interval'][1]:+.4f}]",
            f"{e['accuracy_candidate']:.4f} / {e['accuracy_production']:.4f}",
            f"{m['b']} / {m['c']} ({m['p_value']:.3g})",
        )
    console.print(table)
    if ev["accepted"]:
        console.print(
            f"[green]accepted[/green]: better on the recent window, not worse on the hold-out "
            f"(margin {ev['margin']:g})",
            highlight=False,
        )
    else:
        verdict = "[yellow]forced[/yellow] despite" if ev["forced"] else "[red]refused[/red]:"
        console.print(f"{verdict} " + "; ".join(ev["reasons"]), highlight=False)
    if "registered" in result:
        console.print(f"registered {result['version']} in {result['registered']}", highlight=False)
    deploy = result.get("deploy")
    if deploy:
        console.print(f"deployed as {deploy['as']}, worker at {deploy['url']}", highlight=False)
