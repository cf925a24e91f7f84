"""Turn a ``dump.rdb`` of the old layout into ``keys.jsonl``: every key as Redis ``DUMP``s it,
with its time to live *relative* to the moment the dump was saved.

An RDB file stores expiry times as absolute dates, so a server that loads it a week later drops
every key that had a TTL (the request attributions and shadow guards): a fixture kept as an RDB
is a time bomb. ``RESTORE key ttl payload`` takes a relative TTL, so ``keys.jsonl`` loads the
same data on any date. The conversion needs the RDB's own clock: run it once, beside the dump
``make_legacy_dump.py`` wrote, under libfaketime (Debian's ``faketime``) at the RDB's save time:

    python tests/data/legacy_layout/freeze_keys.py DUMP.rdb tests/data/legacy_layout/keys.jsonl

It starts the bundled redis-server under ``faketime`` itself, at the ``ctime`` the RDB records.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import redis

from router.local.processes import free_port, poll_until
from router.local.redis_server import redis_server_binary


def saved_at(rdb: bytes) -> int:
    """The RDB's ``ctime`` aux field (seconds since the epoch), as a 32-bit integer encoding."""
    at = rdb.find(b"\x05ctime")
    if at < 0 or rdb[at + 6] != 0xC2:
        raise SystemExit("no ctime aux field in this RDB")
    return int(struct.unpack("<I", rdb[at + 7 : at + 11])[0])


def main(source: Path, target: Path) -> None:
    ctime = saved_at(source.read_bytes())
    work = Path(tempfile.mkdtemp(prefix="turnout-freeze-"))
    shutil.copy(source, work / "dump.rdb")
    port = free_port()
    stamp = datetime.fromtimestamp(ctime, UTC).strftime("@%Y-%m-%d %H:%M:%S")
    server = subprocess.Popen(
        [
            *("faketime", "-f", stamp, redis_server_binary(), "--port", str(port)),
            *("--bind", "127.0.0.1", "--dir", str(work), "--save", ""),
        ],
        env={"TZ": "UTC", "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    try:
        poll_until(lambda: bool(client.ping()), 10, what="redis under faketime")
        rows = []
        for key in sorted(client.scan_iter(count=1000)):
            rows.append(
                {
                    "key": key.decode(),
                    "pttl": int(client.pttl(key)),
                    "dump": bytes(client.dump(key)).hex(),  # type: ignore[arg-type]
                }
            )
        target.write_text("".join(json.dumps(row) + "\n" for row in rows))
        print(f"{len(rows)} keys, {sum(r['pttl'] > 0 for r in rows)} with a TTL -> {target}")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
