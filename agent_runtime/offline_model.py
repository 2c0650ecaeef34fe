"""The offline model: deterministic, no network, implements the SDK's `Model` interface.

It serves the embedded default and most tests. From the task's goal it picks the tools whose names the goal
asks for (every word of the tool's name appears in the goal: "look up order" -> `lookup_order`), in the
order the goal names them, fills their arguments from the task input by parameter name, and calls them one
per turn. A failed call it cannot mend, or an argument it cannot fill, goes to `handoff_to_human` when the
agent has it. When every tool has answered, it writes a final answer that quotes their results; a goal that needs
no tool is answered with the facts memory sent it from earlier in the session, if any. After an
operator sends a task back with an instruction, the instruction is its goal from then on (the task input still
fills the arguments).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

from agents import FunctionTool, ModelResponse, Usage
from agents.models.interface import Model
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputItem,
    ResponseOutputMessage,
    ResponseOutputText,
)

from agent_runtime.prompt import instruction_text, is_task_message, parse_task_message
from agent_runtime.snapshots import to_jsonable
from agent_runtime.tokens import count_tokens
from memory.composer import MEMORY_HEADER
from tools.adapters.handoff import HANDOFF_TOOL

_PHRASES = {"look up": "lookup", "hand off": "handoff", "hand over": "handoff", "escalate": "handoff human"}
_STOPWORDS = {"to", "a", "an", "the", "of", "for"}


def _goal_words(goal: str) -> list[str]:
    text = goal.lower()
    for phrase, replacement in _PHRASES.items():
        text = text.replace(phrase, replacement)
    return [word.rstrip("s") or word for word in re.findall(r"[a-z]+", text)]


def plan_tool_names(goal: str, tool_names: list[str]) -> list[str]:
    """The tools the goal asks for, in the order it mentions them."""
    words = _goal_words(goal)
    positions: list[tuple[int, str]] = []
    for name in tool_names:
        needed = [part.rstrip("s") for part in name.lower().split("_") if part not in _STOPWORDS]
        if needed and all(part in words for part in needed):
            positions.append((min(words.index(part) for part in needed), name))
    return [name for _, name in sorted(positions)]


class OfflineModel(Model):
    model_name = "offline"

    async def get_response(
        self,
        system_instructions: str | None,
        input: Any,
        model_settings: Any,
        tools: list[Any],
        output_schema: Any,
        handoffs: list[Any],
        tracing: Any,
        *,
        previous_response_id: str | None = None,
        conversation_id: str | None = None,
        prompt: Any = None,
    ) -> ModelResponse:
        items = [{"role": "user", "content": input}] if isinstance(input, str) else to_jsonable(input)
        function_tools = {tool.name: tool for tool in tools if isinstance(tool, FunctionTool)}
        output = _decide(items, function_tools, remembered(system_instructions or ""))
        usage = Usage(
            requests=1,
            input_tokens=count_tokens(system_instructions or "") + count_tokens(items),
            output_tokens=count_tokens(to_jsonable(output)),
        )
        usage.total_tokens = usage.input_tokens + usage.output_tokens
        return ModelResponse(output=output, usage=usage, response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError("the offline model does not stream")


def _decide(items: list[dict[str, Any]], tools: dict[str, FunctionTool], memory: list[str]) -> list[ResponseOutputItem]:
    start = _task_message_index(items)
    goal, task_input = parse_task_message(_text(items[start]) if start is not None else "")
    items = items[start:] if start is not None else items  # earlier turns of the session are other tasks'
    numbered = _last_call_number(items)  # call ids stay unique in the run, whatever the window left out
    instructed = [(index, text) for index, item in enumerate(items) if (text := instruction_text(item)) is not None]
    if instructed:  # an operator sent the task back: their latest instruction is the goal from here on
        since, goal = instructed[-1]
        items = items[since + 1 :]
    calls = [item for item in items if item.get("type") == "function_call"]
    outputs = {item["call_id"]: item.get("output") for item in items if item.get("type") == "function_call_output"}
    if calls:
        last = calls[-1]
        envelope = _parse_envelope(outputs.get(last["call_id"]))
        failed = envelope is not None and not envelope.get("ok", False)
        if last["name"] == HANDOFF_TOOL and not failed:
            return [_message("I have handed this task to a human operator.")]
        if failed:
            assert envelope is not None
            reason = f"{last['name']} failed with {envelope.get('error_code')}: {envelope.get('error_message')}"
            return [_handoff_or_give_up(reason, goal, tools, numbered)]
    called = {call["name"] for call in calls}
    remaining = [name for name in plan_tool_names(goal, list(tools)) if name not in called]
    if not remaining:
        return [_message(_final_answer(calls, outputs, memory))]
    name = remaining[0]
    arguments, missing = _fill_arguments(tools[name], task_input, goal)
    if missing:
        reason = f"cannot call {name}: the task input lacks {', '.join(missing)}"
        return [_handoff_or_give_up(reason, goal, tools, numbered)]
    return [_call(name, arguments, numbered + 1)]


def _task_message_index(items: list[dict[str, Any]]) -> int | None:
    """Where this task's own message is: the last user message that carries a task (the window may show the
    session's earlier tasks before it)."""
    marked = [index for index, item in enumerate(items) if item.get("role") == "user" and is_task_message(_text(item))]
    if marked:
        return marked[-1]
    plain = [index for index, item in enumerate(items) if item.get("role") == "user" and instruction_text(item) is None]
    return plain[0] if plain else None


