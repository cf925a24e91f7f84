"""What per-user bookkeeping costs: Redis memory per 100k users, Redis time and encoding CPU per
request, with the per-user sums on (a sticky experiment) against off (the same events counted
per request only).

A real redis-server (the embedded one) and the recorder's own encoder and write script; no
gateway, so the figures are the recording path's alone. One run, one machine, printed as
ratios:

    python -m benchmarks.unit_bookkeeping                # 100,000 users
    python -m benchmarks.unit_bookkeeping --users 20000  # quicker
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import redis

from router.local.redis_server import EmbeddedRedis
from router.recording.buffer import Pending
from router.recording.events import Outcome, UnitBounds
from router.recording.recorder import encode_batch
from router.storage import keys
from router.storage.scripts import WRITE_EVENTS_LUA

BATCH = 200


def outcomes(name: str, users: int, per_user: float, seed: int) -> list[Outcome]:
    rng = random.Random(seed)
    count = int(users * per_user)
    ids = [f"{i:016x}" for i in range(users)]
    order = ids + [rng.choice(ids) for _ in range(count - users)]  # every user at least once
    rng.shuffle(order)
    return [
        Outcome(
            f"{name}-{i}",
            name,
            "cv1",
            "v1" if int(user, 16) % 2 else "v2",
            "v1",
            "v1",
            True,
            0.5,
            user,
            200,
            3.0,
            0,
            0.2,
            False,
            1_800_000_000.0 + i * 0.01,
            window=1,
            slot=180_000_000 + i // 1000,
            by_user=True,
        )
        for i, user in enumerate(order)
    ]


def write(client: redis.Redis, events: list[Outcome]) -> tuple[float, float]:
    """(encoding CPU seconds, Redis script microseconds) for all events, in batches."""
    script = client.register_script(WRITE_EVENTS_LUA)
    client.config_resetstat()
    cpu = 0.0
    for at in range(0, len(events), BATCH):
        batch = [Pending(f"t{at + i}", e) for i, e in enumerate(events[at : at + BATCH])]
        started = time.process_time()
        encoded = encode_batch(batch, 1_000_000, 86_400, None, UnitBounds(10_000_000))
        cpu += time.process_time() - started
        script(keys=encoded.keys, args=[encoded.payload])
    stats = client.info("commandstats")
    usec = sum(v["usec"] for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval"))
    return cpu, float(usec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--per-user", type=float, default=3.0, help="mean requests per user")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        server = EmbeddedRedis(Path(folder) / "redis").start()
        try:
            client = redis.Redis(port=server.port)
            on = outcomes("on", args.users, args.per_user, 1)
            off = [
                replace(e, experiment="off", request_id=f"off-{i}", by_user=False)
                for i, e in enumerate(outcomes("on", args.users, args.per_user, 1))
            ]
            cpu_off, usec_off = write(client, off)
            cpu_on, usec_on = write(client, on)
            units = [keys.config_units("on", "cv1"), keys.rollout_units("on", 1)]
            sizes = [int(client.memory_usage(k, samples=0) or 0) for k in units]
        finally:
            server.stop()
    n = len(on)
    per_100k = 100_000 / args.users
    print(f"users {args.users:,}, requests {n:,} ({args.per_user:g} per user), batches of {BATCH}")
    print(
        f"Redis memory, per-user state under one config: {sizes[0] * per_100k / 2**20:.1f} MiB "
        "per 100k users"
    )
    print(
        f"Redis memory, per-user state of one rollout window: {sizes[1] * per_100k / 2**20:.1f} "
        "MiB per 100k users"
    )
    print(
        f"Redis script time per request: {usec_off / n:.1f} us off, {usec_on / n:.1f} us on "
        f"(x{usec_on / usec_off:.2f}; goal <= x1.10)"
    )
    print(
        f"encoding CPU per request: {cpu_off / n * 1e6:.1f} us off, {cpu_on / n * 1e6:.1f} us "
        f"on (+{(cpu_on - cpu_off) / n * 1e6:.1f} us)"
    )


if __name__ == "__main__":
    main()
