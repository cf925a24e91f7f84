"""The CLI's own behaviour: exit codes and messages."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from router.cli import app

runner = CliRunner()


def test_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("train", "models", "worker"):
        assert command in result.output


def test_train_missing_data_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["train", "--recipe", "v1", "--data", str(tmp_path / "missing.csv")],
        env={"TURNOUT_MODELS_DIR": str(tmp_path)},
    )
    assert result.exit_code == 1
    assert "Davidson" in result.output


def test_train_unknown_recipe_is_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["train", "--recipe", "v9"], env={"TURNOUT_MODELS_DIR": str(tmp_path)}
    )
    assert result.exit_code == 2
    assert "unknown recipe" in result.output


def test_models_list(models_dir: Path) -> None:
    result = runner.invoke(
        app, ["models", "list", "--json"], env={"TURNOUT_MODELS_DIR": str(models_dir)}
    )
    assert result.exit_code == 0
    assert '"version": "v3"' in result.output
