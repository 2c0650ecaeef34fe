"""The one call path from the orchestrator to an adapter.

In order: arguments against the contract's strict schema (INVALID_ARGUMENTS, back to the model); approval
policy; the circuit (CIRCUIT_OPEN, retryable); the idempotency ledger (a recorded key returns its result and
runs nothing); the adapter under the contract's timeout, in one transaction with the ledger record for a
database-backed adapter; the result checked against the contract (JSON, result schema, declared error
code); every exception mapped to an envelope.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError, connection, transaction
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from lib.redaction import platform_redactor
from lib.strict_json import contains_nul, loads_strict
from tools.adapters.base import CallContext, ToolAdapter, adapter_for
from tools.contract import Contract
from tools.deadline import CommitGate, DeadlineExceeded, call_with_deadline
from tools.envelope import ToolResult
from tools.errors import ErrorCode
from tools.faults import after_effect, before_effect, tool_fault
from tools.models import ToolCallRecord
from tools.services.circuits import circuit_allow, circuit_record
from tools.services.contracts import contract_violation_record

logger = logging.getLogger(__name__)


def tool_call(
    *, contract: Contract | None, raw_arguments: str, context: CallContext, approved: bool = False
) -> ToolResult:
    if contract is None:
        return ToolResult.failure(ErrorCode.UNKNOWN_TOOL, "there is no such tool", retryable=False)
    if not contract.enabled:
        return ToolResult.failure(ErrorCode.TOOL_DISABLED, f"{contract.name} is switched off", retryable=False)
    adapter = adapter_for(contract.adapter)
    if adapter is None:
        logger.error("contract names an adapter that is not installed", extra={"tool": contract.name})
        return ToolResult.failure(ErrorCode.INTERNAL, f"{contract.name} is not available", retryable=True)
    arguments, problem = _parse_arguments(raw_arguments, contract.strict_parameters_schema)
    if problem is not None:
        return ToolResult.failure(ErrorCode.INVALID_ARGUMENTS, problem, retryable=False)
    approval = None if approved else contract.approval_reason(arguments)
    if approval is not None:
        return ToolResult.failure(ErrorCode.APPROVAL_REQUIRED, approval, retryable=False)
    if not _circuit_allows(contract):
        return ToolResult.failure(ErrorCode.CIRCUIT_OPEN, f"{contract.name} is failing; try later", retryable=True)
    recorded = _recorded(context.idempotency_key)
    if recorded is not None:
        return recorded
    result = _execute(contract, adapter, arguments, context)
    _circuit_record(contract, result)
    return result


def _parse_arguments(raw: str, schema: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    try:
        arguments = loads_strict(raw or "{}")
    except json.JSONDecodeError as exc:
        return {}, f"arguments are not valid JSON: {exc.msg} at position {exc.pos}"
    except ValueError as exc:
        return {}, f"arguments are not valid JSON: {exc}"
    if not isinstance(arguments, dict):
        return {}, "arguments must be a JSON object"
    error = _first_error(arguments, schema)
    if error is not None:
        return arguments, f"{_path(error)}: {error.message}"
    if contains_nul(arguments):
        return {}, "arguments must not contain NUL characters (\\u0000)"
    return _integral_floats_as_ints(arguments), None


def _integral_floats_as_ints(value: Any) -> Any:
    """JSON Schema counts 5000.0 as an integer; adapters and approval rules then get the int 5000."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _integral_floats_as_ints(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral_floats_as_ints(item) for item in value]
    return value


def _first_error(instance: Any, schema: dict[str, Any]) -> ValidationError | None:
    errors = sorted(Draft202012Validator(schema).iter_errors(instance), key=lambda e: list(e.absolute_path))
    return errors[0] if errors else None


def _path(error: ValidationError) -> str:
    return "/".join(str(part) for part in error.absolute_path) or "(root)"


def _recorded(key: str) -> ToolResult | None:
    envelope = ToolCallRecord.objects.filter(idempotency_key=key).values_list("envelope", flat=True).first()
    return ToolResult.from_dict(envelope) if envelope is not None else None


def _execute(contract: Contract, adapter: ToolAdapter, arguments: dict[str, Any], context: CallContext) -> ToolResult:
    try:
        return call_with_deadline(
            contract.timeout_seconds, lambda gate: _run_and_record(contract, adapter, arguments, context, gate)
        )
    except DeadlineExceeded:
        return ToolResult.failure(
            ErrorCode.TIMEOUT, f"{contract.name} gave no result within {contract.timeout_seconds:g} s", retryable=True
        )
    except IntegrityError:
        # Another delivery of this key recorded its result first; our transaction, effects included, rolled back.
        recorded = _recorded(context.idempotency_key)
        if recorded is not None:
            return recorded
        logger.exception("tool adapter hit a database constraint", extra={"tool": contract.name})
    except DatabaseError as error:
        if connection_lost(error):
            # Not the tool's failure (nor its circuit's): the attempt rolled back with the connection, and the
            # orchestrator hands the task back to run the step again under the same key.
            raise
        logger.exception("tool adapter hit a database error", extra={"tool": contract.name})
    except Exception:
        # The message may hold connection strings or data the model must not see: log it, do not return it.
        logger.exception("tool adapter raised", extra={"tool": contract.name})
    return ToolResult.failure(ErrorCode.INTERNAL, f"{contract.name} failed unexpectedly", retryable=True)


