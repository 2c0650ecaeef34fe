"""Error codes shared by every tool, defined once, and the one vocabulary of recovery actions."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models


class RecoveryAction(models.TextChoices):
    """What follows a failure: named by a contract's error dictionary, and recorded with every decision."""

    RETRY = "retry", "retry the step after a backoff, same idempotency key"
    REPLAN = "replan", "hand the error back to the model to re-plan"
    HANDOFF = "handoff", "send the task to the manual queue"
    FATAL = "fatal", "end the task in TOOL_FAILED_FATAL"
    RESUME = "resume", "hand the task back at once; it resumes from its journal"
    STOP = "stop", "record what the step did and plan nothing more"


# The actions an error dictionary entry may name; the others are the orchestrator's own.
DICTIONARY_ACTIONS = (RecoveryAction.RETRY, RecoveryAction.REPLAN, RecoveryAction.HANDOFF, RecoveryAction.FATAL)


@dataclass(frozen=True)
class ErrorCodeSpec:
    code: str
    meaning: str
    retryable: bool
    action: RecoveryAction

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "meaning": self.meaning, "retryable": self.retryable, "action": str(self.action)}


class ErrorCode:
    """Codes every tool may return; a contract's own dictionary may not redefine them."""

    INVALID_ARGUMENTS = "INVALID_ARGUMENTS"
    UNKNOWN_TOOL = "UNKNOWN_TOOL"
    TOOL_DISABLED = "TOOL_DISABLED"
    TIMEOUT = "TIMEOUT"
    CIRCUIT_OPEN = "CIRCUIT_OPEN"
    INTERNAL = "INTERNAL"
    STEP_LOST = "STEP_LOST"
    INVALID_RESULT = "INVALID_RESULT"
    CONTRACT_VIOLATION = "CONTRACT_VIOLATION"
    APPROVAL_REQUIRED = "APPROVAL_REQUIRED"
    REJECTED_BY_OPERATOR = "REJECTED_BY_OPERATOR"


_A = RecoveryAction
SHARED_ERROR_CODES: dict[str, ErrorCodeSpec] = {
    spec.code: spec
    for spec in (
        ErrorCodeSpec(ErrorCode.INVALID_ARGUMENTS, "arguments break the parameter schema", False, _A.REPLAN),
        ErrorCodeSpec(ErrorCode.UNKNOWN_TOOL, "the agent has no tool of that name", False, _A.REPLAN),
        ErrorCodeSpec(ErrorCode.TOOL_DISABLED, "the tool is switched off in its contract", False, _A.REPLAN),
        ErrorCodeSpec(ErrorCode.TIMEOUT, "the call outlived the contract's timeout", True, _A.RETRY),
        ErrorCodeSpec(ErrorCode.CIRCUIT_OPEN, "the tool's circuit breaker is open", True, _A.RETRY),
        ErrorCodeSpec(ErrorCode.INTERNAL, "the adapter failed unexpectedly", True, _A.RETRY),
        ErrorCodeSpec(ErrorCode.STEP_LOST, "the worker died before recording the result", True, _A.RETRY),
        ErrorCodeSpec(ErrorCode.INVALID_RESULT, "the adapter's result breaks the result schema", False, _A.FATAL),
        ErrorCodeSpec(ErrorCode.CONTRACT_VIOLATION, "the adapter returned an undeclared error code", False, _A.FATAL),
        ErrorCodeSpec(ErrorCode.APPROVAL_REQUIRED, "a human must approve this call first", False, _A.HANDOFF),
        ErrorCodeSpec(ErrorCode.REJECTED_BY_OPERATOR, "an operator refused this call", False, _A.REPLAN),
    )
}
