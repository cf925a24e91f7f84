"""Helpers shared by tests that talk to real servers."""

from __future__ import annotations

import select
import socket
from urllib.parse import urlsplit


def assert_streamed_oversize_refused(base_url: str, path: str, limit: int = 1_048_576) -> None:
    """Stream a chunked body of 8x the limit; the server must answer 413 before it ends."""
    url = urlsplit(base_url)
    total = 8 * limit
    sent = 0
    response = b""
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {url.hostname}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        chunk = b"a" * 65536
        framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        while sent < total:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                response = sock.recv(65536)
                break
            try:
                sock.sendall(framed)
            except OSError:
                break
            sent += len(chunk)
        if not response:
            sock.settimeout(10)
            try:
                response = sock.recv(65536)
            except OSError:
                response = b""
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    assert sent < total, "the server read the whole oversize body before refusing it"
