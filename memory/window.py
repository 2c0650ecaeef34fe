"""The short layer of memory: the last N turns of a conversation, as the SDK's input items.

A turn here is a group of items that must travel together: a user message, or what the model said in one
response (messages, reasoning, tool calls) with the outputs of the tools it called. Cutting a window between a
tool call and its output would send the model an unanswered call (the Responses API refuses it), so windows are
cut between groups only, and a group whose calls lack outputs is never kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Item = dict[str, Any]
Group = list[Item]

_MODEL_TYPES = frozenset(("function_call", "reasoning"))
_OUTPUT_TYPES = frozenset(("function_call_output",))


def from_model(item: Item) -> bool:
    """Written by the model: an assistant message, a reasoning item or a tool call."""
    return item.get("type") in _MODEL_TYPES or item.get("role") == "assistant"


def from_user(item: Item) -> bool:
    return item.get("role") in ("user", "system", "developer")


def turn_groups(items: Sequence[Item]) -> list[Group]:
    """`items` cut into turns: each user message alone, each model response with its tools' outputs."""
    groups: list[Group] = []
    current: Group = []
    for item in items:
        starts = from_user(item) or (from_model(item) and bool(current) and not from_model(current[-1]))
        if starts and current:
            groups.append(current)
            current = []
        current.append(item)
    if current:
        groups.append(current)
    return groups


def complete(group: Group) -> bool:
    """Every tool call in the group has its output, and every output its call."""
    calls = {item.get("call_id") for item in group if item.get("type") == "function_call"}
    outputs = {item.get("call_id") for item in group if item.get("type") in _OUTPUT_TYPES}
    return calls == outputs


def last_turns(groups: Sequence[Group], turns: int) -> list[Group]:
    """The last `turns` complete groups."""
    kept = [group for group in groups if complete(group)]
    return kept[-turns:] if turns > 0 else []


def portable(group: Group, *, prefix: str) -> Group:
    """A group fit to be shown to another task's model: without the ids of the response that wrote it (another
    request cannot refer to them), without reasoning items (which the Responses API takes back only with their
    ids), and with its call ids prefixed, so they cannot collide with the new task's calls or with each other (the
    SDK merges items that share a call id; some servers reuse "call_0" on every turn)."""
    moved: Group = []
    for item in group:
        if item.get("type") == "reasoning":
            continue
        copy = {key: value for key, value in item.items() if key != "id"}
        if isinstance(copy.get("call_id"), str) and not copy["call_id"].startswith(prefix):
            copy["call_id"] = f"{prefix}{copy['call_id']}"
        moved.append(copy)
    return moved
