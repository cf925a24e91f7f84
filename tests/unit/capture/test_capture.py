"""router.capture: the writer's hand-off, rotation, retention and cap; the reader's skips."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from router.capture import files
from router.capture.reader import ReadStats, read_records
from router.capture.records import sampled
from router.capture.writer import CaptureWriter, read_policy
from router.config.experiments import CaptureConfig
from router.core.metrics import GatewayMetrics
from router.core.settings import Settings
from router.recording.events import Outcome, ShadowComparison
from router.upstream.protocols import Payload

MiB = 2**20


class Clock:
    def __init__(self, now: float = 1_764_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def outcome(rid: str, ts: float = 1_764_000_000.0, version: str = "v1") -> Outcome:
    return Outcome(
        request_id=rid,
        experiment="exp",
        config_version="cv1",
        variant=version,
        served_variant=version,
        version=version,
        sticky=True,
        propensity=1.0,
        user_hash="0123456789abcdef",
        status=200,
        latency_ms=3.0,
        label=1,
        score=0.8,
        fallback=False,
        ts=ts,
    )


def comparison(rid: str) -> ShadowComparison:
    return ShadowComparison(rid, "exp", "cv1", "v1", "v2", 1, 0.8, 3.0, 0, 0.3, 4.0, ts=1.0)


def value(metrics: GatewayMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def make(tmp_path: Path, **settings: object) -> tuple[CaptureWriter, GatewayMetrics, Clock]:
    metrics = GatewayMetrics()
    clock = Clock()
    env = {"capture_dir": tmp_path / "capture", **settings}
    writer = CaptureWriter(Settings(**env), metrics, clock, replica="r1")  # type: ignore[arg-type]
    return writer, metrics, clock


def lines(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_outcomes_are_written_without_inputs_or_user_keys(tmp_path: Path) -> None:
    writer, metrics, _ = make(tmp_path)
    config = CaptureConfig(sample=1.0)
    writer.offer_outcome(outcome("a" * 32), config, Payload("text", text="hello there"))
    writer.offer_comparison(comparison("a" * 32), config, "v1", "v2")
    assert writer.write_pending()
    (part,) = files.listing(tmp_path / "capture" / "exp")
    assert part.open and part.path.name.endswith(".jsonl.part")
    first, second = lines(part.path)
    assert first["kind"] == "outcome" and first["version"] == "v1" and first["score"] == 0.8
    assert "input" not in first
    assert second["kind"] == "shadow" and second["shadow_version"] == "v2"
    raw = part.path.read_bytes()
    assert b"hello there" not in raw and b"0123456789abcdef" not in raw
    assert value(metrics, "turnout_capture_written_total", experiment="exp") == 2
    writer.maintain(0.0, closing=True)
    (closed,) = files.listing(tmp_path / "capture" / "exp")
    assert not closed.open and closed.path.suffix == ".jsonl"


def test_inputs_are_kept_only_when_the_experiment_opts_in(tmp_path: Path) -> None:
    writer, _, _ = make(tmp_path)
    writer.offer_outcome(
        outcome("b" * 32), CaptureConfig(sample=1.0, inputs=True), Payload("text", text="hi")
    )
    writer.write_pending()
    (f,) = files.listing(tmp_path / "capture" / "exp")
    (record,) = lines(f.path)
    assert record["input"] == {"text": "hi"}
    assert "user_hash" not in record and "user_id" not in record


def test_sampling_is_sticky_by_request_id() -> None:
    rids = [f"{i:032x}" for i in range(4000)]
    chosen = [rid for rid in rids if sampled("exp", rid, 0.25)]
    assert 0.22 < len(chosen) / len(rids) < 0.28
    assert chosen == [rid for rid in rids if sampled("exp", rid, 0.25)]
    assert all(sampled("exp", rid, 1.0) for rid in rids[:10])
    assert not any(sampled("exp", rid, 0.0) for rid in rids[:10])


def test_a_full_hand_off_drops_and_counts(tmp_path: Path) -> None:
    writer, metrics, _ = make(tmp_path, capture_queue_size=3)
    config = CaptureConfig(sample=1.0)
    for i in range(5):
        writer.offer_outcome(outcome(f"{i:032x}"), config, None)
    assert (
        value(metrics, "turnout_capture_dropped_total", experiment="exp", reason="queue_full") == 2
    )
    writer.write_pending()
    offered = value(metrics, "turnout_capture_offered_total", experiment="exp")
    written = value(metrics, "turnout_capture_written_total", experiment="exp")
    dropped = value(metrics, "turnout_capture_dropped_total", experiment="exp", reason="queue_full")
    assert (offered, written, dropped) == (5, 3, 2)
    assert value(metrics, "turnout_capture_queued") == 0


def test_files_rotate_by_size_and_by_age(tmp_path: Path) -> None:
    writer, _, clock = make(tmp_path, capture_file_max_bytes=4096, capture_rotate_interval=60.0)
    config = CaptureConfig(sample=1.0, inputs=True)
    for i in range(40):  # ~13 KB: past 4 KB, each new write goes to a new file
        writer.offer_outcome(outcome(f"{i:032x}"), config, Payload("text", text="x" * 200))
        writer.write_pending()
    by_size = files.listing(tmp_path / "capture" / "exp")
    assert len(by_size) >= 3 and sum(f.open for f in by_size) == 1
    clock.now += 61
    writer.maintain(clock.now)
    assert not any(f.open for f in files.listing(tmp_path / "capture" / "exp"))
    records = list(read_records(tmp_path / "capture", "exp"))
    assert len(records) == 40


def test_retention_deletes_old_files_and_abandoned_parts(tmp_path: Path) -> None:
    writer, metrics, clock = make(tmp_path)
    config = CaptureConfig(sample=1.0, retention="1h")  # type: ignore[arg-type]
    folder = tmp_path / "capture" / "exp"
    writer.offer_outcome(outcome("c" * 32), config, None)
    writer.write_pending()
    writer.maintain(clock.now, closing=True)
    old = folder / "20250101T000000Z-dead-000001.jsonl.part"  # a writer that died
    old.write_bytes(b"{}\n")
    (closed,) = [f for f in files.listing(folder) if not f.open]
    for path in (closed.path, old):
        os.utime(path, (clock.now - 7200, clock.now - 7200))
    writer.offer_outcome(outcome("d" * 32), config, None)
    writer.write_pending()  # a new open file of ours, fresh
    writer.maintain(clock.now)
    left = files.listing(folder)
    assert len(left) == 1 and left[0].open
    assert (
        value(metrics, "turnout_capture_files_deleted_total", experiment="exp", reason="retention")
        == 2
    )


def test_the_size_cap_evicts_the_oldest_closed_files(tmp_path: Path) -> None:
    writer, metrics, clock = make(tmp_path)
    config = CaptureConfig(sample=1.0, inputs=True, max_bytes="1MiB")  # type: ignore[arg-type]
    folder = tmp_path / "capture" / "exp"
    for i in range(6000):  # ~2 MiB of 350-byte lines, in files of at most 128 KiB
        writer.offer_outcome(
            outcome(f"{i:032x}", ts=1.0 + i), config, Payload("text", text="y" * 100)
        )
        if i % 100 == 99:
            writer.write_pending()
            clock.now += 1
    writer.write_pending()
    writer.maintain(clock.now)
    total = sum(f.size for f in files.listing(folder))
    assert total <= MiB
    evicted = value(metrics, "turnout_capture_evicted_total", experiment="exp")
    kept = list(read_records(tmp_path / "capture", "exp"))
    assert evicted > 0 and evicted + len(kept) == 6000
    # What is kept is the newest traffic.
    assert min(r["ts"] for r in kept) == 1.0 + evicted
    assert value(metrics, "turnout_capture_bytes", experiment="exp") == total


def test_the_policy_outlives_the_writer(tmp_path: Path) -> None:
    writer, _, clock = make(tmp_path)
    config = CaptureConfig(sample=1.0, retention="2h")  # type: ignore[arg-type]
    writer.offer_outcome(outcome("e" * 32), config, None)
    writer.write_pending()
    writer.maintain(clock.now, closing=True)
    policy = read_policy(tmp_path / "capture", "exp")
    assert policy is not None and policy.retention == 7200
    # A restarted replica that sees no capture block any more still expires the files.
    later, metrics, _ = make(tmp_path)
    for f in files.listing(tmp_path / "capture" / "exp"):
        os.utime(f.path, (clock.now - 8000, clock.now - 8000))
    later.maintain(clock.now)
    assert files.listing(tmp_path / "capture" / "exp") == []
    assert (
        value(metrics, "turnout_capture_files_deleted_total", experiment="exp", reason="retention")
        == 1
    )


def test_features_are_kept_by_name(tmp_path: Path) -> None:
    writer, _, _ = make(tmp_path)
    features = Payload("features", features={"alcohol": 13.2, "hue": 1.04})
    writer.offer_outcome(outcome("9" * 32), CaptureConfig(sample=1.0, inputs=True), features)
    writer.write_pending()
    (f,) = files.listing(tmp_path / "capture" / "exp")
    (record,) = lines(f.path)
    assert record["input"] == {"features": {"alcohol": 13.2, "hue": 1.04}}


def test_unencodable_records_are_counted_not_fatal(tmp_path: Path) -> None:
    writer, metrics, _ = make(tmp_path)
    config = CaptureConfig(sample=1.0, inputs=True)
    writer.offer_outcome(outcome("f" * 32), config, Payload("text", text="\ud800 lone surrogate"))
    writer.offer_outcome(outcome("0" * 32), config, Payload("text", text="fine"))
    writer.write_pending()
    assert (
        value(metrics, "turnout_capture_dropped_total", experiment="exp", reason="unencodable") == 1
    )
    assert value(metrics, "turnout_capture_written_total", experiment="exp") == 1


def test_a_write_error_is_counted_not_raised(tmp_path: Path) -> None:
    (tmp_path / "capture").write_text("a file where the folder should be")
    writer, metrics, _ = make(tmp_path)
    writer.offer_outcome(outcome("1" * 32), CaptureConfig(sample=1.0), None)
    writer.write_pending()
    assert (
        value(metrics, "turnout_capture_dropped_total", experiment="exp", reason="write_error") == 1
    )


def test_the_thread_writes_and_closes_at_shutdown(tmp_path: Path) -> None:
    writer, metrics, _ = make(tmp_path, capture_flush_interval=0.05)
    writer.start()
    for i in range(50):
        writer.offer_outcome(outcome(f"{i:032x}"), CaptureConfig(sample=1.0), None)
    writer.close()
    listed = files.listing(tmp_path / "capture" / "exp")
    assert listed and not any(f.open for f in listed)
    assert value(metrics, "turnout_capture_written_total", experiment="exp") == 50


# --- reading ------------------------------------------------------------------------------


def write_file(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path


def record(rid: str, ts: float) -> bytes:
    return orjson.dumps({"v": 1, "kind": "outcome", "ts": ts, "request_id": rid, "score": 0.5})


def test_reader_skips_and_counts_corrupt_and_truncated_lines(tmp_path: Path) -> None:
    folder = tmp_path / "exp"
    good = [record(f"{i:032x}", 10.0 + i) for i in range(3)]
    write_file(
        folder,
        "20250101T000000Z-r1-000001.jsonl",
        b"\n".join(
            [
                good[0],
                b"not json at all",
                b"\xff\xfe binary",
                b"[1, 2, 3]",
                orjson.dumps({"v": 99, "kind": "outcome", "ts": 1.0, "request_id": "x"}),
                orjson.dumps({"v": 1, "kind": "outcome", "ts": "yesterday", "request_id": "x"}),
                good[1],
                good[2][:20],  # cut off mid-line: the file is closed, so it is truncated
            ]
        ),
    )
    stats = ReadStats()
    got = list(read_records(tmp_path, "exp", stats=stats))
    assert [r["request_id"] for r in got] == [f"{0:032x}", f"{1:032x}"]
    assert stats.skipped == {"corrupt": 5, "truncated": 1}
    assert stats.as_dict()["records"] == 2


def test_a_live_files_unfinished_line_is_not_counted(tmp_path: Path) -> None:
    folder = tmp_path / "exp"
    write_file(
        folder, "20250101T000000Z-r1-000001.jsonl.part", record("a" * 32, 5.0) + b'\n{"v": 1'
    )
    stats = ReadStats()
    assert len(list(read_records(tmp_path, "exp", stats=stats))) == 1
    assert stats.skipped == {"corrupt": 0, "truncated": 0}


def test_reader_filters_by_time(tmp_path: Path) -> None:
    folder = tmp_path / "exp"
    write_file(
        folder,
        "19700101T000000Z-r1-000001.jsonl",
        b"".join(record(f"{i:032x}", float(i)) + b"\n" for i in range(10)),
    )
    got = list(read_records(tmp_path, "exp", since=3.0, until=7.0))
    assert [r["ts"] for r in got] == [3.0, 4.0, 5.0, 6.0]
    assert list(read_records(tmp_path, "missing")) == []


@pytest.mark.parametrize("name", ["notes.txt", ".hidden.jsonl", "policy.json"])
def test_reader_ignores_other_files(tmp_path: Path, name: str) -> None:
    write_file(tmp_path / "exp", name, b"garbage\n")
    stats = ReadStats()
    assert list(read_records(tmp_path, "exp", stats=stats)) == []
    assert stats.files == 0
