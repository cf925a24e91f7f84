"""Clients that attack: malformed HTTP over raw sockets, slowloris, forged admin calls."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest

from router.local.redis_server import EmbeddedRedis
from router.storage import keys
from tests.chaos.harness import Load, figure, metrics, share_2xx
from tests.conftest import Gateway, GatewayFactory, canary_yaml, write_experiment

LIMITS = {
    "TURNOUT_HTTP_HEADER_TIMEOUT": "2",
    "TURNOUT_HTTP_BODY_TIMEOUT": "1",
    "TURNOUT_HTTP_KEEP_ALIVE_TIMEOUT": "5",
    "TURNOUT_HTTP_MAX_CONNECTIONS": "300",
    "TURNOUT_ACCESS_LOG": "false",
}
TOKEN = "chaos-ops-token-0123456789"


@pytest.fixture(scope="module")
def gateway(
    start_gateway: GatewayFactory,
    workers: dict[str, str],
    chaos_redis: EmbeddedRedis,
    tmp_path_factory: pytest.TempPathFactory,
) -> Gateway:
    folder = tmp_path_factory.mktemp("experiments")
    write_experiment(folder, canary_yaml(workers, {"v1": 50, "v2": 50}, name="chaos-clients"))
    return start_gateway(
        folder,
        TURNOUT_REDIS_URL=chaos_redis.url,
        TURNOUT_ADMIN_TOKENS=json.dumps({"ops": TOKEN}),
        **LIMITS,
    )


def address(gateway: Gateway) -> tuple[str, int]:
    url = urlsplit(gateway.url)
    assert url.hostname is not None and url.port is not None
    return url.hostname, url.port


def exchange(gateway: Gateway, raw: bytes, wait: float = 5.0) -> bytes:
    """Send ``raw`` and read until the server closes or goes quiet."""
    with socket.create_connection(address(gateway), timeout=wait) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(raw)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
                if _complete(data):
                    break
        except (TimeoutError, OSError):
            pass
    return data


def _complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return False


def request(
    method: str,
    path: str,
    body: bytes = b"",
    headers: str = "",
    version: str = "HTTP/1.1",
    host: str = "gw",
) -> bytes:
    head = f"{method} {path} {version}\r\nHost: {host}\r\n{headers}"
    if (
        body
        and "content-length" not in headers.lower()
        and "transfer-encoding" not in headers.lower()
    ):
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode("latin-1") + b"\r\n" + body


JSON = "Content-Type: application/json\r\n"


def fuzz_cases() -> list[tuple[str, bytes]]:
    cases: list[tuple[str, bytes]] = []
    body = b'{"text": "hi"}'
    for method in (
        "GET",
        "PUT",
        "DELETE",
        "PATCH",
        "OPTIONS",
        "HEAD",
        "TRACE",
        "CONNECT",
        "FOO",
        "get",
    ):
        cases.append((f"method {method}", request(method, "/predict", body, JSON)))
    for path in (
        "/",
        "//",
        "/../../etc/passwd",
        "/predict?x=1&x=2",
        "/models/%00/predict",
        "/models/%ff/predict",
        "/models/" + "a" * 300 + "/predict",
        "/%",
        "/%zz",
        "/models/../predict",
        "*",
        "http://evil.example/predict",
        "/predict#frag",
        "/metrics?a=" + "b" * 5000,
        "/experiments/" + "x" * 5000 + "/report",
        "/experiments/%2e%2e/report",
        "/models/profanity/predict/extra",
        "/admin/flags",
        "/ui/../../etc",
        "/models/PROFANITY/predict",
    ):
        cases.append((f"path {path[:40]}", request("POST", path, body, JSON)))
    for version in ("HTTP/1.0", "HTTP/2.0", "HTTP/9.9", "HTTX/1.1", "", "HTTP/1.1 extra"):
        cases.append((f"version {version!r}", request("POST", "/predict", body, JSON, version)))
    for name, headers in (
        ("no host", None),
        ("two content-lengths", JSON + "Content-Length: 14\r\nContent-Length: 20\r\n"),
        ("negative content-length", JSON + "Content-Length: -1\r\n"),
        ("content-length not a number", JSON + "Content-Length: ten\r\n"),
        ("content-length huge", JSON + "Content-Length: 99999999999999999999\r\n"),
        ("content-length short", JSON + "Content-Length: 5\r\n"),
        ("header without colon", JSON + "NoColonHere\r\n"),
        ("obs-fold", JSON + "X-Fold: a\r\n b\r\n"),
        ("16 KB header", JSON + "X-Big: " + "a" * 16_000 + "\r\n"),
        ("100 headers", JSON + "".join(f"X-H{i}: v\r\n" for i in range(100))),
        ("chunked with a bad size", JSON + "Transfer-Encoding: chunked\r\n"),
        (
            "chunked and content-length",
            JSON + "Transfer-Encoding: chunked\r\nContent-Length: 14\r\n",
        ),
        ("transfer-encoding gzip", JSON + "Transfer-Encoding: gzip\r\n"),
        ("expect 100-continue", JSON + "Expect: 100-continue\r\n"),
        ("content-type text/plain", "Content-Type: text/plain\r\n"),
        ("content-type latin-1", "Content-Type: application/json; charset=latin-1\r\n"),
        ("content-type multipart", "Content-Type: multipart/form-data; boundary=x\r\n"),
        ("no content-type", ""),
        ("user id header 10 KB", JSON + "X-User-Id: " + "u" * 10_000 + "\r\n"),
        ("request id with spaces", JSON + "X-Request-Id: a b c\r\n"),
        ("request id 200 chars", JSON + "X-Request-Id: " + "r" * 200 + "\r\n"),
        ("forced variant without token", JSON + "X-Turnout-Variant: v2\r\n"),
        ("forced variant unknown", JSON + "X-Turnout-Variant: ../v9\r\n"),
        ("authorization garbage", JSON + "Authorization: \x7f\x7f\r\n"),
        ("upgrade websocket", JSON + "Connection: Upgrade\r\nUpgrade: websocket\r\n"),
        ("upgrade h2c", JSON + "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"),
    ):
        if headers is None:
            raw = (
                b"POST /predict HTTP/1.1\r\n" + JSON.encode() + b"Content-Length: 14\r\n\r\n" + body
            )
        elif "chunked with a bad size" in name:
            raw = request("POST", "/predict", b"zz\r\nxx\r\n0\r\n\r\n", headers)
        else:
            raw = request("POST", "/predict", body, headers)
        cases.append((f"header {name}", raw))
    for name, payload in (
        ("invalid json", b"{"),
        ("empty body", b""),
        ("json array", b"[]"),
        ("json null", b"null"),
        ("json string", b'"text"'),
        ("json number", b"1e400"),
        ("nesting 100000", b"[" * 100_000 + b"]" * 100_000),
        ("object nesting 5000", b'{"a":' * 5000 + b"1" + b"}" * 5000),
        ("text null", b'{"text": null}'),
        ("text number", b'{"text": 12}'),
        ("text huge number", b'{"text": 1e999}'),
        ("text NaN", b'{"text": NaN}'),
        ("text lone surrogate", b'{"text": "\\ud800"}'),
        ("text NUL", b'{"text": "a\\u0000b"}'),
        ("text 10001 chars", json.dumps({"text": "x" * 10_001}).encode()),
        ("text whitespace", b'{"text": "   \\n\\t"}'),
        ("duplicate keys", b'{"text": "a", "text": "b"}'),
        ("BOM", b"\xef\xbb\xbf" + b'{"text": "hi"}'),
        ("trailing garbage", b'{"text": "hi"} trailing'),
        ("invalid utf-8", b'{"text": "\xc3\x28"}'),
        ("overlong utf-8", b'{"text": "\xc0\xaf"}'),
        ("user id object", b'{"text": "hi", "user_id": {"a": 1}}'),
        ("user id bool", b'{"text": "hi", "user_id": true}'),
        ("user id huge int", b'{"text": "hi", "user_id": 123456789012345678901234567890}'),
        ("user id 257 chars", json.dumps({"text": "hi", "user_id": "u" * 257}).encode()),
        ("context a list", b'{"text": "hi", "context": [1]}'),
        ("context deep", b'{"text": "hi", "context": ' + b'{"a":' * 500 + b"1" + b"}" * 500 + b"}"),
        ("unknown fields", b'{"text": "hi", "__proto__": {"x": 1}, "constructor": 1}'),
        ("1 MB + 1 body", b'{"text": "' + b"a" * 1_048_576 + b'"}'),
        ("many keys", json.dumps({f"k{i}": i for i in range(20_000)} | {"text": "hi"}).encode()),
    ):
        cases.append((f"body {name}", request("POST", "/predict", payload, JSON)))
    for name, payload in (
        ("feedback not json", b"{"),
        ("feedback reward string", b'{"request_id": "x", "reward": "1"}'),
        ("feedback reward inf", b'{"request_id": "x", "reward": 1e999}'),
        ("feedback label list", b'{"request_id": "x", "label": [1]}'),
        ("feedback id with a star", b'{"request_id": "turnout:*", "reward": 1}'),
        ("feedback id 200 chars", json.dumps({"request_id": "r" * 200, "reward": 1}).encode()),
        ("feedback both", b'{"request_id": "x", "reward": 1, "label": 1}'),
        ("feedback label 7", b'{"request_id": "x", "label": 7}'),
    ):
        cases.append((name, request("POST", "/feedback", payload, JSON)))
    cases.append(("not http at all", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64)))
    cases.append(("nul bytes", b"\x00" * 64 + b"\r\n\r\n"))
    cases.append(("pipelined three", request("POST", "/predict", body, JSON) * 3))
    cases.append(("half a request line", b"POST /predi"))
    return cases


def test_http_fuzz_over_raw_sockets_never_gets_a_5xx_or_a_plain_error(gateway: Gateway) -> None:
    cases = fuzz_cases()
    assert len(cases) >= 100
    outcomes: dict[str, int] = {}
    bad: list[tuple[str, bytes]] = []
    for name, raw in cases:
        reply = exchange(gateway, raw)
        if not reply:
            outcomes[name] = 0  # closed without an answer (e.g. half a request, then silence)
            continue
        status_line, _, rest = reply.partition(b"\r\n")
        status = int(status_line.split()[1])
        outcomes[name] = status
        head, _, body = rest.partition(b"\r\n\r\n")
        html = b"content-type: text/html" in head.lower()
        if status >= 500:
            bad.append((name, reply[:300]))
        elif html:
            # The console's own error pages (issue 17) are HTML, and only the console's.
            if b" /ui" not in raw.split(b"\r\n")[0] or b"<html" not in body:
                bad.append((name, reply[:300]))
        elif status >= 400 and b"HEAD" not in raw[:5]:
            error = json.loads(body.split(b"HTTP/1.1")[0] or b"{}")
            if set(error) != {"error", "detail"}:
                bad.append((name, reply[:300]))
    counts: dict[int, int] = {}
    for status in outcomes.values():
        counts[status] = counts.get(status, 0) + 1
    print(f"[chaos] http fuzz: {len(cases)} cases, statuses {dict(sorted(counts.items()))}")
    assert not bad, bad
    assert httpx.post(f"{gateway.url}/predict", json={"text": "still fine"}).status_code == 200
    output = gateway.process.output()
    assert "Traceback" not in output
    assert '"level":"error"' not in output


def test_slowloris_is_cut_off_while_real_clients_are_served(gateway: Gateway) -> None:
    held: list[socket.socket] = []
    opened = time.monotonic()
    with Load(gateway.url, concurrency=4) as load:
        for _ in range(100):
            sock = socket.create_connection(address(gateway), timeout=10)
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: gw\r\n")
            held.append(sock)
        closed_at: dict[int, float] = {}
        while len(closed_at) < len(held) and time.monotonic() - opened < 15:
            for i, sock in enumerate(held):
                if i in closed_at:
                    continue
                try:
                    sock.sendall(b"X")  # one header byte at a time
                    sock.setblocking(False)
                    try:
                        if sock.recv(4096) == b"":
                            closed_at[i] = time.monotonic() - opened
                    except BlockingIOError:
                        pass
                    except OSError:
                        closed_at[i] = time.monotonic() - opened
                    sock.setblocking(True)
                except OSError:
                    closed_at[i] = time.monotonic() - opened
            time.sleep(0.3)
        load.wait_for(50)
    for sock in held:
        sock.close()
    slowest = max(closed_at.values()) if closed_at else float("inf")
    figure(
        "slowloris",
        load.samples,
        gateway,
        slowloris_closed=f"{len(closed_at)}/{len(held)}",
        slowest_close_s=f"{slowest:.1f}",
    )
    assert share_2xx(load.samples) == 1.0
    assert len(closed_at) == len(held)
    assert slowest < 6  # header timeout 2 s, plus the time to open them all


FORGED = [
    None,
    "",
    "Bearer",
    "Bearer ",
    "Bearer wrong-token",
    f"Bearer {TOKEN[:-1]}",
    f"Bearer {TOKEN}x",
    f"Bearer x{TOKEN}",
    f"Bearer {TOKEN.upper()}",
    f"Bearer {TOKEN[::-1]}",
    f"Basic {TOKEN}",
    f"Token {TOKEN}",
    f"Digest username=ops, response={TOKEN}",
    TOKEN,
    f"Bearer{TOKEN}",
    f"Bearer {TOKEN[:8]}",
    "Bearer null",
    "Bearer *",
    "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJvcHMifQ.",
    f"Bearer {TOKEN.encode().hex()}",
    f"Bearer {TOKEN.replace('o', '0')}",
    f"Bearer {TOKEN}\tadmin",
]


def test_forged_admin_calls_change_nothing_under_load(
    gateway: Gateway, chaos_redis: EmbeddedRedis
) -> None:
    client = chaos_redis.client()
    calls = [
        ("PUT", "/admin/flags/chaos-clients/kill_switch", {"value": True}),
        ("POST", "/admin/experiments/chaos-clients/rollback", {"reason": "forged"}),
        ("POST", "/admin/reload", None),
        ("GET", "/admin/flags", None),
    ]
    flags_before = client.hgetall(keys.FLAGS)
    denied_before = metrics(gateway)["turnout_admin_denied_total"]
    tries = 0
    with Load(gateway.url, concurrency=4) as load:
        for method, path, body in calls:
            for auth in FORGED:
                # Raw, so headers no client library would send still go out; the token in the
                # query string is never a credential either.
                headers = JSON if auth is None else f"{JSON}Authorization: {auth}\r\n"
                payload = json.dumps(body).encode() if body is not None else b""
                # A trusted name: an untrusted one is refused before auth (next assertion).
                raw = request(method, f"{path}?token={TOKEN}", payload, headers, host="127.0.0.1")
                reply = exchange(gateway, raw)
                assert reply.startswith(b"HTTP/1.1 401"), (method, path, auth, reply[:200])
                elsewhere = exchange(gateway, request(method, path, payload, headers))
                assert elsewhere.startswith(b"HTTP/1.1 400"), (method, path, elsewhere[:200])
                assert b"untrusted_host" in elsewhere
                assert TOKEN.encode() not in reply
                tries += 1
        load.wait_for(50)
    denied = metrics(gateway)["turnout_admin_denied_total"] - denied_before
    figure(
        "admin forgery",
        load.samples,
        gateway,
        forged_styles=len(FORGED),
        refused=f"{denied:.0f}/{tries}",
    )
    assert len(FORGED) >= 20
    assert denied == tries
    assert client.hgetall(keys.FLAGS) == flags_before
    assert share_2xx(load.samples) == 1.0
    assert {s.body.get("variant") for s in load.samples} == {"v1", "v2"}  # no kill switch
    assert TOKEN not in gateway.process.output()
