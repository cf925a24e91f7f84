"""Which file serves each model: a bad or duplicate file costs its own experiment only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from router.config.loader import LoadedExperiment, parse_experiment, read_capped, scan_directory
from router.config.resolve import last_good_in, load_directory, resolve
from router.core.errors import ConfigError
from router.core.state import StateFolder

ALLOWED = ["127.0.0.1"]


def text(name: str, model: str, weight: int = 90) -> str:
    return (
        f"name: {name}\nmodel: {model}\ncontrol: v1\nvariants:\n"
        "  v1: {url: 'http://127.0.0.1:8101'}\n  v2: {url: 'http://127.0.0.1:8102'}\n"
        f"policy: {{kind: canary, weights: {{v1: {weight}, v2: {100 - weight}}}}}\n"
    )


def loaded(path: str, name: str, model: str, weight: int = 90) -> LoadedExperiment:
    return parse_experiment(text(name, model, weight), Path(path), ALLOWED)


A, B, C = Path("a.yaml"), Path("b.yaml"), Path("c.yaml")


def test_a_newcomer_for_a_served_model_is_refused_and_the_incumbent_keeps_it() -> None:
    running = {B: loaded("b.yaml", "live", "profanity")}
    # a.yaml sorts first: by file order it would have won.
    scan = {A: loaded("a.yaml", "newcomer", "profanity"), B: running[B]}
    resolution = resolve(scan, running=running)
    assert list(resolution.serving) == [B]
    assert "already served by live from b.yaml" in resolution.refused[A]
    assert resolution.conflicts == {}


def test_an_edited_incumbent_still_keeps_its_model() -> None:
    running = {B: loaded("b.yaml", "live", "profanity", 90)}
    edited = loaded("b.yaml", "live", "profanity", 50)
    resolution = resolve({A: loaded("a.yaml", "x", "profanity"), B: edited}, running=running)
    assert resolution.serving == {B: edited}
    assert A in resolution.refused


def test_a_newcomer_reusing_a_served_name_is_refused() -> None:
    running = {A: loaded("a.yaml", "exp", "profanity")}
    scan = {A: running[A], B: loaded("b.yaml", "exp", "spam")}
    resolution = resolve(scan, running=running)
    assert list(resolution.serving) == [A]
    assert "name 'exp' is already served" in resolution.refused[B]


def test_a_refused_file_keeps_serving_its_running_version_even_against_a_newcomer() -> None:
    running = {A: loaded("a.yaml", "live", "profanity")}
    scan = {A: ConfigError("a.yaml:3: bad"), B: loaded("b.yaml", "newcomer", "profanity")}
    resolution = resolve(scan, running=running)
    assert resolution.serving == {A: running[A]}
    assert resolution.refused[A] == "a.yaml:3: bad"
    assert "already served by live" in resolution.refused[B]


def test_at_a_cold_start_a_refused_file_serves_its_kept_version() -> None:
    kept = loaded("a.yaml", "live", "profanity")
    scan = {A: ConfigError("a.yaml:3: bad"), C: loaded("c.yaml", "other", "spam")}
    resolution = resolve(scan, kept=lambda path: kept if path == A else None)
    assert resolution.serving == {A: kept, C: scan[C]}
    assert A in resolution.refused


def test_a_deleted_file_serves_through_the_grace_then_goes() -> None:
    running = {A: loaded("a.yaml", "exp", "profanity")}
    first = resolve({}, running=running, now=100.0, grace=10.0)
    assert first.serving == running and first.missing == {A: 100.0}
    during = resolve({}, running=running, missing=first.missing, now=109.0, grace=10.0)
    assert during.serving == running and during.missing == {A: 100.0}
    after = resolve({}, running=running, missing=during.missing, now=110.0, grace=10.0)
    assert after.serving == {} and after.missing == {}


def test_a_file_back_within_the_grace_continues() -> None:
    running = {A: loaded("a.yaml", "exp", "profanity")}
    gone = resolve({}, running=running, now=0.0, grace=10.0)
    back = resolve({A: running[A]}, running=running, missing=gone.missing, now=4.0, grace=10.0)
    assert back.serving == running and back.missing == {}


def test_without_a_grace_a_deleted_file_goes_at_once() -> None:
    running = {A: loaded("a.yaml", "exp", "profanity")}
    assert resolve({}, running=running, now=0.0).serving == {}


def test_last_good_versions_come_from_the_state_folder(tmp_path: Path) -> None:
    folder = tmp_path / "experiments"
    folder.mkdir()
    state = StateFolder(tmp_path / "state")
    (folder / "a.yaml").write_text("name: broken\nmodel: [\n")
    state.save_last_good(folder, "a.yaml", text("live", "profanity"))
    report = load_directory(folder, ALLOWED, state=state)
    assert list(report.experiments) == ["live"]
    assert report.experiments["live"].path == folder / "a.yaml"
    assert folder / "a.yaml" in report.errors
    # Another experiments folder does not see it; a kept file that no longer loads is ignored.
    assert last_good_in(state, tmp_path / "elsewhere", ALLOWED)(folder / "a.yaml") is None
    state.save_last_good(folder, "a.yaml", "name: [\n")
    assert last_good_in(state, folder, ALLOWED)(folder / "a.yaml") is None


def test_a_file_over_the_size_cap_is_refused_before_it_is_read(tmp_path: Path) -> None:
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as handle:  # 10 GiB on paper, no blocks on disk: reading it is a bug
        handle.truncate(10 * 1024**3)
    with pytest.raises(ConfigError, match="over the limit of 1048576 bytes"):
        read_capped(huge)
    small = tmp_path / "small.yaml"
    small.write_text("x" * 2000)
    with pytest.raises(ConfigError, match="2000 bytes, over the limit of 1000 bytes"):
        read_capped(small, 1000)
    assert read_capped(small, 2000) == "x" * 2000
    (tmp_path / "ok.yaml").write_text(text("ok", "profanity"))
    scan = scan_directory(tmp_path, ALLOWED)
    assert isinstance(scan[huge], ConfigError)
    assert isinstance(scan[tmp_path / "ok.yaml"], LoadedExperiment)
    os.unlink(huge)


def test_a_folder_read_in_a_child_process_is_read_as_in_this_one(tmp_path: Path) -> None:
    from router.config.isolated import scan_isolated_sync

    rollout = (
        "rollout:\n  candidate: v2\n  steps: [10, 50, 100]\n  interval: 10m\n"
        "  max_interval: 1h\n  gates:\n    - {metric: reward, max_decrease: 0.01, "
        "label_delay: 500ms}\n"
    )
    sticky = text("a", "m1").replace(
        "policy: {kind: canary,", "policy: {kind: canary, sticky: user_id,"
    )
    (tmp_path / "a.yaml").write_text(sticky + rollout)
    (tmp_path / "b.yaml").write_text(
        text("b", "m2").replace("control: v1", "control: v2") + "fallback: [v1]\n"
    )
    (tmp_path / "c.yaml").write_text("name: [\n")
    here = scan_directory(tmp_path, ALLOWED)
    there = scan_isolated_sync(tmp_path, ALLOWED, 1_048_576, 60.0)
    assert set(here) == set(there)
    for path, item in here.items():
        other = there[path]
        if isinstance(item, ConfigError):
            assert isinstance(other, ConfigError) and other.detail == item.detail
        else:
            assert isinstance(other, LoadedExperiment)
            assert other.experiment == item.experiment
            assert (other.config_version, other.content) == (item.config_version, item.content)
    with pytest.raises(ConfigError, match="experiments folder not found"):
        scan_isolated_sync(tmp_path / "missing", ALLOWED, 1_048_576, 60.0)