_CALL_NUMBER = re.compile(r"^call_(\d+)_")


def _last_call_number(items: list[dict[str, Any]]) -> int:
    numbers = [
        int(match.group(1))
        for item in items
        if item.get("type") == "function_call" and (match := _CALL_NUMBER.match(str(item.get("call_id", ""))))
    ]
    return max(numbers, default=sum(item.get("type") == "function_call" for item in items))


def _text(item: dict[str, Any]) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _parse_envelope(raw: Any) -> dict[str, Any] | None:
    if isinstance(raw, dict):
        return raw
    try:
        parsed = json.loads(raw) if isinstance(raw, str) else None
    except json.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _fill_arguments(tool: FunctionTool, task_input: dict[str, Any], goal: str) -> tuple[dict[str, Any], list[str]]:
    properties: dict[str, Any] = tool.params_json_schema.get("properties", {})
    arguments: dict[str, Any] = {}
    missing: list[str] = []
    for prop, schema in properties.items():
        if prop in task_input:
            arguments[prop] = task_input[prop]
        elif tool.name == HANDOFF_TOOL:
            arguments[prop] = goal if prop == "summary" else "the goal asks for a human"
        elif "null" in _types(schema):
            arguments[prop] = None
        else:
            missing.append(prop)
    return arguments, missing


def _types(schema: dict[str, Any]) -> list[str]:
    declared = schema.get("type", [])
    return [declared] if isinstance(declared, str) else list(declared)


def _handoff_or_give_up(reason: str, goal: str, tools: dict[str, FunctionTool], call_count: int) -> ResponseOutputItem:
    if HANDOFF_TOOL in tools:
        return _call(HANDOFF_TOOL, {"reason": reason, "summary": goal}, call_count + 1)
    return _message(f"I could not finish: {reason}.")


def remembered(instructions: str) -> list[str]:
    """The facts memory sent with the instructions (see memory.composer): what the conversation said before."""
    _, header, block = instructions.partition(MEMORY_HEADER)
    return [line.removeprefix("- ") for line in block.splitlines() if line.startswith("- ")] if header else []


def _final_answer(calls: list[dict[str, Any]], outputs: dict[str, Any], memory: list[str]) -> str:
    if not calls and memory:
        return "From earlier in this conversation: " + " ".join(f"{fact.rstrip('.')}." for fact in memory)
    if not calls:
        return "Nothing in this goal needs a tool; no action taken."
    results = {call["name"]: (_parse_envelope(outputs.get(call["call_id"])) or {}).get("data") for call in calls}
    return "Done. " + json.dumps(results, sort_keys=True)


def _call(name: str, arguments: dict[str, Any], number: int) -> ResponseFunctionToolCall:
    call_id = f"call_{number}_{name}"
    return ResponseFunctionToolCall(
        id=f"fc_{number}", call_id=call_id, type="function_call", name=name, arguments=json.dumps(arguments)
    )


def _message(text: str) -> ResponseOutputMessage:
    return ResponseOutputMessage(
        id="msg_final",
        type="message",
        role="assistant",
        status="completed",
        content=[ResponseOutputText(text=text, type="output_text", annotations=[], logprobs=[])],
    )
