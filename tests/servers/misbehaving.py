"""A real HTTP model server that answers badly on purpose, one way per path prefix.

``python -m tests.servers.misbehaving PORT``. ``/<case>/predict`` (and the Open Inference paths
under ``/<case>``) answer: ``good`` a seed-service answer; ``not_json`` plain text; ``html`` an
HTML error page (status 200, as a misrouted proxy sends); ``missing`` JSON without the fields;
``nan`` a NaN score; ``text_score`` a score that is a word; ``redirect`` a 307 to ``good``;
``large`` an answer of 100 KiB with a content-length; ``large_chunked`` the same streamed without
one; ``trickle`` a byte every 0.5 s; ``oip_error`` an Open Inference answer with an ``error``;
``oip_id`` an Open Inference answer for another request id; ``gzip_bomb`` a 200 KiB gzip answer
(with a content-length) that inflates to 200 MiB, on every path, readiness and metadata included;
``gzip_bomb_small`` one of 60 KiB that inflates to 60 MiB; ``deep_json`` an answer nested 30,000
levels deep; ``oip_deep`` an Open Inference answer whose output data is nested 1,000 levels deep
(within orjson's own limit of 1,024).
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
import zlib

from aiohttp import web

GOOD = {"is_profane": True, "confidence": 0.9}
LARGE = 100 * 1024
BOMB_MIB = {"gzip_bomb": 200, "gzip_bomb_small": 60}
DEEP = 30_000
OIP_DEEP = 1_000


@functools.cache
def gzip_bomb(mib: int) -> bytes:
    """Valid JSON once inflated: a seed-service answer with ``mib`` MiB of padding, gzipped in
    pieces so the server never holds it whole."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [packer.compress(b'{"is_profane": true, "confidence": 0.9, "padding": "')]
    piece = b"0" * (1024 * 1024)
    parts += [packer.compress(piece) for _ in range(mib)]
    parts.append(packer.compress(b'"}') + packer.flush())
    return b"".join(parts)


def bomb_response(case: str) -> web.Response:
    return web.Response(
        body=gzip_bomb(BOMB_MIB[case]),
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )


def oip_answer(request_id: str) -> dict[str, object]:
    return {
        "model_name": "m",
        "id": request_id,
        "outputs": [{"name": "predict", "shape": [1], "datatype": "INT64", "data": [1]}],
    }


async def predict(request: web.Request) -> web.StreamResponse:
    case = request.match_info["case"]
    if case == "good":
        return web.json_response(GOOD)
    if case == "not_json":
        return web.Response(text="OK, profane", content_type="text/plain")
    if case == "html":
        return web.Response(
            text="<html><h1>Service Unavailable</h1></html>", content_type="text/html"
        )
    if case == "missing":
        return web.json_response({"prediction": "profane"})
    if case == "nan":
        return web.Response(text=json.dumps({"is_profane": True, "confidence": float("nan")}))
    if case == "text_score":
        return web.json_response({"is_profane": True, "confidence": "high"})
    if case == "redirect":
        raise web.HTTPTemporaryRedirect("/good/predict")
    if case in BOMB_MIB:
        return bomb_response(case)
    if case == "deep_json":
        deep = "[" * DEEP + "]" * DEEP
        return web.Response(
            text=f'{{"is_profane": true, "confidence": 0.9, "x": {deep}}}',
            content_type="application/json",
        )
    if case == "large":
        padding = "x" * LARGE
        return web.json_response({**GOOD, "padding": padding})
    if case in ("large_chunked", "trickle"):
        response = web.StreamResponse(headers={"content-type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        if case == "trickle":
            for byte in json.dumps(GOOD).encode():
                await response.write(bytes([byte]))
                await asyncio.sleep(0.5)
        else:
            await response.write(b'{"is_profane": true, "confidence": 0.9, "padding": "')
            for _ in range(LARGE // 1024):
                await response.write(b"x" * 1024)
            await response.write(b'"}')
        await response.write_eof()
        return response
    raise web.HTTPNotFound()


async def infer(request: web.Request) -> web.Response:
    case = request.match_info["case"]
    body = await request.json()
    if case == "oip_error":
        return web.json_response({"error": "model m failed: out of memory"})
    if case == "oip_id":
        return web.json_response(oip_answer("someone-else"))
    if case in BOMB_MIB:
        return bomb_response(case)
    answer = oip_answer(body.get("id"))
    if case == "oip_deep":
        deep = "[" * OIP_DEEP + "1" + "]" * OIP_DEEP
        text = json.dumps(answer).replace('"data": [1]', f'"data": {deep}')
        return web.Response(text=text, content_type="application/json")
    return web.json_response(answer)


async def ready(request: web.Request) -> web.Response:
    if request.match_info["case"] in BOMB_MIB:
        return bomb_response(request.match_info["case"])
    return web.json_response({"ready": True})


async def metadata(request: web.Request) -> web.Response:
    if request.match_info["case"] in BOMB_MIB:
        return bomb_response(request.match_info["case"])
    return web.json_response(
        {
            "name": "m",
            "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1]}],
            "outputs": [{"name": "predict", "datatype": "INT64", "shape": [1]}],
        }
    )


def main() -> None:
    for mib in BOMB_MIB.values():  # made before the server listens: no bomb is slow to come
        gzip_bomb(mib)
    app = web.Application()
    app.router.add_post("/{case}/predict", predict)
    app.router.add_post("/{case}/v2/models/m/infer", infer)
    app.router.add_get("/{case}/v2/health/ready", ready)
    app.router.add_get("/{case}/v2/models/m/ready", ready)
    app.router.add_get("/{case}/v2/models/m", metadata)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)


if __name__ == "__main__":
    main()
