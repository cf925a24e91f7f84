"""The CLI's own behaviour: exit codes and messages."""

from __future__ import annotations

from pathlib import Path

import pytest
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


def test_train_if_missing_trains_again_a_version_that_no_longer_loads(
    models_dir: Path, tmp_path: Path
) -> None:
    import shutil

    root = tmp_path / "models"
    shutil.copytree(models_dir / "wine", root / "wine")
    # An artifact pickled by another code version: it names a function that is gone.
    import pickle

    gone = b"\x80\x04\x8c\x15model_workers.recipes\x8c\x04gone\x93."
    with pytest.raises(AttributeError):
        pickle.loads(gone)
    (root / "wine" / "v1" / "model.joblib").write_bytes(gone)
    env = {"TURNOUT_MODELS_DIR": str(root)}
    result = runner.invoke(app, ["train", "--model", "wine", "--all", "--if-missing"], env=env)
    assert result.exit_code == 0, result.output
    assert "wine v1 does not load" in result.output
    assert "wine v2 does not load" not in result.output
    from model_workers.registry import load

    assert load(root, "wine", "v1").version == "v1"
    again = runner.invoke(app, ["train", "--model", "wine", "--all", "--if-missing"], env=env)
    assert "all model versions are trained" in again.output


def test_train_shows_progress_per_version(tmp_path: Path) -> None:
    from router.core.settings import Settings

    lines = Settings().dataset.read_text(encoding="utf-8").splitlines()[:600]
    data = tmp_path / "sample.csv"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = runner.invoke(
        app,
        ["train", "--recipe", "v1", "--data", str(data)],
        env={"TURNOUT_MODELS_DIR": str(tmp_path / "models"), "COLUMNS": "100"},
    )
    assert result.exit_code == 0, result.output
    assert "trained profanity v1: F1" in result.output
    assert "1/1" in result.output  # the progress bar's count of versions


def test_replay_scores_the_normalized_label_whatever_the_server_protocol() -> None:
    """Issue 25: replay printed accuracy 0.0000 for every non-Turnout server, reading the label
    from the server's raw answer (an Open Inference or MLflow body has no ``label``)."""
    from router.cli.replay import served_label

    oip = {"label": 1, "score": 0.9, "prediction": {"outputs": [{"name": "label", "data": [1]}]}}
    mlflow = {"label": 0, "score": 0.2, "prediction": {"predictions": [0]}}
    turnout = {"label": 1, "score": 0.7, "prediction": {"label": 1, "score": 0.7}}
    assert [served_label(a) for a in (oip, mlflow, turnout)] == [1, 0, 1]


BAD_NAME = """name: Bad Name!
model: profanity
control: v1
variants:
  v1: {url: 'http://127.0.0.1:9/'}
policy: {kind: canary, weights: {v1: 100}}
"""


def test_validate_prints_rules_and_file_names_as_written(tmp_path: Path) -> None:
    """Brackets in a rule, a file name or a reason are text, not rich markup."""
    folder = tmp_path / "exp[bold]s"
    folder.mkdir()
    (folder / "bad[red]x.yaml").write_text(BAD_NAME)
    result = runner.invoke(app, ["validate", str(folder)])
    assert result.exit_code == 1
    assert "^[a-z0-9][a-z0-9_.-]{0,63}$" in result.output
    assert "exp[bold]s/bad[red]x.yaml" in result.output


def test_an_error_message_is_printed_as_written(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path / "no[red]such[/red].yaml")])
    assert result.exit_code == 2
    assert "no[red]such[/red].yaml does not exist" in result.output
