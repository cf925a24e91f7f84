"""Answers bounded before anything reads them: inflation stops at the cap, nesting is a bad
answer for every adapter, and an adapter that fails on an answer is a bad answer too."""

from __future__ import annotations

import asyncio
import gzip
import zlib

import pytest
from aiohttp import web

from router.upstream.breaker import CircuitBreaker
from router.upstream.failures import BadAnswer
from router.upstream.pool import Upstream, UpstreamTimeouts, inflate
from router.upstream.protocols import PROTOCOLS, Decoded, Payload, build_adapter

CAP = 1_048_576
BOMB = gzip.compress(b'{"score": 0.5, "pad": "' + b"0" * (50 * CAP) + b'"}')


def test_a_gzip_bomb_stops_inflating_at_the_cap() -> None:
    assert len(BOMB) < CAP
    with pytest.raises(BadAnswer) as raised:
        inflate(BOMB, "gzip", CAP)
    assert raised.value.kind == "too_large"


def test_answers_within_the_cap_inflate_in_each_accepted_encoding() -> None:
    body = b'{"score": 0.5}'
    assert inflate(gzip.compress(body), "gzip", CAP) == body
    assert inflate(zlib.compress(body), "deflate", CAP) == body
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert inflate(raw.compress(body) + raw.flush(), "Deflate", CAP) == body
    assert inflate(body, "", CAP) == inflate(body, "identity", CAP) == body


@pytest.mark.parametrize(("encoding", "body"), [("br", b"x"), ("gzip", b"not gzip at all")])
def test_an_encoding_not_asked_for_or_broken_is_a_bad_answer(encoding: str, body: bytes) -> None:
    with pytest.raises(BadAnswer) as raised:
        inflate(body, encoding, CAP)
    assert raised.value.kind == "bad_encoding"


def adapter(protocol: str, **settings: object):  # type: ignore[no-untyped-def]
    return build_adapter(protocol, PROTOCOLS[protocol].settings.model_validate(settings))


DEEP = b"[" * 100_000 + b"]" * 100_000
ADAPTERS = {
    "turnout": {},
    "http_json": {"score": "confidence"},
    "bentoml": {},
    "open_inference": {"model": "m", "label_output": "predict"},
    "mlflow": {},
}


@pytest.mark.parametrize("protocol", list(ADAPTERS))
@pytest.mark.parametrize("body", [DEEP, b'{"a": ' + DEEP + b"}", b"[NaN, " + DEEP + b"]"])
def test_deep_nesting_is_a_bad_answer_in_every_adapter(protocol: str, body: bytes) -> None:
    with pytest.raises(BadAnswer) as raised:
        adapter(protocol, **ADAPTERS[protocol]).decode(body, "r")
    assert raised.value.kind == "too_deep"


class Exploding:
    passes_refusals = False

    def encode(self, payload: Payload, request_id: str) -> object:
        return build_adapter("turnout", PROTOCOLS["turnout"].settings()).encode(payload, request_id)

    def decode(self, body: bytes, request_id: str) -> Decoded:
        raise RecursionError("maximum recursion depth exceeded")


def test_an_adapter_that_fails_on_an_answer_is_a_bad_answer_the_breaker_sees() -> None:

    async def answer(_: web.Request) -> web.Response:
        return web.json_response({"label": 1})

    async def run() -> tuple[str, int]:
        app = web.Application()
        app.router.add_post("/predict", answer)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        breaker = CircuitBreaker(failures_to_open=1, reset_seconds=60)
        upstream = Upstream(
            f"http://127.0.0.1:{port}",
            UpstreamTimeouts(connect=1, total=5, pool_size=2),
            breaker,
            Exploding(),  # type: ignore[arg-type]
        )
        try:
            with pytest.raises(BadAnswer) as raised:
                await upstream.predict(Payload("text", "hi"), "r")
            return raised.value.kind, int(breaker.cooling_down())
        finally:
            await upstream.close()
            await runner.cleanup()

    assert asyncio.run(run()) == ("undecodable", 1)
