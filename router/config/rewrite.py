"""Promotion: rewrite an experiment file so a variant is the control at 100% (blue-green)."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml

from router.core.errors import ConfigError

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


def write_atomically(path: Path, text: str) -> None:
    """Temp file in the same folder, fsync, rename: readers see the old file or the new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


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
