"""The capture writer on a real full filesystem (a 64 KiB tmpfs): it backs off, leaves no empty
files behind, and counts as written exactly the records a reader finds."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from router.capture import files
from router.capture.backoff import Backoff
from router.capture.reader import ReadStats, read_records
from router.config.experiments import CaptureConfig
from router.core.metrics import GatewayMetrics
from router.upstream.protocols import Payload
from tests.unit.capture.test_capture import make, outcome, value

DISK = "64k"


def _mount_command(*args: str) -> list[str]:
    """As root ``mount`` itself; otherwise (a CI runner) passwordless ``sudo -n``."""
    if os.geteuid() == 0:
        return list(args)
    return ["sudo", "-n", *args]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real filesystem of 64 KiB; skipped where it cannot be mounted, never in CI."""
    disk = tmp_path / "disk"
    disk.mkdir()
    options = f"size={DISK},uid={os.getuid()},gid={os.getgid()},mode=0755"
    command = _mount_command("mount", "-t", "tmpfs", "-o", options, "tmpfs", str(disk))
    mounted = shutil.which(command[0]) is not None and (
        subprocess.run(command, capture_output=True, timeout=30, check=False).returncode == 0
    )
    if not mounted:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must be able to mount a small tmpfs (root or sudo -n)")
        pytest.skip("cannot mount a tmpfs here (neither root nor passwordless sudo)")
    try:
        yield disk
    finally:
        # Lazy: a file a failed test left open must not keep the mount for good.
        subprocess.run(_mount_command("umount", "--lazy", str(disk)), timeout=30, check=True)


def fill(disk: Path, leave: int = 0) -> Path:
    """Take every byte of ``disk`` but ``leave`` (whole pages)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    size = 0
    try:
        while True:
            size += os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    os.ftruncate(fd, size - leave)
    os.close(fd)
    return filler


def failures(caplog: pytest.LogCaptureFixture) -> int:
    return sum(r.msg == "capture_write_failed" for r in caplog.records)


def balance(metrics: GatewayMetrics) -> tuple[float, float, float, float]:
    """offered, written, dropped (every reason), queued."""
    dropped = sum(
        s.value
        for m in metrics.registry.collect()
        if m.name == "turnout_capture_dropped"
        for s in m.samples
        if s.name == "turnout_capture_dropped_total"
    )
    return (
        value(metrics, "turnout_capture_offered_total", experiment="exp"),
        value(metrics, "turnout_capture_written_total", experiment="exp"),
        dropped,
        value(metrics, "turnout_capture_queued"),
    )


def test_a_full_disk_is_tried_less_and_less_and_leaves_no_empty_files(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "turnout.capture")
    writer, metrics, clock = make(small_disk.parent, capture_dir=small_disk / "capture")
    filler = fill(small_disk)
    config = CaptureConfig(sample=1.0)
    for i in range(80):  # 40 s of flushes every 0.5 s, one sampled request each
        writer.offer_outcome(outcome(f"{i:032x}"), config, None)
        writer.flush()
        clock.now += 0.5
    left = files.listing(small_disk / "capture" / "exp")
    assert [f for f in left if f.size == 0] == []
    assert failures(caplog) <= 7  # 0, 1, 3, 7, 15, 31 s: doubling from the flush interval
    offered, written, dropped, queued = balance(metrics)
    assert offered == 80 and written == 0 and dropped + queued == 80

    filler.unlink()  # space again: what waits is written at the next attempt
    clock.now += 60
    writer.flush()
    offered, written, dropped, queued = balance(metrics)
    assert queued == 0 and written > 0 and written + dropped == offered
    assert len(list(read_records(small_disk / "capture", "exp"))) == written
    writer.offer_outcome(outcome("f" * 32), config, None)
    writer.flush()  # the backoff is over: the next flush writes at once
    assert balance(metrics)[1] == written + 1
    writer.flush(stopping=True)


def test_a_half_written_batch_counts_what_a_reader_finds(small_disk: Path) -> None:
    writer, metrics, _ = make(small_disk.parent, capture_dir=small_disk / "capture")
    fill(small_disk, leave=8192)
    config = CaptureConfig(sample=1.0, inputs=True)
    for i in range(100):  # ~35 KB in one batch, 8 KiB free
        writer.offer_outcome(outcome(f"{i:032x}"), config, Payload("text", text="z" * 100))
    writer.flush(stopping=True)
    stats = ReadStats()
    found = len(list(read_records(small_disk / "capture", "exp", stats=stats)))
    assert found > 0
    assert value(metrics, "turnout_capture_written_total", experiment="exp") == found
    assert (
        value(metrics, "turnout_capture_dropped_total", experiment="exp", reason="write_error")
        == 100 - found
    )
    assert stats.skipped == {"corrupt": 0, "truncated": 0}  # no cut-off line left behind


def test_the_backoff_doubles_up_to_its_bound_and_ends_on_success() -> None:
    backoff = Backoff(interval=0.5, longest=60.0)
    waits = []
    for _ in range(9):
        backoff.failed(100.0)
        waits.append(backoff.until - 100.0)
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert not backoff.ready(159.9) and backoff.ready(160.0)
    backoff.succeeded()
    assert backoff.ready(0.0)
    backoff.failed(0.0)
    assert backoff.until == 1.0
