"""Client connections a real gateway must bound, over raw sockets: slow heads, stalled bodies,
idle connections, too many connections, unbounded path parameters and clients that leave."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from router.local.processes import poll_until
from tests.conftest import Gateway, GatewayFactory, WorkerFactory, canary_yaml, write_experiment

LIMITS = {
    "TURNOUT_HTTP_HEADER_TIMEOUT": "1",
    "TURNOUT_HTTP_BODY_TIMEOUT": "1",
    "TURNOUT_HTTP_KEEP_ALIVE_TIMEOUT": "2",
    "TURNOUT_HTTP_MAX_CONNECTIONS": "40",
}


@pytest.fixture(scope="module")
def gateway(
    start_worker: WorkerFactory,
    start_gateway: GatewayFactory,
    tmp_path_factory: pytest.TempPathFactory,
) -> Gateway:
    folder = tmp_path_factory.mktemp("experiments")
    write_experiment(folder, canary_yaml({"v1": start_worker("v1").url}, {"v1": 100}))
    return start_gateway(folder, **LIMITS)


def connect(gateway: Gateway) -> socket.socket:
    url = urlsplit(gateway.url)
    sock = socket.create_connection((url.hostname, url.port), timeout=10)
    return sock


def read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took."""
    started = time.monotonic()
    sock.settimeout(limit)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for {limit}s: {data[:200]!r}")
    return data, time.monotonic() - started


def status_and_json(raw: bytes) -> tuple[int, dict[str, str]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_a_request_head_that_trickles_in_gets_408_and_the_connection_closes(
    gateway: Gateway,
) -> None:
    with connect(gateway) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: gw\r\n")
        started = time.monotonic()
        try:
            for _ in range(10):  # one header byte every 0.3 s: never a whole head
                sock.sendall(b"X")
                time.sleep(0.3)
        except OSError:
            pass  # closed while we were still trickling
        raw, _ = read_until_closed(sock, 10)
    assert time.monotonic() - started < 4
    status, body = status_and_json(raw)
    assert (status, body["error"]) == (408, "request_timeout")


def test_a_body_that_stalls_gets_408_and_the_connection_closes(gateway: Gateway) -> None:
    with connect(gateway) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"'
        )
        raw, waited = read_until_closed(sock, 10)
    status, body = status_and_json(raw)
    assert (status, body["error"]) == (408, "request_timeout")
    assert b"connection: close" in raw.lower()
    assert waited < 4


def test_idle_connections_close_after_the_keep_alive_timeout(gateway: Gateway) -> None:
    with connect(gateway) as never_asked, connect(gateway) as asked_once:
        asked_once.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        first, waited_new = read_until_closed(never_asked, 10)
        rest, _ = read_until_closed(asked_once, 10)
    assert first == b""  # closed without a word
    assert 1.5 < waited_new < 5
    assert rest.startswith(b"HTTP/1.1 200")


def test_connections_past_the_cap_get_503_at_once(gateway: Gateway) -> None:
    held: list[socket.socket] = []
    try:
        for _ in range(40):
            held.append(connect(gateway))
        time.sleep(0.3)  # every one accepted by the server before the next
        with connect(gateway) as extra:
            raw, waited = read_until_closed(extra, 5)
        status, body = status_and_json(raw)
        assert (status, body["error"]) == (503, "too_many_connections")
        assert waited < 1
    finally:
        for sock in held:
            sock.close()
    poll_until(
        lambda: httpx.get(f"{gateway.url}/healthz").status_code == 200, 10, what="a free slot"
    )


@pytest.mark.parametrize("length", [65, 256, 300, 5000])
def test_a_long_model_name_is_a_json_404(gateway: Gateway, length: int) -> None:
    r = httpx.post(f"{gateway.url}/models/{'a' * length}/predict", json={"text": "hi"})
    assert r.status_code == 404, r.text
    assert r.json()["error"] == "unknown_model"
    assert len(r.json()["detail"]) < 200


HUGE = "x" * 100_000


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", f"/experiments/{'e' * 8000}/report", None, 404),
        ("GET", f"/v2/models/{'m' * 8000}", None, 404),
        ("POST", "/v2/models/profanity/infer", {"outputs": [{"name": HUGE}]}, 422),
    ],
    ids=["report name", "open inference model", "open inference output"],
)
def test_a_refused_client_value_is_echoed_cut(
    gateway: Gateway, method: str, path: str, body: object, status: int
) -> None:
    r = httpx.request(method, f"{gateway.url}{path}", json=body, timeout=30)
    assert r.status_code == status, r.text[:300]
    detail = r.json()["detail"]
    assert len(detail) < 500 and "cut" in detail, detail[:300]


