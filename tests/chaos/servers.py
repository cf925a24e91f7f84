"""Model servers that misbehave on the wire, for faults a real worker cannot be made to show:
one that accepts connections and never answers, one that trickles its answer byte by byte."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from router.local.processes import free_port

ANSWER = b'{"label": 0, "score": 0.1, "model": "profanity", "version": "bad"}'


@contextmanager
def misbehaving(mode: str, interval: float = 0.2) -> Iterator[str]:
    """A TCP server at the yielded URL. ``hang``: reads, never answers. ``trickle``: answers
    ``/readyz`` normally (so it looks healthy) and ``/predict`` one byte per ``interval``."""
    port = free_port()
    listener = socket.create_server(("127.0.0.1", port))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(0.5)
            while not stop.is_set():
                try:
                    request = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not request:
                    return
                if mode == "hang" or not request.startswith(b"POST"):
                    if request.startswith(b"GET"):
                        body = b'{"status": "ready"}'
                        conn.sendall(_response(body))
                    continue
                for byte in _response(ANSWER):
                    if stop.is_set():
                        return
                    try:
                        conn.sendall(bytes([byte]))
                    except OSError:
                        return
                    time.sleep(interval)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        listener.close()
        thread.join(5)


def _response(body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body
