"""Upstreams: one pooled aiohttp client per model server, shared by every experiment naming it.

An upstream is a base URL spoken to in one protocol with one set of settings: the adapter
encodes each request and decodes each answer. An answer is read up to a size cap, before and
after decompression (aiohttp's own would inflate a gzip bomb whole), redirects are not
followed, and anything the adapter cannot decode is a ``BadAnswer``.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import orjson
from yarl import URL

from router.upstream.breaker import CircuitBreaker
from router.upstream.failures import BadAnswer, UpstreamFailure
from router.upstream.protocols import (
    PROTOCOLS,
    Adapter,
    Decoded,
    Payload,
    Settings,
    build_adapter,
)

__all__ = ["Answer", "Upstream", "UpstreamFailure", "UpstreamPool", "UpstreamTimeouts"]

ACCEPTED_ENCODINGS = "gzip, deflate"
"""The encodings an answer may come in; each is inflated here, counting what it inflates to."""
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    status: int
    body: bytes
    seconds: float


@dataclass(frozen=True, slots=True)
class Answer:
    """A model server's answer: its own bytes, untouched, and what the adapter read in them."""

    status: int
    body: bytes
    decoded: Decoded | None
    """None: a refusal (4xx) the protocol passes through to the client."""
    seconds: float


@dataclass(frozen=True)
class UpstreamTimeouts:
    connect: float
    total: float
    pool_size: int
    mirror_pool_size: int = 16
    mirror_total: float = 2.0
    max_answer_bytes: int = 1_048_576


@dataclass(frozen=True)
class UpstreamKey:
    url: str
    protocol: str
    settings: str
    """The protocol settings as canonical JSON: one upstream per distinct way of calling."""

    @classmethod
    def of(cls, url: str, protocol: str, settings: Settings) -> UpstreamKey:
        dumped = orjson.dumps(settings.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
        return cls(url, protocol, dumped.decode())


class Upstream:
    """One model server base URL with its protocol adapter, connection pool and breaker."""

    def __init__(
        self,
        url: str,
        timeouts: UpstreamTimeouts,
        breaker: CircuitBreaker,
        adapter: Adapter,
        protocol: str = "turnout",
    ) -> None:
        self.url = url
        self.protocol = protocol
        self.adapter = adapter
        self.breaker = breaker
        self.max_answer_bytes = timeouts.max_answer_bytes
        self.total_timeout = timeouts.total
        self.healthy: bool | None = None  # unknown until the first active check
        self.passive = False
        """No readiness route: only the breaker says whether it can answer."""
        self.health_misses = 0
        """Failed ``/readyz`` checks in a row."""
        self.labels: frozenset[str] | None = None
        """The labels the model server answers (JSON text), from its ``/info`` card; None
        until known, or when it does not say."""
        self.info_checked = False
        connector = aiohttp.TCPConnector(
            limit=timeouts.pool_size, keepalive_timeout=30, enable_cleanup_closed=True
        )
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=timeouts.total, sock_connect=timeouts.connect),
            skip_auto_headers=("User-Agent",),
            raise_for_status=False,
            auto_decompress=False,
        )
        self.mirror_pool_size = timeouts.mirror_pool_size
        self.mirror_timeout = timeouts.mirror_total
        self.mirror_session: aiohttp.ClientSession | None = None
        self._urls: dict[str, URL] = {}
        """Parsed call URLs by path (a protocol calls a handful of paths)."""

    def available(self) -> bool:
        """Not known to be down; consumes the half-open probe slot when there is one."""
        return self.healthy is not False and self.breaker.allow()

    def ready(self) -> bool:
        """Can answer now as far as the gateway knows: ready at the last check (passive: its
        breaker is not cooling down)."""
        if self.passive:
            return not self.breaker.cooling_down()
        return self.healthy is True and not self.breaker.cooling_down()

    async def predict(
        self, payload: Payload, request_id: str, patience: float | None = None
    ) -> Answer:
        """One call. ``patience`` (seconds), when shorter than the pool's timeout, is the
        slow-call limit: a call still running then is abandoned as a failure (``slow``), so a
        slow upstream holds a request that has somewhere else to go for ``patience`` at most,
        and opens its breaker like any failing one."""
        try:
            if patience is None or patience >= self.total_timeout:
                answer = await self._call(self.session, payload, request_id)
            else:
                try:
                    async with asyncio.timeout(patience):
                        answer = await self._call(self.session, payload, request_id)
                except TimeoutError:
                    detail = f"{self.url}: no answer within {patience:g}s"
                    raise UpstreamFailure(detail, "slow") from None
        except UpstreamFailure:
            self.breaker.record_failure()
            raise
        self.breaker.record_success()
        return answer

    async def mirror(self, payload: Payload, request_id: str) -> Answer:
        """A shadow call: its own small pool and timeout, and no say in the breaker, so a slow
        or failing shadow can neither starve nor trip the variant's live traffic."""
        if self.mirror_session is None:
            self.mirror_session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.mirror_pool_size),
                timeout=aiohttp.ClientTimeout(total=self.mirror_timeout),
                skip_auto_headers=("User-Agent",),
                auto_decompress=False,
            )
        return await self._call(self.mirror_session, payload, request_id)

    async def _call(
        self, session: aiohttp.ClientSession, payload: Payload, request_id: str
    ) -> Answer:
        call = self.adapter.encode(payload, request_id)
        url = self._urls.get(call.path)
        if url is None:
            url = URL(self.url + call.path, encoded=False)
            if len(self._urls) < 64:  # a protocol whose path varies per call stays uncached
                self._urls[call.path] = url
        response = await _post(session, url, call.body, request_id, self.max_answer_bytes)
        status = response.status
        if status >= 500:
            raise UpstreamFailure(f"{self.url} answered {status}", "error_status")
        if 300 <= status < 400:
            raise BadAnswer("redirect", f"upstream answered {status} (redirects are not followed)")
        if status >= 400:
            if self.adapter.passes_refusals:
                return Answer(status, response.body, None, response.seconds)
            raise BadAnswer("refused", f"upstream answered {status}")
        try:
            decoded = self.adapter.decode(response.body, request_id)
        except BadAnswer:
            raise
        except Exception as exc:  # an adapter's bug or a hostile answer: never the client's 500
            detail = f"the {self.protocol} adapter failed on the answer: {type(exc).__name__}"
            raise BadAnswer("undecodable", detail) from None
        return Answer(status, response.body, decoded, response.seconds)

    async def get(self, path: str, limit_seconds: float) -> tuple[int, bytes]:
        """A readiness or metadata GET under the base URL, read within the same cap as an
        answer (``BadAnswer`` past it)."""
        async with self.session.get(
            self.url + path,
            headers={"accept-encoding": ACCEPTED_ENCODINGS},
            timeout=aiohttp.ClientTimeout(total=limit_seconds),
            allow_redirects=False,
        ) as response:
            return response.status, await _read_capped(response, self.max_answer_bytes)

    def down(self) -> bool:
        """Known to be down: unhealthy, or its breaker open and still cooling down (once the
        cooldown is over it may be chosen again, so the breaker gets its probe)."""
        return self.healthy is False or self.breaker.cooling_down()

    async def close(self) -> None:
        await self.session.close()
        if self.mirror_session is not None:
            await self.mirror_session.close()


