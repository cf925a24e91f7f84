"""When the capture writer tries again after a failed write (a full or failing disk).

Without it, every flush opened a new file and failed again: on a full disk, 78 empty files in
40 s. The wait doubles from twice the flush interval up to ``capture_retry_max``; a write that
succeeds ends it. Pure: the writer passes the time in.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Backoff:
    interval: float
    """The flush interval: the first wait is twice it."""
    longest: float
    failures: int = 0
    until: float = 0.0

    def ready(self, now: float) -> bool:
        return now >= self.until

    def failed(self, now: float) -> None:
        self.failures += 1
        wait = self.interval * 2.0 ** min(self.failures, 60)
        self.until = now + min(self.longest, wait)

    def succeeded(self) -> None:
        self.failures = 0
        self.until = 0.0
