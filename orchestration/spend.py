"""What tasks spent: one task's budget, spent and remaining, and spend rolled up by client, agent and version."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, Sum
from django.utils import timezone

from orchestration.models import Task, TaskState

PERIODS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30), "all": None}
ROLLUPS = {
    "client": ("owner__username",),
    "agent": ("agent",),
    "agent version": ("agent", "agent_version__number"),
}


def budget_figures(task: Task) -> dict[str, Any]:
    """A task's budgets, what it spent and what remains (never below zero); None where there is no limit."""
    spent = task.input_tokens + task.output_tokens
    return {
        "tokens": task.token_budget,
        "tokens_spent": spent,
        "tokens_remaining": None if task.token_budget is None else max(task.token_budget - spent, 0),
        "cost_usd": task.cost_budget,
        "cost_spent_usd": task.cost,
        "cost_remaining_usd": None if task.cost_budget is None else max(task.cost_budget - task.cost, Decimal("0")),
    }


@dataclass(frozen=True)
class SpendRow:
    group: str
    tasks: int
    completed: int
    input_tokens: int
    output_tokens: int
    cost: Decimal
    budget_stops: int

    @property
    def cost_per_completed_task(self) -> Decimal | None:
        return (self.cost / self.completed).quantize(Decimal("0.000001")) if self.completed else None


def spend_rollup(by: str, *, since: datetime | None) -> list[SpendRow]:
    """Spend of the tasks submitted since `since` (all when None), grouped `by` a key of ROLLUPS, costliest first."""
    fields = ROLLUPS[by]
    tasks = Task.objects.all() if since is None else Task.objects.filter(created_at__gte=since)
    rows = (
        tasks.values(*fields)
        .annotate(
            tasks=Count("pk"),
            completed=Count("pk", filter=Q(state=TaskState.COMPLETED)),
            input_tokens=Sum("input_tokens"),
            output_tokens=Sum("output_tokens"),
            cost=Sum("cost"),
            budget_stops=Count("pk", filter=Q(handoff_reason="budget_exceeded")),
        )
        .order_by("-cost", *fields)
    )
    return [
        SpendRow(
            group=" v".join(str(row[field]) for field in fields if row[field] is not None) or "(none)",
            tasks=row["tasks"],
            completed=row["completed"],
            input_tokens=row["input_tokens"] or 0,
            output_tokens=row["output_tokens"] or 0,
            cost=row["cost"] or Decimal("0"),
            budget_stops=row["budget_stops"],
        )
        for row in rows
    ]


def period_start(period: str) -> datetime | None:
    span = PERIODS.get(period, PERIODS["7d"])
    return None if span is None else timezone.now() - span
