"""Which file format capture writes: JSON Lines (orjson) against Parquet (pyarrow), measured.

For 100,000 records like the gateway captures (a tweet, version, score, label, ids, time):
the writer's CPU per record (encode + write, in batches as the capture thread writes them),
bytes per record, the time to read them all back (as ``turnout drift`` does), and what is left
readable of a file cut short (a gateway killed mid-write). pyarrow is not a Turnout dependency:
run this where it is installed (``pip install pyarrow``); without it only JSON Lines is measured.
"""

from __future__ import annotations

import csv
import gzip
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from router.core.settings import Settings

RECORDS = 100_000
BATCH = 1_000


def records(texts: list[str]) -> list[dict[str, object]]:
    out = []
    for i in range(RECORDS):
        out.append(
            {
                "kind": "outcome",
                "ts": 1_764_000_000.0 + i * 0.01,
                "request_id": f"{i:032x}",
                "experiment": "profanity-v2-canary",
                "variant": "v1",
                "version": "v1",
                "config_version": "5be892dd42aa",
                "status": 200,
                "label": i % 2,
                "score": (i * 7919 % 10_000) / 10_000,
                "input": {"text": texts[i % len(texts)]},
            }
        )
    return out


def write_jsonl(path: Path, rows: list[dict[str, object]], compress: bool) -> float:
    started = time.process_time()
    opener: Callable[..., object] = gzip.open if compress else open
    with opener(path, "ab") as fh:  # type: ignore[operator]
        for start in range(0, len(rows), BATCH):
            fh.write(b"".join(orjson.dumps(r) + b"\n" for r in rows[start : start + BATCH]))  # type: ignore[attr-defined]
    return time.process_time() - started


def read_jsonl(path: Path, compress: bool) -> tuple[int, int]:
    opener: Callable[..., object] = gzip.open if compress else open
    good = bad = 0
    try:
        with opener(path, "rb") as fh:  # type: ignore[operator]
            for line in fh:  # type: ignore[attr-defined]
                try:
                    orjson.loads(line)
                    good += 1
                except orjson.JSONDecodeError:
                    bad += 1
    except (EOFError, OSError):
        pass
    return good, bad


def flat_row(record: dict[str, object]) -> dict[str, object]:
    """A record with its input's text as a column of its own (Parquet wants flat columns)."""
    row = {k: v for k, v in record.items() if k != "input"}
    row["text"] = record["input"]["text"]  # type: ignore[index]
    return row


def parquet_legs(rows: list[dict[str, object]], folder: Path) -> list[tuple[str, ...]] | None:
    try:
        import pyarrow as pa  # type: ignore[import-not-found]
        import pyarrow.parquet as pq  # type: ignore[import-not-found]
    except ImportError:
        return None
    path = folder / "capture.parquet"
    started = time.process_time()
    writer = None
    for start in range(0, len(rows), BATCH):
        chunk = rows[start : start + BATCH]
        flat = [flat_row(r) for r in chunk]
        table = pa.Table.from_pylist(flat)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema, compression="zstd")
        writer.write_table(table)
    assert writer is not None
    writer.close()
    cpu = time.process_time() - started
    size = path.stat().st_size
    started = time.perf_counter()
    read = pq.read_table(path).num_rows
    seconds = time.perf_counter() - started
    cut = folder / "cut.parquet"
    cut.write_bytes(path.read_bytes()[: size // 2])
    try:
        left = pq.read_table(cut).num_rows
    except Exception:  # pyarrow raises ArrowInvalid for a file without its footer
        left = 0
    return [
        (
            "parquet (pyarrow, zstd)",
            f"{cpu / len(rows) * 1e6:.2f}",
            f"{size / len(rows):.1f}",
            f"{seconds:.3f}",
            f"{read}",
            f"{left}",
        )
    ]


def main() -> None:
    with Settings().dataset.open(newline="", encoding="utf-8") as fh:
        texts = [row["tweet"] for row in csv.DictReader(fh)]
    rows = records(texts)
    legs: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for compress in (False, True):
            path = folder / ("capture.jsonl.gz" if compress else "capture.jsonl")
            cpu = write_jsonl(path, rows, compress)
            size = path.stat().st_size
            started = time.perf_counter()
            good, _ = read_jsonl(path, compress)
            seconds = time.perf_counter() - started
            cut = folder / ("cut" + path.suffix)
            cut.write_bytes(path.read_bytes()[: size // 2])
            left, _ = read_jsonl(cut, compress)
            name = "json lines (orjson" + (", gzip)" if compress else ")")
            legs.append(
                (
                    name,
                    f"{cpu / len(rows) * 1e6:.2f}",
                    f"{size / len(rows):.1f}",
                    f"{seconds:.3f}",
                    f"{good}",
                    f"{left}",
                )
            )
        parquet = parquet_legs(rows, folder)
    print(f"capture file formats, {RECORDS:,} records (tweets with scores), batches of {BATCH}")
    print(
        f"  {'format':26s} {'write us/rec':>12s} {'bytes/rec':>10s} {'read s':>8s} "
        f"{'read':>8s} {'left of a file cut in half':>27s}"
    )
    for leg in legs + (parquet or []):
        print(f"  {leg[0]:26s} {leg[1]:>12s} {leg[2]:>10s} {leg[3]:>8s} {leg[4]:>8s} {leg[5]:>27s}")
    if parquet is None:
        print("  parquet: pyarrow is not installed here (pip install pyarrow to measure it)")
    print(f"  cpu count {os.cpu_count()}")


if __name__ == "__main__":
    main()
