"""Request ids: what a client may send as ``X-Request-Id`` and what the gateway makes.

The pattern keeps ids safe inside Redis keys and log lines (no separators, no wildcards). The
gateway makes UUIDv7 ids (RFC 9562) as 32 hex digits: the first 48 bits are the creation time
in milliseconds, so a feedback for an id no replica has recorded can tell whether that request
may still be waiting in another replica's buffer or is long gone.
"""

from __future__ import annotations

import re
import secrets
import time

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
REQUEST_ID_RULE = "1-128 characters of [A-Za-z0-9._:-]"
_UUID7 = re.compile(r"^[0-9a-f]{12}7[0-9a-f]{3}[89ab][0-9a-f]{15}$")


def valid_request_id(value: object) -> bool:
    return isinstance(value, str) and REQUEST_ID.match(value) is not None


def new_request_id() -> str:
    """A UUIDv7: 48 bits of Unix time in ms, version 7, 74 random bits, variant 0b10."""
    millis = time.time_ns() // 1_000_000 & (1 << 48) - 1
    rand = secrets.randbits(74)
    value = millis << 80 | 0x7 << 76 | (rand >> 62) << 64 | 0b10 << 62 | rand & (1 << 62) - 1
    return f"{value:032x}"


def request_time(request_id: str) -> float | None:
    """When a UUIDv7 request id was made (Unix seconds), ours or a client's; None for any other
    id (its age is unknown)."""
    compact = request_id.lower()
    if len(compact) == 36 and compact.count("-") == 4:
        compact = compact.replace("-", "")
    if not _UUID7.match(compact):
        return None
    return int(compact[:12], 16) / 1000.0
