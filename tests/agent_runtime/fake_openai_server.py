"""A scripted OpenAI-compatible HTTP server on loopback, for worker processes that cannot share a MockTransport."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ScriptedServer(ThreadingHTTPServer):
    def __init__(self, script: list[dict[str, Any]], holds: dict[int, float] | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = list(script)
        self.requests: list[dict[str, Any]] = []
        self.bodies: list[bytes] = []
        """Each request's body as it arrived, byte for byte."""
        self.holds = dict(holds or {})
        """Request number (0 first) -> seconds to wait before answering it: a model that hangs mid-request."""
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: ScriptedServer

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length", 0)))
        with self.server.lock:
            hold = self.server.holds.get(len(self.server.requests), 0.0)
            self.server.requests.append(json.loads(raw or b"{}"))
            self.server.bodies.append(raw)
            reply = self.server.script.pop(0) if self.server.script else None
        time.sleep(hold)
        payload = json.dumps(reply or {"error": {"message": "script exhausted"}}).encode()
        try:
            self.send_response(200 if reply else 500)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            pass  # the client is gone (a killed worker)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def scripted_server(script: list[dict[str, Any]], holds: dict[int, float] | None = None) -> Iterator[ScriptedServer]:
    server = ScriptedServer(script, holds)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
