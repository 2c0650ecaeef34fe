"""A scripted OpenAI-compatible endpoint behind httpx2's MockTransport: real-shaped responses, counted requests."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx2
import pytest


def responses_call(name: str, arguments: dict[str, Any] | str, call_id: str, usage: tuple[int, int]) -> dict[str, Any]:
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    item = {"type": "function_call", "id": f"fc_{call_id}", "call_id": call_id, "name": name, "arguments": raw}
    return _response([{**item, "status": "completed"}], usage)


def responses_message(text: str, usage: tuple[int, int]) -> dict[str, Any]:
    message = {
        "type": "message",
        "id": "msg_1",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }
    return _response([message], usage)


def _response(output: list[dict[str, Any]], usage: tuple[int, int]) -> dict[str, Any]:
    return {
        "id": "resp_x",
        "object": "response",
        "created_at": 1,
        "model": "gpt-test",
        "status": "completed",
        "output": output,
        "parallel_tool_calls": False,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": usage[0],
            "output_tokens": usage[1],
            "total_tokens": sum(usage),
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
    }


def chat_call(name: str, arguments: dict[str, Any], call_id: str, usage: tuple[int, int]) -> dict[str, Any]:
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
    return _completion({"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls", usage)


def chat_message(text: str, usage: tuple[int, int]) -> dict[str, Any]:
    return _completion({"role": "assistant", "content": text}, "stop", usage)


def _completion(message: dict[str, Any], finish: str, usage: tuple[int, int]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "created": 1,
        "model": "local-model",
        "choices": [{"index": 0, "finish_reason": finish, "message": message}],
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
    }


Reply = dict[str, Any] | httpx2.Response | Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class FakeEndpoint:
    """Answers each model request with the next scripted reply; a Response is sent as is (errors)."""

    script: Sequence[Reply]
    requests: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.paths.append(request.url.path)
        self.requests.append(json.loads(request.content))
        if not self.script:
            return httpx2.Response(500, json={"error": {"message": "script exhausted"}})
        reply, self.script = self.script[0], self.script[1:]
        if callable(reply):
            reply = reply(self.requests[-1])  # a reply that depends on what the model was sent
        return reply if isinstance(reply, httpx2.Response) else httpx2.Response(200, json=reply)

    def client_factory(self) -> Callable[[], httpx2.AsyncClient]:
        return lambda: httpx2.AsyncClient(transport=httpx2.MockTransport(self.handle))


def use_endpoint(monkeypatch: pytest.MonkeyPatch, endpoint: FakeEndpoint) -> None:
    monkeypatch.setattr("agent_runtime.endpoints.http_client", endpoint.client_factory())
