"""A real HTTP endpoint on 127.0.0.1 that records what it is sent and fails on demand."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    answered: int  # the status code the receiver answered with

    @property
    def event_id(self) -> str:
        return self.headers["mercato-event-id"]


class Receiver:
    """``fail_next(n)`` answers the next n requests with an error; ``hold()`` stalls them."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._changed = threading.Condition()
        self._failures_left = 0
        self._failure_status = 500
        self._release: threading.Event | None = None
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hooks/mercato"

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

    def fail_next(self, count: int, status: int = 500) -> None:
        with self._changed:
            self._failures_left = count
            self._failure_status = status

    def hold(self) -> None:
        """Keep every request waiting (longer than the worker's timeout) until ``release``."""
        self._release = threading.Event()

    def release(self) -> None:
        if self._release is not None:
            self._release.set()

    def wait_for(self, count: int, timeout: float = 15.0) -> bool:
        """Until ``count`` requests were answered with 2xx (a condition wait, not a sleep)."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self.succeeded()) >= count, timeout)

    def succeeded(self) -> list[Received]:
        return [r for r in self.requests if 200 <= r.answered < 300]

    def _answer_for(self) -> int:
        with self._changed:
            if self._failures_left > 0:
                self._failures_left -= 1
                return self._failure_status
            return 204

    def _record(self, received: Received) -> None:
        with self._changed:
            self.requests.append(received)
            self._changed.notify_all()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver._release is not None:
                    receiver._release.wait(30)
                status = receiver._answer_for()
                headers = {k.lower(): v for k, v in self.headers.items()}
                # Recorded before answering: once the sender has its answer, the test sees it.
                receiver._record(Received(self.path, headers, body, status))
                answer = b"" if status == 204 else b'{"error": "receiver is down"}'
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                if answer:
                    self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def check_signature(secret: str, received: Received, tolerance: int = 300) -> bool:
    """The receiver's side, written independently of mercato.webhooks.signing."""
    header = received.headers["mercato-signature"]
    fields = [part.split("=", 1) for part in header.split(",")]
    timestamps = [v for k, v in fields if k == "t"]
    signatures = [v for k, v in fields if k == "v1"]
    if len(timestamps) != 1 or not signatures:
        return False
    if timestamps[0] != received.headers["mercato-timestamp"]:
        return False
    if abs(time.time() - int(timestamps[0])) > tolerance:
        return False
    expected = hmac.new(
        secret.encode(), timestamps[0].encode() + b"." + received.body, hashlib.sha256
    ).hexdigest()
    return any(hmac.compare_digest(expected, s) for s in signatures)
