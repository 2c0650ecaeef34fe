"""Whether the next model request may go: the task's spend so far plus the request's worst case, against its budget.

The worst case is the request's input, counted before it is sent, plus the most it may write (its max_tokens);
its cost is that worst case priced. A request that could cross either budget is not made, so a task stops before
its budget, or past it by at most one request whose model wrote more than it was allowed to.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from orchestration.models import HandoffReason, RecoveryEvent, Transition
from orchestration.policy.decision import Decision, Handoff, Move, Ruling
from tools.errors import RecoveryAction


@dataclass(frozen=True)
class Spend:
    tokens: int
    cost: Decimal


@dataclass(frozen=True)
class BudgetFacts:
    spent: Spend
    """What the task's recorded model requests used, input and output."""
    request: Spend
    """The next request's worst case."""
    token_budget: int | None
    """None: no limit."""
    cost_budget: Decimal | None


def budget_decide(facts: BudgetFacts) -> Decision | None:
    """None if the request may go; else the decision that hands the task to a human before it is sent."""
    tokens_after = facts.spent.tokens + facts.request.tokens
    cost_after = facts.spent.cost + facts.request.cost
    if facts.token_budget is not None and tokens_after > facts.token_budget:
        return _stop(
            "token",
            f"{facts.spent.tokens:,} tokens spent, the next model request may use up to {facts.request.tokens:,} "
            f"more: {tokens_after:,} would cross the task's budget of {facts.token_budget:,} tokens",
        )
    if facts.cost_budget is not None and cost_after > facts.cost_budget:
        return _stop(
            "cost",
            f"USD {facts.spent.cost:.4f} spent, the next model request may cost up to USD {facts.request.cost:.4f} "
            f"more: {cost_after:.4f} would cross the task's budget of USD {facts.cost_budget:.4f}",
        )
    return None


def _stop(kind: str, what: str) -> Decision:
    rule = (
        f"a model request is made only if the task's {kind} spend plus the request's worst case (input counted, "
        "plus its maximum output) stays within the task's budget"
    )
    reason = f"budget exceeded: {what}"
    return Decision(
        moves=(Move(Transition.HAND_OFF, reason),),
        rulings=(Ruling(RecoveryEvent.BUDGET, RecoveryAction.HANDOFF, what, rule),),
        handoff=Handoff(HandoffReason.BUDGET_EXCEEDED),
    )
