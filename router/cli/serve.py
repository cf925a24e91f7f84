"""Commands that run processes: one worker, one gateway, or the whole local stack."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from router.cli.common import console, fail, load_settings
from router.core.errors import TurnoutError
from router.core.serving import serve
from router.core.settings import Settings

app = typer.Typer()


def check_redis(settings: Settings) -> None:
    """Refuse to start on Redis settings that can never work (exit 2, one line); report a
    Redis that is down and start anyway: outcomes wait in the bounded buffer."""
    import asyncio
    import logging

    from router.core import logs
    from router.core.errors import RedisMisconfigured
    from router.storage.client import describe, redis_configured
    from router.storage.preflight import preflight

    if not redis_configured(settings):
        return
    try:
        problems = asyncio.run(preflight(settings))
    except RedisMisconfigured as exc:
        raise fail(exc.detail, 2) from None
    log = logging.getLogger("turnout.gateway")
    for problem in problems:
        logs.event(log, "redis_unavailable_at_start", logging.ERROR, reason=problem)
    if not problems:
        logs.event(log, "redis_checked", redis=describe(settings))


@app.command()
def worker(
    version: Annotated[str, typer.Option(help="Version to serve.")],
    model: Annotated[str, typer.Option(help="Model name in the registry.")] = "profanity",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8101,
    host: Annotated[str | None, typer.Option(help="Interface (TURNOUT_HOST).")] = None,
) -> None:
    """Serve one model version (one process) behind the worker API."""
    from model_workers import registry
    from model_workers.service import create_app
    from router.core import logs

    settings = load_settings()
    logs.configure(settings.log_level)
    try:
        registry.verify(settings.models_dir, model, version)
    except TurnoutError as exc:
        raise fail(exc.detail) from None
    api = create_app(settings, lambda: registry.load(settings.models_dir, model, version))
    serve(api, host or settings.host, port, settings)


@app.command()
def gateway(
    port: Annotated[int | None, typer.Option(help="Port (TURNOUT_PORT).")] = None,
    host: Annotated[str | None, typer.Option(help="Interface (TURNOUT_HOST).")] = None,
) -> None:
    """Run one gateway replica (any number may share one Redis and experiments folder)."""
    from router.core import logs
    from router.core.state import join_local_stack
    from router.gateway.app import create_app

    settings = load_settings()
    if host is not None:  # the console's default mode follows the address actually bound
        settings = settings.model_copy(update={"host": host})
    logs.configure(settings.log_level)
    check_redis(settings)
    try:
        api = create_app(join_local_stack(settings))
    except TurnoutError as exc:
        raise fail(exc.detail) from None
    serve(api, settings.host, port if port is not None else settings.port, settings)


@app.command()
def up(
    traffic: Annotated[
        float,
        typer.Option(
            min=0,
            help="Also send this many sample requests per second (with feedback) through the "
            "gateway, so the console has traffic to show (make run: 5).",
        ),
    ] = 0.0,
) -> None:
    """Start the local stack: Redis, the workers the experiments name, and the gateway."""
    from router.local.demo import DemoTraffic
    from router.local.stack import Stack

    settings = load_settings()
    stack = Stack(settings)
    demo: DemoTraffic | None = None
    try:
        url = stack.start(lambda line: console.print(escape(line), highlight=False))
        if traffic:
            demo = DemoTraffic(url, traffic, settings).start()
            console.print(f"sending about {traffic:g} sample requests/s with feedback to {url}")
        stack.watch(lambda line: console.print(escape(line), highlight=False))
    except (TurnoutError, RuntimeError, TimeoutError) as exc:
        stack.stop()
        raise fail(exc.detail if isinstance(exc, TurnoutError) else str(exc)) from None
    except KeyboardInterrupt:
        pass
    console.print("stopping")
    if demo is not None:
        demo.stop()
    stack.stop()
