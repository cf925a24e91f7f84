"""Flags, steering, admin tokens and promotion rewriting: the pure parts (no Redis, no HTTP)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml

from router.admin.auth import AdminTokens
from router.cli.replay import parse_label_map, read_rows
from router.config.experiments import BlueGreenPolicy, Experiment
from router.config.loader import config_version, parse_experiment
from router.config.rewrite import promoted_yaml, replace_if_unchanged
from router.core.errors import ConfigError, Conflict, InvalidInput
from router.core.settings import PROJECT_ROOT
from router.flags.values import BUILTIN, ExperimentFlags, FlagDefaults, load_defaults
from router.routing.policies import build_policy
from router.routing.steering import resolve_variant, steer

CANARY = """\
# canary of v2
name: exp
model: profanity
control: v1
variants:
  v1: {url: 'http://127.0.0.1:8101'}
  v2: {url: 'http://127.0.0.1:8102', version: '2.0'}
  v3: {url: 'http://127.0.0.1:8103'}
policy:
  kind: canary
  weights: {v1: 50, v2: 50}
shadow:
  targets: [v2, v3]
  sample: 0.5
"""


@pytest.fixture
def experiment(tmp_path: Path) -> Experiment:
    return parse_experiment(CANARY, tmp_path / "exp.yaml").experiment


def test_shipped_defaults_are_the_builtins() -> None:
    defaults = load_defaults(PROJECT_ROOT / "config" / "flags.yaml")
    assert dict(defaults.flags) == BUILTIN
    flags = defaults.resolve("anything", {})
    assert flags == ExperimentFlags()
    assert flags.shadow_active


def test_missing_defaults_file_means_builtins(tmp_path: Path) -> None:
    assert dict(load_defaults(tmp_path / "none.yaml").flags) == BUILTIN


def test_custom_and_per_experiment_defaults(tmp_path: Path) -> None:
    path = tmp_path / "flags.yaml"
    path.write_text(
        "defaults: {shadow_enabled: false}\n"
        "custom: {max_share: 0.5, note: ''}\n"
        "experiments: {exp: {kill_switch: true, max_share: 0.25}}\n"
    )
    defaults = load_defaults(path)
    exp = defaults.resolve("exp", {"note": "hi", "stale_flag": 1})
    assert exp.kill_switch and not exp.shadow_enabled and not exp.shadow_active
    assert dict(exp.custom) == {"max_share": 0.25, "note": "hi"}
    assert exp.values["max_share"] == 0.25
    other = defaults.resolve("other", {})
    assert not other.kill_switch and other.custom["max_share"] == 0.5
    assert defaults.check("max_share", 1) == 1
    with pytest.raises(InvalidInput):
        defaults.check("max_share", "lots")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("defaults: {kill_swich: true}\n", "unknown flags kill_swich"),
        ("defaults: {kill_switch: 'yes'}\n", "true or false"),
        ("custom: {kill_switch: 1}\n", "invalid custom flag names"),
        ("custom: {Bad-Name: 1}\n", "invalid custom flag names"),
        ("experiments: {exp: {frozen: 3}}\n", "true or false"),
        ("experiments: {exp: {undeclared: 3}}\n", "unknown flag"),
        ("surprise: 1\n", "invalid flags file"),
        ("defaults: [\n", "invalid flags file"),
    ],
)
def test_invalid_defaults_file_is_refused(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "flags.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=reason):
        load_defaults(path)


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("kill_switch", "true"),
        ("kill_switch", 1),
        ("frozen", None),
        ("shadow_enabled", "no"),
        ("forced_variant", 3),
        ("forced_variant", True),
        ("no_such_flag", True),
    ],
)
def test_flag_values_are_type_checked(flag: str, value: object) -> None:
    with pytest.raises(InvalidInput):
        FlagDefaults().check(flag, value)


def test_resolve_variant_by_name_or_version(experiment: Experiment) -> None:
    assert resolve_variant(experiment, "v2") == "v2"
    assert resolve_variant(experiment, "2.0") == "v2"
    with pytest.raises(InvalidInput) as info:
        resolve_variant(experiment, "v9")
    assert info.value.code == "unknown_variant"


def steering(
    experiment: Experiment,
    flags: ExperimentFlags,
    header: str | None = None,
    authorized: bool = False,
) -> tuple[str, str | None, bool, int]:
    asked: list[int] = []

    def check() -> bool:
        asked.append(1)
        return authorized

    policy = build_policy(experiment)
    result = steer(experiment, policy, flags, "user-1", random.Random(0), header, check)
    return result.decision.variant, result.forced_by, result.ignored, len(asked)


def test_kill_switch_wins_over_everything(experiment: Experiment) -> None:
    flags = ExperimentFlags(kill_switch=True, forced_variant="v2")
    assert steering(experiment, flags, "v3", True) == ("v1", "kill_switch", False, 0)
    assert not flags.shadow_active


def test_forced_variant_flag_then_header(experiment: Experiment) -> None:
    assert steering(experiment, ExperimentFlags(forced_variant="v3"), "v2", True)[:2] == (
        "v3",
        "forced_variant",
    )
    assert steering(experiment, ExperimentFlags(), "2.0", True) == ("v2", "header", False, 1)


def test_forced_variant_no_longer_in_the_file_is_not_applied(experiment: Experiment) -> None:
    variant, forced_by, _, _ = steering(experiment, ExperimentFlags(forced_variant="gone"))
    assert forced_by is None and variant in ("v1", "v2")


def test_header_without_valid_token_is_ignored(experiment: Experiment) -> None:
    variant, forced_by, ignored, asked = steering(experiment, ExperimentFlags(), "v3", False)
    assert (forced_by, ignored, asked) == (None, True, 1)
    assert variant in ("v1", "v2")  # the policy's choice, never v3 (weight 0)


def test_header_with_token_must_name_a_variant(experiment: Experiment) -> None:
    with pytest.raises(InvalidInput):
        steering(experiment, ExperimentFlags(), "v9", True)


def test_no_header_never_checks_the_token(experiment: Experiment) -> None:
    assert steering(experiment, ExperimentFlags())[2:] == (False, 0)


def test_tokens_identify_by_name() -> None:
    tokens = AdminTokens({"ops": "tok-ops-1", "ci": "tok-ci-2"})
    assert tokens.enabled
    assert tokens.identify("Bearer tok-ci-2") == "ci"
    assert tokens.identify("bearer tok-ops-1") == "ops"
    for forged in (None, "", "Bearer", "Bearer ", "tok-ops-1", "Basic tok-ops-1", "Bearer tok-ops"):
        assert tokens.identify(forged) is None
    assert tokens.identify("Bearer tok-ops-1x") is None
    assert "tok-ops-1" not in repr(tokens)
    assert not AdminTokens({}).enabled
    assert AdminTokens({}).identify("Bearer anything") is None


def test_tokens_from_files_and_settings(tmp_path: Path) -> None:
    yaml_file = tmp_path / "tokens.yaml"
    yaml_file.write_text("alice: alice-secret\n")
    json_file = tmp_path / "tokens.json"
    json_file.write_text(json.dumps({"bob": "bob-secret"}))
    assert AdminTokens.load({"ops": "o"}, yaml_file).names == ["ops", "alice"]
    assert AdminTokens.load({}, json_file).identify("Bearer bob-secret") == "bob"


@pytest.mark.parametrize("content", ["alice: ''\n", "alice: 'two words'\n", "- a\n", "alice: 3\n"])
def test_unusable_tokens_are_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError):
        AdminTokens.load({}, path)


def test_token_file_errors_do_not_quote_the_secret(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text("alice: s3cr3t-value: [\n")
    with pytest.raises(ConfigError) as info:
        AdminTokens.load({}, path)
    assert "s3cr3t" not in info.value.detail


def test_promoted_yaml_is_a_valid_blue_green(tmp_path: Path) -> None:
    note = "Promoted v2 by ops: looks good\ninjected: key\x07"
    text = promoted_yaml(CANARY, "v2", note)
    loaded = parse_experiment(text, tmp_path / "exp.yaml")
    exp = loaded.experiment
    assert exp.control == "v2"
    assert isinstance(exp.policy, BlueGreenPolicy) and exp.policy.active == "v2"
    assert exp.shadow is not None and exp.shadow.targets == ["v3"]
    assert exp.variants["v2"].version == "2.0"
    data = yaml.safe_load(text)
    assert "injected" not in data
    assert text.startswith("# Promoted v2 by ops: looks good\n# injected: key \n")


def test_promoting_the_only_shadow_drops_the_shadow(tmp_path: Path) -> None:
    text = promoted_yaml(CANARY.replace("[v2, v3]", "[v3]"), "v3", "note")
    assert parse_experiment(text, tmp_path / "e.yaml").experiment.shadow is None


def test_replace_if_unchanged_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("old")
    path.chmod(0o640)
    inode = path.stat().st_ino
    replace_if_unchanged(path, config_version(b"old"), "new")
    assert path.read_text() == "new"
    assert path.stat().st_ino != inode
    assert path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["exp.yaml"]


def test_replace_if_unchanged_refuses_a_moved_file(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("edited by hand")
    with pytest.raises(Conflict, match="changed since it was loaded"):
        replace_if_unchanged(path, config_version(b"old"), "new")
    assert path.read_text() == "edited by hand"
    assert [p.name for p in tmp_path.iterdir()] == ["exp.yaml"]
    path.unlink()
    with pytest.raises(Conflict):
        replace_if_unchanged(path, config_version(b"old"), "new")
    assert list(tmp_path.iterdir()) == []


def test_label_map_and_rows(tmp_path: Path) -> None:
    assert parse_label_map("0=1, 1=1,2=0,x=neither") == {"0": 1, "1": 1, "2": 0, "x": "neither"}
    with pytest.raises(ValueError, match="SOURCE=TARGET"):
        parse_label_map("0:1")
    path = tmp_path / "data.csv"
    path.write_text(",class,tweet,user\n0,2,hello,u1\n1,0,  ,u2\n2,1,you idiot,u3\n3,1,x,u4\n")
    rows = read_rows(path, "tweet", "class", {"0": 1, "1": 1, "2": 0}, "user", 2)
    assert [(r.text, r.label, r.user) for r in rows] == [("hello", 0, "u1"), ("you idiot", 1, "u3")]
    with pytest.raises(ValueError, match="no column 'text'"):
        read_rows(path, "text", None, None, None, None)
    with pytest.raises(ValueError, match="label '2' is not in --label-map"):
        read_rows(path, "tweet", "class", {"0": 1, "1": 1}, None, None)


def test_the_state_folder_gives_flags_back_to_their_own_redis_only(tmp_path: Path) -> None:
    from router.core.state import StateFolder

    state = StateFolder(tmp_path)
    overrides = {"exp": {"forced_variant": "v1"}}
    state.save_flags("redis://127.0.0.1:6399/0", "epoch-a", overrides)
    assert state.read_flags("redis://127.0.0.1:6399/0") == ("epoch-a", overrides)
    assert state.read_flags("redis://127.0.0.1:6400/0") is None  # another Redis: not its flags
    assert "6399" not in (tmp_path / "flags.json").read_text()  # the URL is kept as a hash
