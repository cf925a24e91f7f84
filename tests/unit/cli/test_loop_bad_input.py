"""turnout drift and turnout retrain: every bad input the issue lists is a clear error that
changes nothing (exit 2 for usage, 1 for a refusal), each in a test of its own."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from router.cli import app

runner = CliRunner()
EXPERIMENT = """\
name: exp
model: profanity
control: v1
variants:
  v1: {url: "http://127.0.0.1:8101"}
policy: {kind: blue_green, active: v1}
capture: {sample: 1.0, inputs: true}
"""


@pytest.fixture
def env(tmp_path: Path, models_dir: Path) -> dict[str, str]:
    folder = tmp_path / "experiments"
    folder.mkdir()
    (folder / "exp.yaml").write_text(EXPERIMENT)
    models = tmp_path / "models"
    shutil.copytree(models_dir, models)
    return {
        "TURNOUT_EXPERIMENTS_DIR": str(folder),
        "TURNOUT_MODELS_DIR": str(models),
        "TURNOUT_STATE_DIR": str(tmp_path / "state"),
        "TURNOUT_REDIS_URL": "redis://127.0.0.1:1/0",  # nothing listens: nothing may be written
    }


def run(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, " ".join(result.output.split())


# --- turnout drift --------------------------------------------------------------------------


def test_drift_current_that_does_not_parse(env: dict[str, str]) -> None:
    code, out = run(env, "drift", "exp", "--current", "1 day")
    assert code == 2 and "--current: malformed duration" in out


def test_drift_every_that_does_not_parse(env: dict[str, str]) -> None:
    code, out = run(env, "drift", "exp", "--every", "daily")
    assert code == 2 and "--every: malformed duration" in out


@pytest.mark.parametrize("reference", ["yesterday", "2026-11-01", "2026-11-01..later"])
def test_drift_reference_that_does_not_parse(env: dict[str, str], reference: str) -> None:
    code, out = run(env, "drift", "exp", "--reference", reference)
    assert code == 2 and "is not training or DATE..DATE" in out


def test_drift_reference_that_ends_before_it_starts(env: dict[str, str]) -> None:
    code, out = run(env, "drift", "exp", "--reference", "2026-11-08..2026-11-01")
    assert code == 2 and "ends before it starts" in out


def test_drift_reference_window_with_no_data(env: dict[str, str]) -> None:
    code, out = run(env, "drift", "exp", "--reference", "2020-01-01..2020-01-07")
    assert code == 1 and "no capture data of exp in that window" in out
    assert "nothing was checked or written" in out
    assert not (Path(env["TURNOUT_STATE_DIR"]) / "drift").exists()


def test_drift_unknown_experiment(env: dict[str, str]) -> None:
    code, out = run(env, "drift", "nope")
    assert code == 2 and "unknown experiment 'nope'" in out and "known: exp" in out


# --- turnout retrain ------------------------------------------------------------------------


def registry_state(env: dict[str, str]) -> list[tuple[str, int]]:
    root = Path(env["TURNOUT_MODELS_DIR"])
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*"))


def test_retrain_window_that_does_not_parse(env: dict[str, str]) -> None:
    before = registry_state(env)
    code, out = run(env, "retrain", "exp", "--recipe", "v1", "--as", "v9", "--window", "1 week")
    assert code == 2 and "--window: malformed duration" in out
    assert registry_state(env) == before


def test_retrain_unknown_experiment(env: dict[str, str]) -> None:
    code, out = run(env, "retrain", "nope", "--recipe", "v1", "--as", "v9")
    assert code == 2 and "unknown experiment 'nope'" in out


def test_retrain_unknown_recipe(env: dict[str, str]) -> None:
    code, out = run(env, "retrain", "exp", "--recipe", "v99", "--as", "v9")
    assert code == 2 and "unknown recipe 'v99'" in out and "v4" in out


def test_retrain_as_an_existing_version(env: dict[str, str]) -> None:
    before = registry_state(env)
    code, out = run(env, "retrain", "exp", "--recipe", "v1", "--as", "v2")
    assert code == 2 and "never overwrites" in out
    assert registry_state(env) == before


def test_retrain_as_a_bad_version_name(env: dict[str, str]) -> None:
    code, out = run(env, "retrain", "exp", "--recipe", "v1", "--as", "../v9")
    assert code == 2 and "is not a version name" in out


def test_retrain_deploy_that_is_no_mode(env: dict[str, str]) -> None:
    code, out = run(env, "retrain", "exp", "--recipe", "v1", "--as", "v9", "--deploy", "canary")
    assert code == 2 and "canary" in out


def test_retrain_deploy_without_a_token(env: dict[str, str]) -> None:
    code, out = run(env, "retrain", "exp", "--recipe", "v1", "--as", "v9", "--deploy", "shadow")
    assert code == 2 and "no admin token" in out


def test_retrain_without_captured_inputs(env: dict[str, str]) -> None:
    path = Path(env["TURNOUT_EXPERIMENTS_DIR"]) / "exp.yaml"
    path.write_text(EXPERIMENT.replace("inputs: true", "inputs: false"))
    before = registry_state(env)
    code, out = run(env, "retrain", "exp", "--recipe", "v1", "--as", "v9")
    assert code == 1 and "needs captured inputs" in out
    assert registry_state(env) == before
