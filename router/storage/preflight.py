"""The start-up check of the Redis settings: refuse what can never work, report what is down.

A wrong password or a Sentinel master name no sentinel knows cannot heal by waiting: it raises
``RedisMisconfigured`` and the process refuses to start, with one line saying why. A Redis that
does not answer (a sentinel, a cluster node, the primary) is an outage, not a mistake: it is
reported and the process starts, recording into its bounded buffer until Redis is back.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import AuthenticationError, RedisError, ResponseError

from router.core.errors import RedisMisconfigured
from router.core.settings import Settings
from router.storage.client import _secret, address, connect, describe

AUTH_REPLIES = ("WRONGPASS", "NOAUTH", "NOPERM", "invalid password", "invalid username")


def refused_auth(exc: RedisError) -> bool:
    if isinstance(exc, AuthenticationError):
        return True
    return isinstance(exc, ResponseError) and any(r in str(exc) for r in AUTH_REPLIES)


async def preflight(settings: Settings) -> list[str]:
    """Check the configured Redis once. Returns what is down (empty: all answered); raises
    ``RedisMisconfigured`` for what waiting cannot fix."""
    problems: list[str] = []
    if settings.redis_sentinels:
        problems += await _check_sentinels(settings)
        if problems and len(problems) == len(settings.redis_sentinels):
            return problems  # no sentinel answered: the primary cannot be found yet
    client = connect(settings, "turnout-preflight")
    try:
        if isinstance(client, RedisCluster):
            problems += await _check_cluster(client, settings)
        else:
            try:
                await client.ping()
            except RedisError as exc:
                if refused_auth(exc):
                    raise RedisMisconfigured(
                        f"{describe(settings)} refused the credentials "
                        f"(TURNOUT_REDIS_PASSWORD / the URL's password): {exc}"
                    ) from None
                problems.append(f"{describe(settings)} does not answer: {type(exc).__name__}")
    finally:
        await client.aclose()
    return problems


async def _check_sentinels(settings: Settings) -> list[str]:
    """Ask every sentinel for the master's address; refuse a name none of them knows."""
    name = settings.redis_sentinel_master
    unreachable: list[str] = []
    knows: list[str] = []
    for text in settings.redis_sentinels:
        host, port = address(text)
        sentinel = Redis(
            host=host,
            port=port,
            password=_secret(settings.redis_sentinel_password),
            socket_timeout=settings.redis_socket_timeout,
            socket_connect_timeout=settings.redis_connect_timeout,
            decode_responses=True,
        )
        try:
            found = await sentinel.sentinel_get_master_addr_by_name(name)
        except RedisError as exc:
            if refused_auth(exc):
                raise RedisMisconfigured(
                    f"sentinel {text} refused the credentials (TURNOUT_REDIS_SENTINEL_PASSWORD): "
                    f"{exc}"
                ) from None
            unreachable.append(f"sentinel {text} does not answer: {type(exc).__name__}")
            continue
        finally:
            await sentinel.aclose()
        if found:
            knows.append(text)
    if not knows and len(unreachable) < len(settings.redis_sentinels):
        raise RedisMisconfigured(
            f"no sentinel of {', '.join(settings.redis_sentinels)} monitors a master named "
            f"{name!r} (TURNOUT_REDIS_SENTINEL_MASTER)"
        )
    return unreachable


async def _check_cluster(client: RedisCluster, settings: Settings) -> list[str]:
    """Every node the cluster lists must answer; one that does not is reported by address."""
    try:
        await client.initialize()
    except RedisError as exc:
        if refused_auth(exc) or refused_auth_cause(exc):
            raise RedisMisconfigured(
                f"{describe(settings)} refused the credentials (TURNOUT_REDIS_PASSWORD): {exc}"
            ) from None
        reason = f"{type(exc).__name__}: {exc}"
        return [f"{describe(settings)}: the cluster is not reachable yet ({reason})"]
    problems = []
    for node in client.get_nodes():
        try:
            await client.ping(target_nodes=node)
        except RedisError as exc:
            if refused_auth(exc):
                raise RedisMisconfigured(
                    f"cluster node {node.name} refused the credentials (TURNOUT_REDIS_PASSWORD)"
                ) from None
            role = node.server_type or "node"
            problems.append(f"cluster {role} {node.name} does not answer: {type(exc).__name__}")
    return problems


def refused_auth_cause(exc: BaseException) -> bool:
    """redis-py wraps a node's refusal at cluster start-up; look at what it wraps."""
    cause = exc.__cause__ or exc.__context__
    while cause is not None:
        if isinstance(cause, RedisError) and refused_auth(cause):
            return True
        cause = cause.__cause__ or cause.__context__
    return False