def test_a_request_line_that_is_not_http_gets_a_json_400(gateway: Gateway) -> None:
    with connect(gateway) as sock:
        sock.sendall(b"\x16\x03\x01 this is not http\r\n\r\n")
        raw, _ = read_until_closed(sock, 5)
    status, body = status_and_json(raw)
    assert (status, body["error"]) == (400, "bad_request")


def test_a_client_that_leaves_mid_body_is_counted_and_logged_at_info(
    gateway: Gateway, tmp_path: Path
) -> None:
    def disconnects() -> float:
        for line in httpx.get(f"{gateway.url}/metrics").text.splitlines():
            if line.startswith("turnout_client_disconnects_total"):
                return float(line.split()[-1])
        return 0.0

    before = disconnects()
    with connect(gateway) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"text": '
        )
        time.sleep(0.2)
    poll_until(lambda: disconnects() == before + 1, 5, what="the disconnect to be counted")
    lines = [json.loads(x) for x in gateway.process.output().splitlines() if x.startswith("{")]
    gone = [x for x in lines if x.get("event") == "client_disconnected"]
    assert gone and all(x["level"] == "info" and "exc" not in x for x in gone)
    assert not [x for x in lines if x["level"] == "error"], [
        x for x in lines if x["level"] == "error"
    ]
    assert "Traceback" not in gateway.process.output()


@pytest.mark.parametrize("depth", [2000, 100_000])
def test_a_body_nested_too_deeply_is_a_json_400(gateway: Gateway, depth: int) -> None:
    body = b"[" * depth + b"]" * depth  # found by the chaos suite's fuzz: a RecursionError, 500
    r = httpx.post(
        f"{gateway.url}/predict", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_json"


def test_a_text_with_a_lone_surrogate_is_a_422(gateway: Gateway) -> None:
    body = b'{"text": "a\\ud800b"}'  # found by the chaos suite's fuzz: a 500 at encoding time
    r = httpx.post(
        f"{gateway.url}/predict", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 422, r.text
    assert "lone surrogate" in r.json()["detail"]


def send_then_read(gateway: Gateway, head: bytes, body: bytes) -> bytes:
    """Send a whole request as most clients do (all of the body, then read the answer); what
    the server answered, read until it closes. A reset while sending fails: such a client
    (curl, httpx, requests) reports the error and never reads the answer."""
    with connect(gateway) as sock:
        try:
            sock.sendall(head + body)
        except OSError as exc:
            pytest.fail(f"the connection was reset while the client was still sending: {exc}")
        data = b""
        sock.settimeout(10)
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pytest.fail(f"the connection was reset before the answer was read ({data[:80]!r})")
    return data


EARLY_REFUSALS = [
    ("/predict", "application/json", 413, "payload_too_large"),
    ("/predict", "text/plain", 415, "unsupported_media_type"),
    ("/models/nothing-here/predict", "application/json", 404, "unknown_model"),
]


@pytest.mark.parametrize(("path", "kind", "status", "code"), EARLY_REFUSALS)
def test_an_early_refusal_is_readable_by_a_client_that_asked_to_close(
    gateway: Gateway, path: str, kind: str, status: int, code: str
) -> None:
    """Refused before its body is read, a ``Connection: close`` client still reads the answer:
    the server closes lingering (half-close, then reads and discards what the client still
    sends), as nginx does, instead of resetting the connection under the client."""
    size = 8 * 1_048_576
    head = (
        f"POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: {kind}\r\n"
        f"Content-Length: {size}\r\nConnection: close\r\n\r\n"
    ).encode()
    raw = send_then_read(gateway, head, b"a" * size)
    answered, body = status_and_json(raw)
    assert (answered, body["error"]) == (status, code)
    assert b"connection: close" in raw.lower()


def test_a_refusal_with_keep_alive_is_read_and_the_connection_serves_again(
    gateway: Gateway,
) -> None:
    size = 2 * 1_048_576
    head = (
        f"POST /predict HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        f"Content-Length: {size}\r\n\r\n"
    ).encode()
    follow = b'{"text": "hello there"}'
    again = (
        b"POST /predict HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(follow)}\r\nConnection: close\r\n\r\n".encode()
        + follow
    )
    raw = send_then_read(gateway, head, b"a" * size + again)
    first, _, rest = raw.partition(b"HTTP/1.1 ")[2].partition(b"HTTP/1.1 ")
    assert first.startswith(b"413"), raw[:200]
    assert rest.startswith(b"200"), raw[:400]
