"""The one call path from the orchestrator to an adapter: validate, run, check, map every failure."""

from __future__ import annotations

import json
import logging
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from agent_runtime.specs import ToolSpec
from tools.adapters.base import CallContext, adapter_for, registered_adapters
from tools.envelope import ErrorCode, ToolResult
from tools.faults import injected_result

logger = logging.getLogger(__name__)


def tool_specs() -> tuple[ToolSpec, ...]:
    """What the agent sees of every tool: name, description, parameter schema. Nothing else."""
    return tuple(
        ToolSpec(name=adapter.name, description=adapter.description, parameters_schema=adapter.parameters_schema)
        for adapter in registered_adapters()
    )


def tool_call(*, name: str, raw_arguments: str, context: CallContext) -> ToolResult:
    adapter = adapter_for(name)
    if adapter is None:
        return ToolResult.failure(ErrorCode.UNKNOWN_TOOL, f"there is no tool named {name!r}", retryable=False)
    arguments, problem = _parse_arguments(raw_arguments, adapter.parameters_schema)
    if problem is not None:
        return ToolResult.failure(ErrorCode.INVALID_ARGUMENTS, problem, retryable=False)
    try:
        result = injected_result(name) or adapter.run(arguments, context)
    except Exception:
        # The message may hold connection strings or data the model must not see: log it, do not return it.
        logger.exception("tool adapter raised", extra={"tool": name})
        return ToolResult.failure(ErrorCode.INTERNAL, f"{name} failed unexpectedly", retryable=True)
    return _checked_result(name, result, adapter.result_schema)


def _parse_arguments(raw: str, schema: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    try:
        arguments = json.loads(raw or "{}")
    except json.JSONDecodeError as exc:
        return {}, f"arguments are not valid JSON: {exc.msg} at position {exc.pos}"
    if not isinstance(arguments, dict):
        return {}, "arguments must be a JSON object"
    error = _first_error(arguments, schema)
    if error is not None:
        path = "/".join(str(part) for part in error.absolute_path) or "(root)"
        return arguments, f"{path}: {error.message}"
    return arguments, None


def _first_error(instance: Any, schema: dict[str, Any]) -> ValidationError | None:
    errors = sorted(Draft202012Validator(schema).iter_errors(instance), key=lambda e: list(e.absolute_path))
    return errors[0] if errors else None


def _checked_result(name: str, result: ToolResult, schema: dict[str, Any]) -> ToolResult:
    try:
        json.dumps(result.to_dict())
    except (TypeError, ValueError):
        return ToolResult.failure(ErrorCode.INVALID_RESULT, f"{name} returned data that is not JSON", retryable=False)
    if result.ok:
        error = _first_error(result.data, schema)
        if error is not None:
            logger.error("tool result breaks its schema", extra={"tool": name, "error": error.message})
            return ToolResult.failure(ErrorCode.INVALID_RESULT, f"{name} returned an invalid result", retryable=False)
    return result
