"""The operator console's task page: the whole story of one task, and the forms to act on it.

A client of the services: every action posts a form, the form is checked, `orchestration/services/queue.py`
decides and acts, and a refusal comes back as a form error or a message. Nothing here edits a model field.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django import forms
from django.conf import settings
from django.db.models import Prefetch, QuerySet, TextField
from django.db.models.functions import Cast, Length
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone

from agent_runtime.journal import SUSPENDED
from orchestration.console_memory import memory_figures
from orchestration.forms import (
    ApprovalForm,
    AssignForm,
    CancelForm,
    CloseForm,
    NoteForm,
    ResolveForm,
    RetryForm,
    SendBackForm,
)
from orchestration.models import (
    Approval,
    ApprovalDecision,
    OperatorAction,
    RecoveryDecision,
    Step,
    StepKind,
    StepState,
    Task,
    TaskSpan,
    TaskState,
)
from orchestration.services.approvals import DECIDE_PERMISSION
from orchestration.services.queue import (
    ASSIGN_PERMISSION,
    WORK_PERMISSION,
    result_schema_of,
)
from orchestration.spend import budget_figures

JSON_SHOWN = 20_000  # characters of one JSON value shown on the page; the API has it whole


def console_queryset() -> QuerySet[Task]:
    """One query per relation, whatever the number of steps: the page's query count is bounded."""
    return Task.objects.select_related("owner", "claimed_by", "agent_version__agent").prefetch_related(
        # A step's snapshots are fetched when an operator opens them (step_snapshot), not with the page.
        Prefetch("steps", queryset=_steps_without_snapshots()),
        "transitions",
        Prefetch("recovery_decisions", queryset=RecoveryDecision.objects.select_related("step").order_by("id")),
        Prefetch("operator_actions", queryset=OperatorAction.objects.select_related("actor").order_by("id")),
        Prefetch("approvals", queryset=Approval.objects.select_related("step", "decided_by")),
        Prefetch("spans", queryset=TaskSpan.objects.order_by("started_at", "id")),
    )


def console_task_or_404(task_id: str) -> Task:
    """The task for its page; a malformed id is a 404 like an unknown one (never a 500)."""
    try:
        return get_object_or_404(console_queryset(), pk=uuid.UUID(str(task_id)))
    except ValueError:
        raise Http404("no such task") from None


def _steps_without_snapshots() -> QuerySet[Step]:
    sizes = {
        "input_chars": Length(Cast("input", output_field=TextField())),
        "output_chars": Length(Cast("output", output_field=TextField())),
    }
    return Step.objects.select_related("contract_version").defer("input", "output").annotate(**sizes).order_by("seq")


def step_snapshot(task_id: str, seq: int, part: str) -> Shown:
    """One step's input or output, pretty-printed, for the timeline to show when it is opened."""
    task = console_task_or_404(task_id)
    if part not in ("input", "output"):
        raise Http404("a step has an input and an output")
    value = get_object_or_404(Step.objects.only(part), task=task, seq=seq)
    return Shown.of(getattr(value, part))


@dataclass(frozen=True)
class Shown:
    """A JSON value as the page shows it: collapsed, with its size, cut past JSON_SHOWN characters."""

    text: str
    size: int
    cut: bool

    @classmethod
    def of(cls, value: Any) -> Shown:
        text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
        return cls(text=text[:JSON_SHOWN], size=len(text), cut=len(text) > JSON_SHOWN)


def _span_row(span: TaskSpan) -> dict[str, Any]:
    error = json.dumps(span.error, default=str) if span.error else ""
    waiting = SUSPENDED in error  # the journal paused the run (a backoff, a handoff): a wait, not a failure
    return {"span": span, "waiting": waiting, "error": None if waiting else Shown.of(span.error) if error else None}


