"""The smallest honest pass-through proxy: raw ASGI, one pooled aiohttp session, nothing else.

The gateway benchmark runs it beside Turnout as the Python limit to approach: it reads the body,
forwards it with the request's content-type, and writes the upstream's status and bytes back.
"""

from __future__ import annotations

import argparse
from typing import Any

import aiohttp
import uvicorn


def proxy(upstream: str, pool_size: int) -> Any:
    session: aiohttp.ClientSession | None = None

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal session
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            if session is not None:
                await session.close()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if session is None:
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=pool_size))
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {k.decode(): v.decode() for k, v in scope["headers"] if k == b"content-type"}
        url = upstream + scope["path"]
        async with session.request(scope["method"], url, data=body, headers=headers) as answer:
            content = await answer.read()
            kind = answer.headers.get("content-type", "application/json").encode()
        start = {"type": "http.response.start", "status": answer.status}
        await send({**start, "headers": [(b"content-type", kind)]})
        await send({"type": "http.response.body", "body": content})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:8101")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pool-size", type=int, default=64, help="as the gateway's default")
    args = parser.parse_args()
    app = proxy(args.upstream.rstrip("/"), args.pool_size)
    quiet = {"access_log": False, "log_level": "warning"}
    uvicorn.run(app, host="127.0.0.1", port=args.port, loop="uvloop", http="httptools", **quiet)


if __name__ == "__main__":
    main()
