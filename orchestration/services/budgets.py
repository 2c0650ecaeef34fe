"""Enforcing a task's budget before a model request: gather the spend and the request's worst case, let the
policy (`orchestration.policy.budgets`) decide, and apply a stop."""

from __future__ import annotations

from agent_runtime.journal import TurnUsage
from orchestration.models import Task
from orchestration.policy.budgets import BudgetFacts, Spend, budget_decide
from orchestration.services.decisions import decision_apply


def budget_stops_request(*, task: Task, worst_case: TurnUsage, actor: str) -> bool:
    """True when the locked task's next request could cross its budget; the task is then handed to a human (in
    the caller's transaction) and the request must not be made."""
    facts = BudgetFacts(
        spent=Spend(tokens=task.input_tokens + task.output_tokens, cost=task.cost),
        request=Spend(tokens=worst_case.input_tokens + worst_case.output_tokens, cost=worst_case.cost),
        token_budget=task.token_budget,
        cost_budget=task.cost_budget,
    )
    stop = budget_decide(facts)
    if stop is not None:
        decision_apply(task=task, decision=stop, actor=actor)
    return stop is not None
