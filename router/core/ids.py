"""Request ids: what a client may send as ``X-Request-Id`` and what the gateway makes.

The pattern keeps ids safe inside Redis keys and log lines (no separators, no wildcards).
"""

from __future__ import annotations

import re
import uuid

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
REQUEST_ID_RULE = "1-128 characters of [A-Za-z0-9._:-]"


def valid_request_id(value: object) -> bool:
    return isinstance(value, str) and REQUEST_ID.match(value) is not None


def new_request_id() -> str:
    return uuid.uuid4().hex
