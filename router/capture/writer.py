"""The capture writer: sampled records handed over in memory, written to files by a thread.

The request path only appends to a bounded deque (``offer_*``); past ``capture_queue_size`` the
record is dropped and counted, never waited for. A thread wakes every ``capture_flush_interval``
seconds, encodes what waits (orjson), appends one write per experiment to that experiment's open
file, and keeps the folder within its policy: a file is closed (renamed from ``.part``) past its
size or age limit, closed files older than the retention are deleted, and the oldest closed files
go while the folder holds more than ``max_bytes``. Every folder keeps its policy in
``policy.json``, so files are still expired after an experiment stops capturing, or by another
replica after a restart.

Counting: ``offered = written + queued + dropped`` (``turnout_capture_*``); records deleted to keep
under ``max_bytes`` are counted as evicted. A write that fails part way (a full disk) counts as
written the whole lines on disk, cuts off the partial last one and drops the rest; the thread
then backs off (``backoff.py``) while new records wait in the queue, and an empty file is removed.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from router.capture import files
from router.capture.backoff import Backoff
from router.capture.records import comparison_record, outcome_record, sampled
from router.config.experiments import CaptureConfig
from router.core import logs
from router.core.metrics import GatewayMetrics
from router.core.settings import Settings
from router.recording.events import Outcome, ShadowComparison
from router.routing.table import RouteTable
from router.upstream.protocols import Payload

log = logging.getLogger("turnout.capture")
POLICY = "policy.json"
MAINTAIN_EVERY = 5.0
"""Seconds between two passes over the folders when nothing was written meanwhile."""


@dataclass(frozen=True)
class Policy:
    retention: float
    max_bytes: int

    @classmethod
    def of(cls, config: CaptureConfig) -> Policy:
        return cls(config.retention, config.max_bytes)


@dataclass
class _OpenFile:
    path: Path
    handle: io.FileIO
    started: float
    size: int


Pending = tuple[str, CaptureConfig, Callable[[], dict[str, Any]]]


class CaptureWriter:
    """One per gateway process; ``start`` its thread, ``close`` it at shutdown."""

    def __init__(
        self,
        settings: Settings,
        metrics: GatewayMetrics,
        clock: Callable[[], float] = time.time,
        replica: str | None = None,
    ) -> None:
        self.root = settings.capture_root()
        self.metrics = metrics
        self.clock = clock
        self.replica = replica or uuid.uuid4().hex[:8]
        self.queue_size = settings.capture_queue_size
        self.flush_interval = settings.capture_flush_interval
        self.file_max_bytes = settings.capture_file_max_bytes
        self.rotate_interval = settings.capture_rotate_interval
        self._pending: deque[Pending] = deque()
        # Read when scraped, so offered = written + queued + dropped holds on every scrape.
        metrics.capture_queued.set_function(lambda: len(self._pending))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._open: dict[str, _OpenFile] = {}
        self._policies: dict[str, Policy] = {}
        self._seq = 0
        self._last_pass = 0.0
        self._backoff = Backoff(self.flush_interval, settings.capture_retry_max)

    # --- the request path: memory only ----------------------------------------------------
    def offer_outcome(
        self, outcome: Outcome, config: CaptureConfig, payload: Payload | None
    ) -> None:
        """Hand over a sampled request's outcome (with its input when the experiment keeps
        inputs); no I/O, no waiting: the record is built by the writer's thread."""
        if not sampled(outcome.experiment, outcome.request_id, config.sample):
            return
        kept = payload if config.inputs else None
        self._offer(outcome.experiment, config, lambda: outcome_record(outcome, input_of(kept)))

    def offer_comparison(
        self,
        comparison: ShadowComparison,
        config: CaptureConfig,
        primary_version: str | None,
        shadow_version: str | None,
    ) -> None:
        if not sampled(comparison.experiment, comparison.request_id, config.sample):
            return
        self._offer(
            comparison.experiment,
            config,
            lambda: comparison_record(comparison, primary_version, shadow_version),
        )

    def _offer(self, experiment: str, config: CaptureConfig, build: Callable[[], Any]) -> None:
        self.metrics.capture_offered.labels(experiment).inc()
        if len(self._pending) >= self.queue_size:
            self.metrics.capture_dropped.labels(experiment, "queue_full").inc()
            return
        self._pending.append((experiment, config, build))

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="turnout-capture", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Write what waits, close every file; records still waiting after ``timeout`` are
        dropped and counted (reason ``shutdown``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        while self._pending:
            experiment, _, _ = self._pending.popleft()
            self.metrics.capture_dropped.labels(experiment, "shutdown").inc()

    def _run(self) -> None:
        while True:
            stopping = self._stop.wait(self.flush_interval)
            try:
                self.flush(stopping)
            except Exception as exc:  # a bug must not end capture for good
                logs.event(log, "capture_failed", logging.ERROR, reason=repr(exc))
            if stopping:
                return

    def flush(self, stopping: bool = False) -> None:
        """One wake-up of the thread: write what waits, then keep the folders in policy."""
        wrote = self.write_pending(force=stopping)
        now = self.clock()
        if wrote or stopping or now - self._last_pass >= MAINTAIN_EVERY:
            self.maintain(now, closing=stopping)

    # --- the thread's work ----------------------------------------------------------------
    def write_pending(self, force: bool = False) -> bool:
        """Encode and append everything waiting now; True if anything was written. After a
        failed write nothing is tried until the backoff is over (unless ``force``)."""
        if not (force or self._backoff.ready(self.clock())):
            return False
        batches: dict[str, list[bytes]] = {}
        while self._pending:
            experiment, config, build = self._pending.popleft()
            self._remember(experiment, config)
            try:
                line = orjson.dumps(build()) + b"\n"
            except (TypeError, ValueError):  # a label or a text orjson cannot encode
                self.metrics.capture_dropped.labels(experiment, "unencodable").inc()
                continue
            batches.setdefault(experiment, []).append(line)
        for experiment, lines in batches.items():
            self._append(experiment, b"".join(lines), len(lines))
        return bool(batches)

    def _remember(self, experiment: str, config: CaptureConfig) -> None:
        policy = Policy.of(config)
        if self._policies.get(experiment) == policy:
            return
        self._policies[experiment] = policy
        folder = files.experiment_dir(self.root, experiment)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{POLICY}.{self.replica}.tmp"
            tmp.write_bytes(
                orjson.dumps({"retention": policy.retention, "max_bytes": policy.max_bytes})
            )
            os.replace(tmp, folder / POLICY)
        except OSError as exc:
            logs.event(log, "capture_policy_failed", logging.ERROR, reason=str(exc))

    def _limits(self, experiment: str) -> tuple[int, float]:
        policy = self._policies[experiment]
        size = min(self.file_max_bytes, max(4096, policy.max_bytes // 8))
        age = min(self.rotate_interval, policy.retention / 24.0)
        return size, age

    def _append(self, experiment: str, data: bytes, count: int) -> None:
        now = self.clock()
        current = self._open.get(experiment)
        size_limit, age_limit = self._limits(experiment)
        if current is not None and (
            current.size >= size_limit or now - current.started >= age_limit
        ):
            self._close(experiment)
            current = None
        try:
            if current is None:
                current = self._new_file(experiment, now)
        except OSError as exc:
            self._failed(experiment, count, exc)
            return
        done, error = write_all(current.handle, data)
        if error is None:
            current.size += len(data)
            self.metrics.capture_written.labels(experiment).inc(count)
            self._backoff.succeeded()
            return
        # Keep the whole lines on disk and cut the partial one, so the counts are what a reader
        # finds; the rest of the batch is dropped.
        whole = data.rfind(b"\n", 0, done) + 1
        with contextlib.suppress(OSError):
            current.handle.truncate(current.size + whole)
        current.size += whole
        kept = data.count(b"\n", 0, whole)
        if kept:
            self.metrics.capture_written.labels(experiment).inc(kept)
        self._close(experiment)
        self._failed(experiment, count - kept, error)

    def _failed(self, experiment: str, lost: int, error: OSError) -> None:
        self.metrics.capture_dropped.labels(experiment, "write_error").inc(lost)
        self._backoff.failed(self.clock())
        logs.event(
            log,
            "capture_write_failed",
            logging.ERROR,
            reason=str(error),
            retry_in=round(self._backoff.until - self.clock(), 3),
        )

    def _new_file(self, experiment: str, now: float) -> _OpenFile:
        folder = files.experiment_dir(self.root, experiment)
        folder.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        path = folder / files.file_name(now, self.replica, self._seq)
        # Unbuffered: a failed write says how many bytes reached the file.
        opened = _OpenFile(path, io.FileIO(path, "ab"), now, 0)
        self._open[experiment] = opened
        return opened

    def _close(self, experiment: str) -> None:
        current = self._open.pop(experiment, None)
        if current is None:
            return
        with contextlib.suppress(OSError):
            current.handle.close()
        with contextlib.suppress(OSError):
            if current.size == 0:  # a write that failed at once: no file to read
                current.path.unlink()
            else:
                os.replace(current.path, files.closed_name(current.path))

    def maintain(self, now: float, closing: bool = False) -> None:
        """Close files past their limits, expire old ones, keep each folder under its cap."""
        self._last_pass = now
        for experiment in list(self._open):
            size_limit, age_limit = self._limits(experiment)
            current = self._open[experiment]
            if closing or current.size >= size_limit or now - current.started >= age_limit:
                self._close(experiment)
        for experiment in files.experiments(self.root):
            policy = self._policies.get(experiment) or read_policy(self.root, experiment)
            if policy is not None:
                self._enforce(experiment, policy, now)

    def _enforce(self, experiment: str, policy: Policy, now: float) -> None:
        folder = files.experiment_dir(self.root, experiment)
        mine = self._open.get(experiment)
        kept = []
        for f in files.listing(folder):
            ours = mine is not None and f.path == mine.path
            if not ours and f.mtime < now - policy.retention:
                # Also a writer's ``.part`` left behind: no live writer keeps one that long.
                self._delete(experiment, f.path, "retention")
            else:
                kept.append(f)
        total = sum(f.size for f in kept)
        for f in kept:
            if total <= policy.max_bytes:
                break
            if f.open:  # being written (ours or another replica's): never deleted for size
                continue
            records = count_lines(f.path)
            if self._delete(experiment, f.path, "max_bytes"):
                self.metrics.capture_evicted.labels(experiment).inc(records)
                total -= f.size
        self.metrics.capture_bytes.labels(experiment).set(max(0, total))

    def _delete(self, experiment: str, path: Path, reason: str) -> bool:
        try:
            path.unlink()
        except FileNotFoundError:  # another replica was first
            return False
        except OSError as exc:
            logs.event(log, "capture_delete_failed", logging.ERROR, reason=str(exc))
            return False
        self.metrics.capture_files_deleted.labels(experiment, reason).inc()
        return True


def input_of(payload: Payload | None) -> dict[str, Any] | None:
    """A validated input as a captured line keeps it: ``{"text": ...}`` or ``{"features": ...}``."""
    if payload is None:
        return None
    if payload.kind == "text":
        return {"text": payload.text}
    return {"features": dict(payload.features)}


class ShadowSink(Protocol):
    def record_shadow(self, comparison: ShadowComparison) -> None: ...


class CaptureSink:
    """The shadow mirror's sink: every comparison to the recorder, sampled ones to capture too."""

    def __init__(self, recorder: ShadowSink, writer: CaptureWriter, table: RouteTable) -> None:
        self.recorder = recorder
        self.writer = writer
        self.table = table

    def record_shadow(self, comparison: ShadowComparison) -> None:
        self.recorder.record_shadow(comparison)
        route = self.table.snapshot.routes.get(comparison.experiment)
        config = route.experiment.capture if route is not None else None
        if route is None or config is None:
            return
        exp = route.experiment
        primary, shadow = (
            exp.version_of(v) if v in exp.variants else None
            for v in (comparison.primary, comparison.shadow)
        )
        self.writer.offer_comparison(comparison, config, primary, shadow)


def read_policy(root: Path, experiment: str) -> Policy | None:
    """The retention and size cap last written for a folder (None: unknown, left alone)."""
    try:
        data = orjson.loads((files.experiment_dir(root, experiment) / POLICY).read_bytes())
        return Policy(float(data["retention"]), int(data["max_bytes"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_all(handle: io.FileIO, data: bytes) -> tuple[int, OSError | None]:
    """Write ``data`` through partial writes; the bytes written, and the error that stopped it."""
    view = memoryview(data)
    done = 0
    try:
        while done < len(data):
            written = handle.write(view[done:])
            if not written:
                raise OSError(errno.EIO, "the file took no bytes")
            done += written
    except OSError as exc:
        return done, exc
    return done, None


def count_lines(path: Path) -> int:
    count = 0
    try:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                count += block.count(b"\n")
    except OSError:
        return 0
    return count
