"""Promotion: rewrite an experiment file so a variant is the control at 100% (blue-green)."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml

from router.config.loader import config_version
from router.core.errors import ConfigError, Conflict

_UNSAFE = re.compile(r"[\x00-\x1f\x7f]+")


def promoted_yaml(text: str, variant: str, note: str) -> str:
    """The file with ``variant`` as control and blue-green active; ``note`` heads it."""
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ConfigError("the experiment file does not hold one mapping")
    data["control"] = variant
    data["policy"] = {"kind": "blue_green", "active": variant}
    # A finished rollout and its SRM check belong to the weighted policy just replaced.
    data.pop("rollout", None)
    data.pop("srm", None)
    shadow = data.get("shadow")
    if isinstance(shadow, dict) and isinstance(shadow.get("targets"), list):
        targets = [t for t in shadow["targets"] if t != variant]
        if targets:
            data["shadow"] = {**shadow, "targets": targets}
        else:
            del data["shadow"]
    header = "".join(f"# {_UNSAFE.sub(' ', line)}\n" for line in note.splitlines() or [""])
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def replace_if_unchanged(path: Path, expected_version: str, text: str) -> None:
    """Compare-and-swap on the file's content: ``text`` replaces ``path`` only while the file
    still hashes to ``expected_version``; otherwise ``Conflict`` (409, ``changed_since``) and
    whatever an editor saved stays.

    Checking and then renaming would leave a gap an editor's save can fall into. Instead the
    file is first renamed aside (atomic), so from then on a save lands either in the inode set
    aside (an in-place write, which truncates it: the check sees it) or in a new file at
    ``path`` (a rename, or a write after ours began: the final no-clobber link sees it).
    """
    moved = Conflict(
        f"{path.name} changed since it was loaded; reload (POST /admin/reload) and retry",
        code="changed_since",
    )
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    aside = Path(f"{tmp}.was")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.chmod(tmp, path.stat().st_mode & 0o777)
            os.rename(path, aside)
        except FileNotFoundError:
            raise moved from None
        if config_version(aside.read_bytes()) != expected_version:
            _put_back(aside, path)
            raise moved
        try:
            os.link(tmp, path)  # never replaces: a file saved at ``path`` meanwhile wins
        except FileExistsError:
            raise moved from None
    finally:
        for leftover in (tmp, aside):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)


def _put_back(aside: Path, path: Path) -> None:
    """The edited file set aside returns, unless an even newer save took its place."""
    with contextlib.suppress(FileExistsError):
        os.link(aside, path)


DEPLOY_MODES = ("variant", "shadow", "rollout")


def rollout_settings(data: dict[str, Any]) -> dict[str, Any]:
    """A rollout's settings as the file writes them: ``retrain.rollout``, else the ``rollout``
    block without its candidate."""
    retrain = data.get("retrain")
    if isinstance(retrain, dict) and isinstance(retrain.get("rollout"), dict):
        return dict(retrain["rollout"])
    if isinstance(data.get("rollout"), dict):
        return {k: v for k, v in data["rollout"].items() if k != "candidate"}
    raise ConfigError("no rollout settings to start the rollout with (retrain.rollout)")


def deployed_yaml(
    text: str,
    variant: str,
    url: str,
    version: str,
    mode: str,
    note: str,
    shadow_sample: float = 1.0,
) -> str:
    """The file with a new version brought in as ``mode``:

    * ``variant``: a variant taking no traffic (its worker can start and pass its checks);
    * ``shadow``: and a shadow target (mirrored requests, compared with the primary's answers);
    * ``rollout``: and the candidate of a rollout with the file's ``retrain.rollout`` settings
      (else its ``rollout`` block's, as written); a blue-green experiment becomes a canary at
      100/0 (sticky by user), a weighted one has its weights reset to 100/0 (the rollout's
      steps set them from now on).

    ``note`` heads the file. Raises ``ConfigError`` when the file cannot take the change.
    """
    if mode not in DEPLOY_MODES:
        raise ConfigError(f"unknown deploy mode {mode!r} ({', '.join(DEPLOY_MODES)})")
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or not isinstance(data.get("variants"), dict):
        raise ConfigError("the experiment file does not hold one mapping with variants")
    wanted = {"url": url, "version": version}
    present = data["variants"].get(variant)
    if present is not None and {**present, "version": present.get("version", variant)} != wanted:
        raise ConfigError(f"variant {variant!r} exists already with another url or version")
    data["variants"][variant] = wanted
    rollout = rollout_settings(data) if mode == "rollout" else None
    if mode in ("shadow", "rollout"):
        gates = (rollout or {}).get("gates") or []
        needs_shadow = mode == "shadow" or any(
            isinstance(g, dict) and g.get("metric") == "shadow_agreement" for g in gates
        )
        if needs_shadow:
            shadow = data.get("shadow") or {"targets": [], "sample": shadow_sample}
            targets = list(shadow.get("targets", []))
            if variant not in targets:
                targets.append(variant)
            data["shadow"] = {**shadow, "targets": targets}
    if rollout is not None:
        control = data.get("control")
        policy = data.get("policy") or {}
        kind = policy.get("kind")
        if kind == "blue_green":
            policy = {"kind": "canary", "sticky": "user_id"}
        elif kind not in ("canary", "ab"):
            raise ConfigError(f"a rollout needs a canary, ab or blue_green policy, not {kind}")
        data["policy"] = {**policy, "weights": {control: 100, variant: 0}}
        data["rollout"] = {"candidate": variant, **rollout}
    header = "".join(f"# {_UNSAFE.sub(' ', line)}\n" for line in note.splitlines() or [""])
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