def connection_lost(error: DatabaseError) -> bool:
    """True when the error means the database connection itself is gone (terminated by the server, a failover,
    a broken socket), as opposed to a statement failing (deadlock, lock or statement timeout, constraint)."""
    if isinstance(error, InterfaceError):
        return True
    if not isinstance(error, OperationalError):
        return False
    sqlstate = getattr(error.__cause__, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith(("08", "57P"))


def _run_and_record(
    contract: Contract, adapter: ToolAdapter, arguments: dict[str, Any], context: CallContext, gate: CommitGate
) -> ToolResult:
    fault = tool_fault(contract.name, context)
    atomic = transaction.atomic() if adapter.database_backed else contextlib.nullcontext()
    with atomic:
        if adapter.database_backed and gate.abandonable:
            _statement_deadline(gate.seconds)  # no signal reaches this thread: the server ends a hung statement
        result = before_effect(fault) or adapter.run(arguments, context)
        after_effect(fault, contract.name)
        result = _checked(contract, result)
        if not result.ok and result.retryable:
            # Nothing of a failed attempt may stay: the retry runs under the same key from a clean slate.
            if adapter.database_backed:
                transaction.set_rollback(True)
            return result
        if adapter.database_backed and not gate.commit_allowed():
            # Its caller recorded a timeout and retries under the same key: nothing of this attempt may stay.
            # (An effect outside the database is recorded even when late: one key, one effect.)
            transaction.set_rollback(True)
            return result
        ToolCallRecord.objects.create(
            idempotency_key=context.idempotency_key,
            tool=contract.name,
            contract_version_id=contract.version_id,
            envelope=platform_redactor().value(result.to_dict(), scope=_scope(context)),
        )
        return result


def _statement_deadline(seconds: float) -> None:
    """The transaction's statements, and its idle time, end at the call's deadline (PostgreSQL only)."""
    if connection.vendor != "postgresql":
        return
    milliseconds = str(max(1, int(seconds * 1000)))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('statement_timeout', %s, true), set_config('idle_in_transaction_session_timeout', %s,"
            " true)",
            [milliseconds, milliseconds],
        )


def _scope(context: CallContext) -> str:
    """Where the call's tokens live; the ledger keeps the result as the model reads it."""
    return context.redaction_scope or f"task:{context.task_id}"


def result_problem(result_schema: dict[str, Any], data: Any) -> str | None:
    """What is wrong with `data` as a result under this result schema (or JSON, NUL), or None: for results an
    operator enters in the tool's place."""
    if not isinstance(data, dict):
        return "a result is a JSON object"
    if contains_nul(data):
        return "the result must not contain NUL characters (\\u0000)"
    error = _first_error(data, result_schema)
    return f"{_path(error)}: {error.message}" if error is not None else None


def _checked(contract: Contract, result: ToolResult) -> ToolResult:
    if not isinstance(result, ToolResult):
        return _violation(contract, ErrorCode.INVALID_RESULT, f"returned {type(result).__name__}, not a ToolResult")
    try:
        json.dumps(result.to_dict())
    except (TypeError, ValueError):
        return _violation(contract, ErrorCode.INVALID_RESULT, "returned data that is not JSON")
    if result.ok:
        error = _first_error(result.data, contract.result_schema)
        if error is not None:
            return _violation(contract, ErrorCode.INVALID_RESULT, f"result {_path(error)}: {error.message}")
        return result
    spec = contract.error_codes.get(result.error_code or "")
    if spec is None:
        return _violation(contract, ErrorCode.CONTRACT_VIOLATION, f"undeclared error code {result.error_code!r}")
    # The dictionary, not the adapter, decides whether a code is retryable.
    return ToolResult.failure(spec.code, result.error_message or spec.meaning, retryable=spec.retryable)


def _violation(contract: Contract, code: str, detail: str) -> ToolResult:
    logger.error("tool broke its contract", extra={"tool": contract.name, "detail": detail})
    contract_violation_record(tool=contract.name, detail=detail)
    return ToolResult.failure(code, f"{contract.name} {detail}", retryable=False)


def _circuit_allows(contract: Contract) -> bool:
    try:
        return circuit_allow(contract)
    except Exception:
        logger.warning("circuit store unavailable; letting the call through", extra={"tool": contract.name})
        return True


def _circuit_record(contract: Contract, result: ToolResult) -> None:
    """Only failures of the tool itself count: a retryable error, a timeout, a crash. A business refusal
    (not found, invalid arguments) shows the tool works."""
    try:
        circuit_record(contract, failed=not result.ok and result.retryable, code=result.error_code)
    except Exception:
        logger.warning("circuit store unavailable; outcome not counted", extra={"tool": contract.name})