async def _post(
    session: aiohttp.ClientSession, url: URL, body: bytes, request_id: str, cap: int
) -> UpstreamResponse:
    started = time.perf_counter()
    try:
        async with session.post(
            url,
            data=body,
            headers={
                "content-type": "application/json",
                "x-request-id": request_id,
                "accept-encoding": ACCEPTED_ENCODINGS,
            },
            allow_redirects=False,
        ) as response:
            status = response.status
            payload = await _read_capped(response, cap)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        kind = "timeout" if isinstance(exc, TimeoutError) else "connection"
        raise UpstreamFailure(f"{url}: {type(exc).__name__}: {exc}".rstrip(": "), kind) from None
    return UpstreamResponse(status, payload, time.perf_counter() - started)


async def _read_capped(response: aiohttp.ClientResponse, cap: int) -> bytes:
    """The whole answer, decoded, or ``BadAnswer`` as soon as it grows past ``cap`` bytes on
    the wire or once inflated."""
    declared = response.content_length
    if declared is not None and declared > cap:
        raise BadAnswer("too_large", f"answer of {declared} bytes exceeds the cap of {cap}")
    if declared is not None:  # the parser stops at the declared length: one read, no loop
        body = await response.read()
    else:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(65536):
            size += len(chunk)
            if size > cap:
                raise BadAnswer("too_large", f"answer exceeds the cap of {cap} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
    return inflate(body, response.headers.get("content-encoding", ""), cap)


def inflate(body: bytes, encoding: str, cap: int) -> bytes:
    """``body`` decoded from its ``Content-Encoding``, never inflating past ``cap`` bytes (a
    gzip bomb stops there); an encoding not asked for is a bad answer."""
    coding = encoding.strip().lower()
    if coding in ("", "identity"):
        return body
    wbits = _WBITS.get(coding)
    if wbits is None:
        raise BadAnswer("bad_encoding", f"answer in an encoding not asked for: {coding[:40]!r}")
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, cap + 1)
    except zlib.error:
        if coding != "deflate":
            raise BadAnswer("bad_encoding", f"answer is not valid {coding}") from None
        out = _raw_deflate(body, cap)  # some servers send deflate without its zlib header
    if len(out) > cap:
        raise BadAnswer("too_large", f"answer inflates past the cap of {cap} bytes")
    return out


def _raw_deflate(body: bytes, cap: int) -> bytes:
    try:
        return zlib.decompressobj(-zlib.MAX_WBITS).decompress(body, cap + 1)
    except zlib.error:
        raise BadAnswer("bad_encoding", "answer is not valid deflate") from None


class UpstreamPool:
    """Upstreams by (URL, protocol, settings), shared by every experiment that names one."""

    def __init__(
        self,
        timeouts: UpstreamTimeouts,
        breaker_factory: Callable[[], CircuitBreaker],
    ) -> None:
        self.timeouts = timeouts
        self.breaker_factory = breaker_factory
        self.upstreams: dict[UpstreamKey, Upstream] = {}

    def get(
        self, url: str, protocol: str = "turnout", settings: Settings | None = None
    ) -> Upstream:
        settings = settings or PROTOCOLS[protocol].settings()
        key = UpstreamKey.of(url, protocol, settings)
        upstream = self.upstreams.get(key)
        if upstream is None:
            adapter = build_adapter(protocol, settings)
            upstream = Upstream(url, self.timeouts, self.breaker_factory(), adapter, protocol)
            self.upstreams[key] = upstream
        return upstream

    async def retain(self, keep: set[UpstreamKey]) -> None:
        """Close the pools of upstreams that no experiment names any more."""
        for key in [k for k in self.upstreams if k not in keep]:
            await self.upstreams.pop(key).close()

    def key_of(self, upstream: Upstream) -> UpstreamKey:
        return next(k for k, u in self.upstreams.items() if u is upstream)

    async def close(self) -> None:
        await asyncio.gather(*(u.close() for u in self.upstreams.values()))
        self.upstreams.clear()
