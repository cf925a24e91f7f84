"""The bounded FIFO of events waiting for Redis. Pure: no I/O, no clock."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from router.recording.events import RecordedEvent


@dataclass(frozen=True, slots=True)
class Pending:
    token: str
    """Unique per recorded event; the write guard compares it to tell a retry from a reused id."""
    event: RecordedEvent
    """A request's outcome, or a shadow's comparison for it (both share the buffer)."""


class OutcomeBuffer:
    """FIFO of events waiting for Redis, holding at most ``capacity`` (the batch in flight too).

    Drop rule when full: the oldest event that is not being written right now is dropped, so the
    buffer keeps the most recent traffic. If every held event is in flight, the newcomer is the
    one dropped. Pure: no I/O, no clock.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._queue: deque[Pending] = deque()
        self._in_flight: list[Pending] = []
        self._ids: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._queue) + len(self._in_flight)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def append(self, item: Pending) -> Pending | None:
        """Add ``item``; return the event dropped to make room, if any."""
        dropped = None
        if len(self) >= self.capacity:
            if not self._queue:
                return item
            dropped = self._queue.popleft()
            self._forget(dropped)
        self._queue.append(item)
        rid = item.event.request_id
        self._ids[rid] = self._ids.get(rid, 0) + 1
        return dropped

    def take(self, size: int) -> list[Pending]:
        """Move up to ``size`` of the oldest events in flight (one batch at a time)."""
        if self._in_flight:
            raise RuntimeError("a batch is already in flight")
        count = min(size, len(self._queue))
        self._in_flight = [self._queue.popleft() for _ in range(count)]
        return list(self._in_flight)

    def commit(self, keep: Sequence[Pending] = ()) -> list[Pending]:
        """The batch in flight was written (or given up): it leaves the buffer, except ``keep``
        (a part that could not be written now), which goes back to the front, in order."""
        batch, self._in_flight = self._in_flight, []
        kept = {id(item) for item in keep}
        back = [item for item in batch if id(item) in kept]
        for item in batch:
            if id(item) not in kept:
                self._forget(item)
        self._queue.extendleft(reversed(back))
        return [item for item in batch if id(item) not in kept]

    def restore(self) -> None:
        """The write failed: the batch goes back to the front, in its order."""
        self._queue.extendleft(reversed(self._in_flight))
        self._in_flight = []

    def holds(self, request_id: str) -> bool:
        return request_id in self._ids

    def clear(self) -> int:
        """Drop everything not in flight; return how many events that was."""
        count = len(self._queue)
        for item in self._queue:
            self._forget(item)
        self._queue.clear()
        return count

    def _forget(self, item: Pending) -> None:
        rid = item.event.request_id
        left = self._ids[rid] - 1
        if left:
            self._ids[rid] = left
        else:
            del self._ids[rid]
