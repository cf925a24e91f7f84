"""Which file serves each model: the rules that keep one bad or duplicate file from taking
anything down but its own experiment. Pure: no I/O, the clock passed in.

- A refused file keeps serving its last good version: the one running, else the one kept in
  the state folder (``kept``), so a fresh gateway serves it too.
- The experiment already serving a model (or a name) keeps it; a newcomer claiming it is
  refused with the reason. With no incumbent (a cold start), every claimant is refused and the
  model is reported as a conflict naming all of them.
- A file that disappears keeps serving for ``grace`` seconds; one that comes back within it
  continues seamlessly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from router.config.loader import (
    DEFAULT_MAX_BYTES,
    LoadedExperiment,
    LoadReport,
    Scan,
    parse_experiment,
    scan_directory,
)
from router.core.errors import ConfigError
from router.core.state import StateFolder


@dataclass(frozen=True)
class Resolution:
    serving: dict[Path, LoadedExperiment] = field(default_factory=dict)
    """The experiment each file contributes (possibly its last good version)."""
    refused: dict[Path, str] = field(default_factory=dict)
    """Files refused, and why."""
    conflicts: dict[str, tuple[Path, ...]] = field(default_factory=dict)
    """Models that several files claim with none serving it: model -> the files."""
    missing: dict[Path, float] = field(default_factory=dict)
    """Files gone from the folder whose experiment still serves: path -> since when."""

    def report(self) -> LoadReport:
        return LoadReport(
            {item.experiment.name: item for item in self.serving.values()},
            {path: ConfigError(reason) for path, reason in self.refused.items()},
            dict(self.conflicts),
        )


def resolve(
    scan: Scan,
    *,
    running: Mapping[Path, LoadedExperiment] | None = None,
    kept: Callable[[Path], LoadedExperiment | None] | None = None,
    missing: Mapping[Path, float] | None = None,
    now: float = 0.0,
    grace: float = 0.0,
) -> Resolution:
    """Decide what serves, from the folder's ``scan`` and what is ``running`` (by file)."""
    running = running or {}
    missing = missing or {}
    candidates: dict[Path, LoadedExperiment] = {}
    refused: dict[Path, str] = {}
    for path, item in scan.items():
        if isinstance(item, LoadedExperiment):
            candidates[path] = item
            continue
        refused[path] = item.detail
        last_good = running.get(path) or (kept(path) if kept else None)
        if last_good is not None:
            candidates[path] = last_good
    still_missing: dict[Path, float] = {}
    for path, loaded in running.items():
        if path in scan:
            continue
        since = missing.get(path, now)
        if now - since < grace:
            candidates[path] = loaded
            still_missing[path] = since
    losers, conflicts = _claims(candidates, running, refused)
    serving = {p: c for p, c in candidates.items() if p not in losers}
    return Resolution(serving, refused, conflicts, still_missing)


def _claims(
    candidates: Mapping[Path, LoadedExperiment],
    running: Mapping[Path, LoadedExperiment],
    refused: dict[Path, str],
) -> tuple[set[Path], dict[str, tuple[Path, ...]]]:
    """Files that lose a model or a name to another, and the models nobody may serve."""
    losers: set[Path] = set()
    conflicts: dict[str, tuple[Path, ...]] = {}
    for what in ("model", "name"):
        claims: dict[str, list[Path]] = defaultdict(list)
        for path, item in candidates.items():
            claims[getattr(item.experiment, what)].append(path)
        for value, paths in claims.items():
            if len(paths) < 2:
                continue
            incumbent = next(
                (
                    p
                    for p in sorted(paths)
                    if p in running and getattr(running[p].experiment, what) == value
                ),
                None,
            )
            for path in sorted(paths):
                if path == incumbent:
                    continue
                losers.add(path)
                if incumbent is not None:
                    reason = (
                        f"{path}:1: {what} {value!r} is already served by "
                        f"{candidates[incumbent].experiment.name} from {incumbent.name}; "
                        f"one active experiment per {what} (remove one of the files)"
                    )
                else:
                    others = ", ".join(p.name for p in sorted(paths) if p != path)
                    reason = (
                        f"{path}:1: {what} {value!r} is also claimed by {others}; none of them "
                        f"serves it until only one claims it"
                    )
                refused[path] = f"{refused[path]}; {reason}" if path in refused else reason
            if incumbent is None and what == "model":
                conflicts[value] = tuple(sorted(paths))
    return losers, conflicts


def last_good_in(
    state: StateFolder, directory: Path, allowed_hosts: list[str] | None
) -> Callable[[Path], LoadedExperiment | None]:
    """The ``kept`` of ``resolve``: a file's last good version from the state folder, if it
    still loads."""

    def kept(path: Path) -> LoadedExperiment | None:
        content = state.last_good(directory, path.name)
        if content is None:
            return None
        try:
            return parse_experiment(content, path, allowed_hosts)
        except ConfigError:
            return None

    return kept


def load_directory(
    directory: Path,
    allowed_hosts: list[str] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    state: StateFolder | None = None,
) -> LoadReport:
    """Load every file the way a cold start does: a file that fails, or that claims a model or
    a name another file claims too, is refused (every claimant, since none is serving yet); a
    refused file's last good version in ``state`` serves instead."""
    try:
        scan = scan_directory(directory, allowed_hosts, max_bytes)
    except ConfigError as exc:
        return LoadReport(errors={directory: exc})
    kept = last_good_in(state, directory, allowed_hosts) if state else None
    return resolve(scan, kept=kept).report()
