"""What a recorded model turn leads to, and how a run that stops asking for turns ends.

A turn that calls tools moves a RECEIVED task to PLANNED (the model's first decision). A call to a tool the
agent does not have goes back to the model as an error (the SDK says so) and counts as a re-plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestration.models import HandoffReason, RecoveryEvent, TaskState, Transition
from orchestration.policy.decision import Decision, Handoff, Limits, Move, Ruling
from orchestration.policy.tool_results import replan_decide
from tools.errors import ErrorCode, RecoveryAction

UNKNOWN_TOOL_RULE = "a call to an unknown tool goes back to the model as an error"


@dataclass(frozen=True)
class TurnOutcome:
    task_state: TaskState
    calls: tuple[str, ...]
    """The names of the tools the model called in this turn, in order."""
    tool_names: frozenset[str]
    """The tools this agent has."""
    task_replans: int


def turn_decide(turn: TurnOutcome, limits: Limits) -> Decision:
    moves: list[Move] = []
    if turn.task_state == TaskState.RECEIVED and turn.calls:
        moves.append(Move(Transition.PLAN, f"model chose {', '.join(turn.calls)}"))
    rulings: list[Ruling] = []
    replans = turn.task_replans
    for name in turn.calls:
        if name in turn.tool_names:
            continue
        what = f"the model called {name!r}, which this agent does not have"
        ruling = Ruling(RecoveryEvent.MODEL_MISTAKE, RecoveryAction.REPLAN, what, UNKNOWN_TOOL_RULE)
        counted = replan_decide(
            replans=replans,
            limits=limits,
            ruling=ruling,
            leave_tool_running=False,
            cap_reached=Handoff(HandoffReason.REPLAN_CAP, tool=name, error_code=ErrorCode.UNKNOWN_TOOL),
        )
        rulings.extend(counted.rulings)
        moves.extend(counted.moves)
        replans = counted.replans or replans
        if not counted.run_goes_on:
            return Decision(moves=tuple(moves), rulings=tuple(rulings), replans=replans, handoff=counted.handoff)
    changed = replans if replans != turn.task_replans else None
    return Decision(moves=tuple(moves), rulings=tuple(rulings), replans=changed, run_goes_on=True)


def answer_decide(final_output: Any) -> Decision:
    """The model gave its final answer: the task is done."""
    return Decision(moves=(Move(Transition.COMPLETE, "the agent answered"),), result={"output": final_output})


def turn_limit_decide(*, agent: str, max_turns: int) -> Decision:
    why = f"the agent reached its turn limit ({max_turns}) without finishing"
    rule = f"agent {agent}: at most {max_turns} model turns per task"
    return Decision(
        moves=(Move(Transition.HAND_OFF, why),),
        rulings=(Ruling(RecoveryEvent.TURN_LIMIT, RecoveryAction.HANDOFF, why, rule),),
        handoff=Handoff(HandoffReason.TURN_LIMIT),
    )


def unknown_agent_decide(agent: str) -> Decision:
    """The task names an agent that does not exist (deleted since it was submitted): only a human can help."""
    return Decision(
        moves=(Move(Transition.HAND_OFF, f"unknown agent {agent!r}"),), handoff=Handoff(HandoffReason.UNKNOWN_AGENT)
    )
