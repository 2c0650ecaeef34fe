"""The fault plan's model faults, applied around one model request (the plan itself: faults/plan.py).

Errors are raised as the OpenAI client raises them, so the orchestrator classifies an injected 503 exactly as it
would a real one; rewritten answers are recorded as the turn's response, so a resumed run replays them.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable

import httpx2
import openai
from agents import ModelResponse
from openai.types.responses import ResponseFunctionToolCall

from faults.plan import Fault

_FAULT_URL = "https://injected-fault.invalid/v1/responses"


async def with_model_fault(fault: Fault | None, request: Callable[[], Awaitable[ModelResponse]]) -> ModelResponse:
    if fault is None:
        return await request()
    if fault.kind == "hang":
        await asyncio.sleep(fault.seconds)
    if fault.kind == "error":
        raise _endpoint_error(fault.status)
    response = await request()
    if fault.kind == "unknown_tool":
        call = ResponseFunctionToolCall(
            type="function_call", call_id=f"call_fault_{uuid.uuid4().hex[:12]}", name=fault.tool, arguments="{}"
        )
        return ModelResponse(output=[call], usage=response.usage, response_id=response.response_id)
    if fault.kind == "invalid_arguments":
        output = [
            item.model_copy(update={"arguments": fault.arguments})
            if isinstance(item, ResponseFunctionToolCall)
            else item
            for item in response.output
        ]
        return ModelResponse(output=output, usage=response.usage, response_id=response.response_id)
    return response


def _endpoint_error(status: int) -> openai.APIError:
    request = httpx2.Request("POST", _FAULT_URL)
    if status == 0:
        return openai.APIConnectionError(message="injected fault: connection refused", request=request)
    body = {"error": {"message": f"injected fault: HTTP {status}"}}
    response = httpx2.Response(status, request=request, content=json.dumps(body).encode())
    return openai.APIStatusError(f"injected fault: HTTP {status}", response=response, body=body)
