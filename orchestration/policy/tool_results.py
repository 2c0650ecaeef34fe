"""What follows a tool call's result: the model sees it, a human takes over, the call waits, or is retried.

A failure is judged by the tool's error dictionary (a code it lacks is fatal); `retry` follows the contract's
retry policy, `replan` counts against AGENT_REPLAN_CAP.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from orchestration.models import HandoffReason, RecoveryEvent, TaskState, Transition
from orchestration.policy.decision import (
    ApprovalHold,
    Decision,
    Handoff,
    Limits,
    Move,
    Ruling,
    backoff,
    jitter_draw,
    retry_policy_text,
)
from tools.adapters.handoff import HANDOFF_TOOL
from tools.contract import Contract
from tools.envelope import ToolResult
from tools.errors import SHARED_ERROR_CODES, ErrorCode, RecoveryAction


@dataclass(frozen=True)
class ToolOutcome:
    """A tool call's recorded result, with what the policy needs to know of the call and its task."""

    tool: str
    result: ToolResult
    contract: Contract | None
    """The contract version the call ran with; None for a tool the agent does not know."""
    attempt: int
    """The attempt of the step that produced the result (1 for the first)."""
    task_replans: int
    now: datetime
    arguments: dict[str, Any] = field(default_factory=dict)
    """The call's arguments as the model sent them (empty when they were not a JSON object)."""
    retries_forgiven: int = 0
    """Attempts an operator's retry took off the budget: they count neither as retries nor for the backoff."""
    event: RecoveryEvent = RecoveryEvent.TOOL_ERROR
    what: str | None = None
    """What happened, when the caller knows better than the result (a lost step describes itself)."""
    draw: float = field(default_factory=jitter_draw)


def tool_call_begin_decide(*, task_state: TaskState, tool: str) -> Decision:
    """A call is about to run: the task enters TOOL_RUNNING (TOOL_RUNNING again when a lost call runs again)."""
    # A RECEIVED task's first decision was recorded by a worker that lost the task before moving it on.
    replayed = (Move(Transition.PLAN, "model decision replayed"),) if task_state == TaskState.RECEIVED else ()
    return Decision(moves=(*replayed, Move(Transition.START_TOOL, f"calling {tool}")), run_goes_on=True)


def tool_result_decide(outcome: ToolOutcome, limits: Limits) -> Decision:
    result = outcome.result
    if result.error_code == ErrorCode.APPROVAL_REQUIRED:
        reason = result.error_message or ""
        return Decision(
            moves=(Move(Transition.HAND_OFF, f"awaiting approval: {reason}"),),
            approval=ApprovalHold(arguments=outcome.arguments, reason=reason),
            handoff=Handoff(HandoffReason.APPROVAL_NEEDED, tool=outcome.tool, error_code=ErrorCode.APPROVAL_REQUIRED),
        )
    if not result.ok:
        return tool_failure_decide(outcome, limits)
    if outcome.tool == HANDOFF_TOOL:
        reason = str(outcome.arguments.get("reason", "agent asked"))
        return Decision(moves=(Move(Transition.HAND_OFF, reason),), handoff=Handoff(HandoffReason.AGENT_ASKED))
    return Decision(moves=(Move(Transition.FINISH_TOOL, f"{outcome.tool} answered"),), run_goes_on=True)


def tool_failure_decide(outcome: ToolOutcome, limits: Limits) -> Decision:
    """Apply the error dictionary's action to a failed call of a TOOL_RUNNING task."""
    action, rule = dictionary_rule(outcome.contract, outcome.result)
    what = outcome.what or describe_failure(outcome.tool, outcome.result)
    envelope = outcome.result.to_dict()
    if action == RecoveryAction.RETRY:
        return _retry_or_hand_off(outcome, limits, rule=rule, what=what)
    if action == RecoveryAction.REPLAN:
        return replan_decide(
            replans=outcome.task_replans,
            limits=limits,
            ruling=Ruling(outcome.event, RecoveryAction.REPLAN, what, rule, envelope),
            leave_tool_running=True,
            cap_reached=_handoff(HandoffReason.REPLAN_CAP, outcome),
        )
    ruling = Ruling(outcome.event, action, what, rule, envelope)
    if action == RecoveryAction.HANDOFF:
        handoff = _handoff(HandoffReason.DICTIONARY_HANDOFF, outcome)
        return Decision(moves=(Move(Transition.HAND_OFF, what),), rulings=(ruling,), handoff=handoff)
    return Decision(moves=(Move(Transition.FAIL_TOOL_FATAL, what),), rulings=(ruling,))


