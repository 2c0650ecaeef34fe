"""A demo webhook receiver: what a client service does with the platform's outcome webhooks.

Verifies each delivery with the `standardwebhooks` library and the endpoint's secret (over the exact bytes
received), deduplicates by webhook-id (a retry after a lost answer carries the same id), and prints one line per
delivery. `make run` starts it in a thread (`start_receiver`); alone:

    python scripts/webhook_receiver.py --port 8787 --secret whsec_...
"""

from __future__ import annotations

import argparse
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

MAX_BODY_BYTES = 1_000_000


class ReceiverServer(ThreadingHTTPServer):
    """Answers 204 to a verified delivery (and to a duplicate, which it ignores), 400 to a bad signature."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], secret: str) -> None:
        super().__init__(address, _DeliveryHandler)
        self.webhook = Webhook(secret)
        self.seen: set[str] = set()
        self._lock = threading.Lock()

    def receive(self, body: bytes, headers: dict[str, str]) -> tuple[str, int]:
        """The line to print and the status to answer."""
        try:
            payload: Any = self.webhook.verify(body, headers)
        except (WebhookVerificationError, ValueError):
            return "REJECTED: bad signature", 400
        message_id = {name.lower(): value for name, value in headers.items()}["webhook-id"]
        with self._lock:
            duplicate = message_id in self.seen
            self.seen.add(message_id)
        if duplicate:
            return f"duplicate {message_id} ignored", 204
        data = payload.get("data", {}) if isinstance(payload, dict) else {}
        return f"verified {message_id} task {data.get('task_id')} {data.get('state')}", 204


class _DeliveryHandler(BaseHTTPRequestHandler):
    server: ReceiverServer

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_BODY_BYTES:
            self._answer(413)
            return
        body = self.rfile.read(length)
        line, status = self.server.receive(body, dict(self.headers.items()))
        print(f"  webhook: {line}", flush=True)
        self._answer(status)

    def _answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the one line per delivery above says what happened."""


def start_receiver(port: int, secret: str) -> ThreadingHTTPServer:
    """Serve on 127.0.0.1:`port` in a daemon thread; `server.shutdown()` stops it."""
    server = ReceiverServer(("127.0.0.1", port), secret)
    threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=int(os.environ.get("WEBHOOK_RECEIVER_PORT", "8787")))
    parser.add_argument("--secret", default=os.environ.get("WEBHOOK_SECRET", ""), help="the endpoint's whsec_...")
    args = parser.parse_args()
    if not args.secret:
        parser.error("--secret (or WEBHOOK_SECRET) is required: the secret shown when the endpoint was registered")
    server = ReceiverServer(("127.0.0.1", args.port), args.secret)
    print(json.dumps({"listening": f"http://127.0.0.1:{args.port}/"}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.shutdown()


if __name__ == "__main__":
    main()
