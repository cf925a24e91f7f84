"""``turnout validate --probe``: the printed verdict agrees with the exit code, against real
upstreams that cannot answer (a port nothing listens on, a worker answering 500)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from router.cli import app as cli
from router.local.processes import free_port
from tests.conftest import WorkerFactory, write_experiment


def experiment(name: str, v1: str, v2: str) -> str:
    return (
        f"name: {name}\nmodel: {name}\ncontrol: v1\nvariants:\n"
        f"  v1: {{url: '{v1}'}}\n  v2: {{url: '{v2}'}}\n"
        "policy: {kind: canary, weights: {v1: 90, v2: 10}}\n"
        'sample_input: {text: "have a nice day"}\n'
    )


@pytest.fixture(scope="module")
def upstreams(start_worker: WorkerFactory) -> dict[str, str]:
    return {
        "good": start_worker("v1").url,
        "failing": start_worker("v3", TURNOUT_WORKER_FAULT_STATUS="500").url,
        "dead": f"http://127.0.0.1:{free_port()}",
    }


def validate(path: Path, *extra: str) -> tuple[int, str]:
    argv = ["validate", str(path), "--probe", "--timeout", "2", *extra]
    result = CliRunner().invoke(cli, argv, env={"COLUMNS": "200"})
    return result.exit_code, result.output


@pytest.mark.parametrize("kind", ["failing", "dead"])
def test_a_failed_probe_is_printed_as_failed_and_exits_1(
    upstreams: dict[str, str], tmp_path: Path, kind: str
) -> None:
    path = write_experiment(
        tmp_path, experiment(f"probe-{kind}", upstreams["good"], upstreams[kind])
    )
    code, output = validate(path)
    assert code == 1, output
    verdicts = [line.split()[0] for line in output.splitlines() if str(path) in line]
    assert verdicts == ["failed"], output
    assert "probe v2 (" in output and "failed" in output.split("probe v2 (")[1]

    code, output = validate(path, "--json")
    assert code == 1, output
    report = json.loads(output)
    assert report["ok"] == [], report
    (failed,) = report["failed"]
    assert failed["name"] == f"probe-{kind}" and failed["verdict"] == "probe_failed"
    assert [p["ok"] for p in failed["probe"]] == [True, False]


def test_a_passing_probe_is_printed_ok_and_exits_0(
    upstreams: dict[str, str], tmp_path: Path
) -> None:
    path = write_experiment(
        tmp_path, experiment("probe-good", upstreams["good"], upstreams["good"])
    )
    code, output = validate(path)
    assert code == 0, output
    assert [line.split()[0] for line in output.splitlines() if str(path) in line] == ["ok"]
    code, output = validate(path, "--json")
    assert code == 0, output
    report = json.loads(output)
    assert [r["verdict"] for r in report["ok"]] == ["ok"] and report["failed"] == []