def _handoff(reason: HandoffReason, outcome: ToolOutcome) -> Handoff:
    return Handoff(reason, tool=outcome.tool, error_code=outcome.result.error_code or "")


def dictionary_rule(contract: Contract | None, result: ToolResult) -> tuple[RecoveryAction, str]:
    """The action the error dictionary names for this result, and the rule as operators read it."""
    code = result.error_code or ""
    if contract is not None:
        return contract.recovery_for(code)
    shared = SHARED_ERROR_CODES.get(code)  # no contract (an unknown tool): only the shared codes apply
    action = shared.action if shared else RecoveryAction.FATAL
    return action, f"shared error code {code}: {action}"


def describe_failure(tool: str, result: ToolResult) -> str:
    return f"{tool} failed with {result.error_code}: {result.error_message}"


def replan_decide(
    *, replans: int, limits: Limits, ruling: Ruling, leave_tool_running: bool, cap_reached: Handoff
) -> Decision:
    """Count one re-plan: the model sees the error, or past the cap a human takes over (`cap_reached` says why).

    `ruling` says what went back to the model and by which rule; `leave_tool_running` moves a TOOL_RUNNING task
    back to PLANNED first, so the log shows the call ended.
    """
    count, cap = replans + 1, limits.replan_cap
    leave = (Transition.FINISH_TOOL,) if leave_tool_running else ()
    if count <= cap:
        return Decision(
            moves=tuple(Move(t, f"{ruling.what}; re-planning") for t in leave),
            rulings=(replace(ruling, rule=f"{ruling.rule}; re-plan {count} of {cap} (AGENT_REPLAN_CAP)"),),
            replans=count,
            run_goes_on=True,
        )
    handed = replace(
        ruling,
        action=RecoveryAction.HANDOFF,
        rule=f"{ruling.rule}; the re-plan cap is used up (AGENT_REPLAN_CAP={cap})",
    )
    return Decision(
        moves=(
            *(Move(t, ruling.what) for t in leave),
            Move(Transition.HAND_OFF, f"the model re-planned {count - 1} times (cap {cap}); last: {ruling.what}"),
        ),
        rulings=(handed,),
        replans=count,
        handoff=cap_reached,
    )


def _retry_or_hand_off(outcome: ToolOutcome, limits: Limits, *, rule: str, what: str) -> Decision:
    """A retryable failure: the retry after its backoff, or past the contract's retries, a human."""
    policy = outcome.contract.retry if outcome.contract else limits.default_tool_retry
    counted = outcome.attempt - outcome.retries_forgiven  # the attempts the policy counts, from 1
    retries_used = counted - 1
    rule = f"{rule}; retry policy: {retry_policy_text(policy, limits.jitter)}"
    envelope = outcome.result.to_dict()
    if retries_used >= policy.max_retries:
        return Decision(
            moves=(
                Move(Transition.FAIL_TOOL_RETRYABLE, what),
                Move(Transition.HAND_OFF, f"{what}; {policy.max_retries} retries used up"),
            ),
            rulings=(
                Ruling(
                    outcome.event,
                    RecoveryAction.HANDOFF,
                    what,
                    f"{rule}; retries used up ({retries_used} of {policy.max_retries})",
                    envelope,
                ),
            ),
            handoff=_handoff(HandoffReason.RETRIES_EXHAUSTED, outcome),
        )
    retry = f"retry {retries_used + 1} of {policy.max_retries}"
    due = outcome.now + backoff(attempt=counted, policy=policy, jitter=limits.jitter, draw=outcome.draw)
    return Decision(
        moves=(Move(Transition.FAIL_TOOL_RETRYABLE, f"{what}; {retry} due at {due.isoformat()}"),),
        rulings=(Ruling(outcome.event, RecoveryAction.RETRY, what, f"{rule}; {retry}", envelope),),
        due_at=due,
    )
