"""A scripted webhook receiver on a real socket (used by the other webhook tests), and the demo receiver script."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from orchestration.services.webhook_delivery import signed_headers
from orchestration.services.webhooks import new_webhook_secret
from scripts.webhook_receiver import start_receiver


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    """Lower-cased names."""
    body: bytes
    status: int = 0
    """What the receiver answered (a 2xx: it took the delivery, whether or not the sender heard the answer)."""


class ScriptedReceiver(ThreadingHTTPServer):
    """Answers each POST with the next scripted answer (then `default`), and keeps every request it got."""

    daemon_threads = True

    def __init__(self, script: list[Answer], default: Answer) -> None:
        super().__init__(("127.0.0.1", 0), _ScriptedHandler)
        self.script, self.default = list(script), default
        self.received: list[Received] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"

    def next_answer(self, path: str, headers: dict[str, str], body: bytes) -> Answer:
        with self.lock:
            answer = self.script.pop(0) if self.script else self.default
            self.received.append(Received(path=path, headers=headers, body=body, status=answer.status))
            return answer

    def ids(self) -> list[str]:
        with self.lock:
            return [request.headers["webhook-id"] for request in self.received]

    def duplicates(self) -> int:
        """Deliveries taken (answered 2xx) again after the first time: what the receiver must drop by webhook-id."""
        with self.lock:
            taken = [request.headers["webhook-id"] for request in self.received if 200 <= request.status < 300]
        return len(taken) - len(set(taken))


class _ScriptedHandler(BaseHTTPRequestHandler):
    server: ScriptedReceiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        answer = self.server.next_answer(self.path, headers, body)
        time.sleep(answer.delay)
        try:
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the sender is gone (timed out, or killed mid-POST): the delivery counts as taken here all the same

    def log_message(self, format: str, *args: Any) -> None:
        pass


def scripted_receiver(*answers: Answer, default: Answer | None = None) -> ScriptedReceiver:
    server = ScriptedReceiver(list(answers), default or Answer())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def receivers_started() -> Iterator[Any]:
    """A fixture's body (each test module names it `receiver_factory`): start scripted receivers, stopped after."""
    started: list[ScriptedReceiver] = []

    def start(*answers: Answer, default: Answer | None = None) -> ScriptedReceiver:
        server = scripted_receiver(*answers, default=default)
        started.append(server)
        return server

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as refused:
        return refused.code


def test_demo_receiver_verifies_deduplicates_and_rejects(capsys: pytest.CaptureFixture[str]) -> None:
    secret = new_webhook_secret()
    server = start_receiver(0, secret)
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    body = '{"data":{"state":"COMPLETED","task_id":"t-1"},"type":"task.completed"}'
    headers = signed_headers(message_id="msg_demo", payload=body, secrets=[secret], at=datetime.now(UTC))
    try:
        assert _post(url, body.encode(), headers) == 204
        assert _post(url, body.encode(), headers) == 204
        assert _post(url, body.encode() + b" ", headers) == 400  # one byte changed: the signature no longer holds
        wrong = signed_headers(message_id="msg_x", payload=body, secrets=[new_webhook_secret()], at=datetime.now(UTC))
        assert _post(url, body.encode(), wrong) == 400
    finally:
        server.shutdown()
        server.server_close()
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "  webhook: verified msg_demo task t-1 COMPLETED",
        "  webhook: duplicate msg_demo ignored",
        "  webhook: REJECTED: bad signature",
        "  webhook: REJECTED: bad signature",
    ]
