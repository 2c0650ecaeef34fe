"""An OpenAI-compatible model endpoint on loopback that answers every request after a fixed delay.

For benchmarks with real worker processes and the SDK's real model classes: many conversations at once, each
answered by what its own request carries, not by a shared script. A request whose input holds no tool result yet
is answered with one call of `tool`; a request that carries the tool's output is answered with a final text. Both
the Responses API (`POST /v1/responses`) and Chat Completions (`POST /v1/chat/completions`) are spoken.

The server is one asyncio loop on a thread of its own: a waiting request costs a coroutine, not a thread, so
hundreds can be held at once. Every request's arrival and answer times are kept (`time.monotonic()`, the clock
of the whole process) for the figures: how many requests were in flight, on average and at most.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 411: "Length Required"}


@dataclass(frozen=True)
class Served:
    """One request as the endpoint saw it."""

    started: float
    """When its request line arrived (monotonic seconds)."""
    ended: float
    """When its answer was written out."""
    path: str
    final: bool
    """True when it was answered with text (the request carried a tool result), False for a tool call."""
    status: int


class LoopbackModel:
    """Start with `with LoopbackModel(delay=1.0) as model:`; point OPENAI_BASE_URL at `model.base_url`."""

    def __init__(
        self,
        *,
        delay: float,
        tool: str = "lookup_order",
        arguments: dict[str, Any] | None = None,
        answer: str = "Order A-1001 has shipped.",
    ) -> None:
        self.delay = delay
        self.tool = tool
        self.arguments = json.dumps(arguments if arguments is not None else {"order_number": "A-1001"})
        self.answer = answer
        self.served: list[Served] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="loopback-openai", daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    # --- lifecycle -----------------------------------------------------------------------------------
    def __enter__(self) -> LoopbackModel:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *_: object) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.close()  # connections still kept alive: their readers see the end and return
            await asyncio.sleep(0)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _start(self) -> asyncio.Server:
        # A deep accept queue: a burst of a few hundred new connections must not be refused.
        return await asyncio.start_server(self._connection, "127.0.0.1", 0, backlog=2048)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # --- figures ------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget what was served so far (a warm-up's requests)."""
        with self._lock:
            self.served.clear()

    def figures(self) -> dict[str, Any]:
        """Requests served, and how many were in flight while any was: the mean (the requests' summed durations
        over the span from the first arrival to the last answer), the mean over the middle 80 % of that span (the
        steady state, without the ramp up and the tail), and the most at one instant."""
        with self._lock:
            served = list(self.served)
        if not served:
            return {"requests": 0, "tool_calls": 0, "answers": 0, "errors": 0, "in_flight_mean": 0.0,
                    "in_flight_steady_mean": 0.0, "in_flight_max": 0, "busy_seconds": 0.0}  # fmt: skip
        first, last = min(s.started for s in served), max(s.ended for s in served)
        span = last - first
        low, high = first + 0.1 * span, first + 0.9 * span
        steady = sum(max(0.0, min(s.ended, high) - max(s.started, low)) for s in served)
        # Ends sort before starts at the same instant: a request answered just as the next arrives is not "two".
        events = sorted([(s.started, 1) for s in served] + [(s.ended, -1) for s in served])
        in_flight = peak = 0
        for _, change in events:
            in_flight += change
            peak = max(peak, in_flight)
        return {
            "requests": len(served),
            "tool_calls": sum(1 for s in served if not s.final and s.status == 200),
            "answers": sum(1 for s in served if s.final and s.status == 200),
            "errors": sum(1 for s in served if s.status != 200),
            "in_flight_mean": round(sum(s.ended - s.started for s in served) / span, 1) if span > 0 else 0.0,
            "in_flight_steady_mean": round(steady / (high - low), 1) if span > 0 else 0.0,
            "in_flight_max": peak,
            "busy_seconds": round(span, 2),
        }

    # --- HTTP/1.1, keep-alive, Content-Length bodies only (what the OpenAI client sends) -----------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                started = time.monotonic()
                method, path, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = header.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                if "content-length" not in headers and method == "POST":
                    await self._write(writer, 411, {"error": {"message": "Content-Length required"}})
                    return
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                status, final, reply = self._reply(method, path, body)
                await asyncio.sleep(self.delay)
                await self._write(writer, status, reply)
                with self._lock:
                    self.served.append(Served(started, time.monotonic(), path, final, status))
                if headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return  # the client went away (a worker stopped) or spoke something else
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _write(self, writer: asyncio.StreamWriter, status: int, reply: dict[str, Any]) -> None:
        payload = json.dumps(reply).encode()
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(payload)}\r\n\r\n"
        )
        writer.write(head.encode("latin-1") + payload)
        await writer.drain()

    # --- what to answer -----------------------------------------------------------------------------
    def _reply(self, method: str, path: str, body: bytes) -> tuple[int, bool, dict[str, Any]]:
        if method != "POST":
            return 404, False, {"error": {"message": f"{method} {path}: not served here"}}
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return 400, False, {"error": {"message": "the body is not JSON"}}
        usage = (max(1, len(body) // 4), 12)  # about what a tokenizer would count; the figures do not use it
        if path.endswith("/responses"):
            items = request.get("input")
            final = isinstance(items, list) and any(
                isinstance(item, dict) and item.get("type") == "function_call_output" for item in items
            )
            return 200, final, self._response(request, final, usage)
        if path.endswith("/chat/completions"):
            messages = request.get("messages") or []
            final = any(isinstance(message, dict) and message.get("role") == "tool" for message in messages)
            return 200, final, self._completion(request, final, usage)
        return 404, False, {"error": {"message": f"{path}: not served here"}}

    def _response(self, request: dict[str, Any], final: bool, usage: tuple[int, int]) -> dict[str, Any]:
        number = next(self._ids)
        if final:
            item: dict[str, Any] = {
                "type": "message", "id": f"msg_{number}", "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": self.answer, "annotations": []}],
            }  # fmt: skip
        else:
            call_id = f"call_{uuid.uuid4().hex[:24]}"
            item = {"type": "function_call", "id": f"fc_{number}", "call_id": call_id, "name": self.tool,
                    "arguments": self.arguments, "status": "completed"}  # fmt: skip
        return {
            "id": f"resp_{number}", "object": "response", "created_at": int(time.time()),
            "model": request.get("model", "loopback"), "status": "completed", "output": [item],
            "parallel_tool_calls": False, "tool_choice": "auto", "tools": [],
            "usage": {"input_tokens": usage[0], "output_tokens": usage[1], "total_tokens": sum(usage),
                      "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}},
        }  # fmt: skip

    def _completion(self, request: dict[str, Any], final: bool, usage: tuple[int, int]) -> dict[str, Any]:
        number = next(self._ids)
        if final:
            message: dict[str, Any] = {"role": "assistant", "content": self.answer}
        else:
            call = {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                    "function": {"name": self.tool, "arguments": self.arguments}}  # fmt: skip
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
        return {
            "id": f"chatcmpl-{number}", "object": "chat.completion", "created": int(time.time()),
            "model": request.get("model", "loopback"),
            "choices": [{"index": 0, "finish_reason": "stop" if final else "tool_calls", "message": message}],
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
        }  # fmt: skip