def _forms_for(task: Task, user: Any, bound: dict[str, forms.Form]) -> dict[str, forms.Form]:
    """The action forms that fit the task now, for this user (a bound form carries its errors back)."""
    if task.state != TaskState.MANUAL_REVIEW or not user.has_perm(WORK_PERMISSION):
        return {}
    seen = {"seen_handoff_at": task.handed_off_at}
    available: dict[str, Callable[[], forms.Form]] = {
        "retry": lambda: RetryForm(initial=seen),
        "send_back": lambda: SendBackForm(initial=seen),
        "close": lambda: CloseForm(initial=seen),
        "cancel": lambda: CancelForm(initial=seen),
        "note": lambda: NoteForm(),
    }
    failed = failed_tool_step(task)
    schema = result_schema_of(failed) if failed else None
    if schema is not None:
        available["resolve"] = lambda: ResolveForm(initial=seen, result_schema=schema)
    if pending_approval(task) is not None and user.has_perm(DECIDE_PERMISSION):
        available["approval"] = lambda: ApprovalForm(initial=seen)
    if user.has_perm(ASSIGN_PERMISSION):
        available["assign"] = lambda: AssignForm()
    return {name: bound.get(name) or make() for name, make in available.items()}


def failed_tool_step(task: Task) -> Step | None:
    steps = list(task.steps.all())
    last = steps[-1] if steps else None
    return last if last and last.state == StepState.FAILED and last.kind == StepKind.TOOL_CALL else None


def pending_approval(task: Task) -> Approval | None:
    return next((a for a in task.approvals.all() if a.decision == ApprovalDecision.PENDING), None)


def console_context(task: Task, user: Any, bound: dict[str, forms.Form] | None = None) -> dict[str, Any]:
    steps = list(task.steps.all())
    waited = (
        timezone.now() - task.handed_off_at if task.handed_off_at and task.state == TaskState.MANUAL_REVIEW else None
    )
    return {
        "task": task,
        "steps": steps,
        # One reverse() for the page, not two per step: `<base><seq>/input/` is the snapshot's URL.
        "snapshot_base": reverse("admin:orchestration_task_snapshot", args=[task.pk, 0, "input"]).removesuffix(
            "0/input/"
        ),
        "decisions": [
            {"decision": d, "envelope": Shown.of(d.envelope) if d.envelope else None}
            for d in task.recovery_decisions.all()
        ],
        "transitions": list(task.transitions.all()),
        "operator_actions": list(task.operator_actions.all()),
        "spans": [_span_row(span) for span in task.spans.all()],
        "pending_approval": pending_approval(task),
        "result": Shown.of(task.result) if task.result is not None else None,
        "task_input": Shown.of(task.input),
        "budget": budget_figures(task),
        "memory": memory_figures(task),
        "totals": {
            "steps": len(steps),
            "model_turns": sum(s.kind == StepKind.MODEL_TURN for s in steps),
            "tool_calls": sum(s.kind == StepKind.TOOL_CALL for s in steps),
            "input_tokens": task.input_tokens,
            "output_tokens": task.output_tokens,
            "cost": task.cost,
            "step_ms": sum(s.duration_ms or 0 for s in steps),
        },
        "waited": waited_text(waited.total_seconds()) if waited is not None else None,
        "overdue": waited is not None and waited.total_seconds() > settings.MANUAL_REVIEW_SLA_SECONDS,
        "held_by_me": task.claimed_by_id == user.pk and _live(task.claim_expires_at),
        "held_by": task.claimed_by if _live(task.claim_expires_at) else None,
        "forms": _forms_for(task, user, bound or {}),
        "can_work": user.has_perm(WORK_PERMISSION),
    }


def waited_text(seconds: float) -> str:
    """How long a task has waited, as an operator reads it at a glance."""
    if seconds < 60:
        return f"{int(seconds)} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours < 48 else f"{hours // 24} days"


def _live(until: datetime | None) -> bool:
    return until is not None and until > timezone.now()
