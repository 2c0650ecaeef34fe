"""The operator console's actions: each posted form is checked, handed to the services that decide and act, and
answered with a message (done, or why not) or, for a form error, the page again with the error on it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from orchestration.console import console_task_or_404, failed_tool_step, pending_approval
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
from orchestration.models import Task
from orchestration.services.approvals import DECIDE_PERMISSION, ApprovalNotPending, approval_decide
from orchestration.services.queue import (
    QueueActionRefused,
    result_schema_of,
    task_assign,
    task_claim,
    task_close,
    task_note_add,
    task_queue_cancel,
    task_release,
    task_resolve,
    task_retry_now,
    task_send_back,
)


def console_act(request: HttpRequest, task_id: str, action: str, render: Callable[..., HttpResponse]) -> HttpResponse:
    """Carry out one posted action; a form error re-renders the page with it, a refusal comes back as a message."""
    task = console_task_or_404(task_id)
    user = request.user
    back = HttpResponseRedirect(reverse("admin:orchestration_task_change", args=[task.pk]))
    handler = _HANDLERS.get(action)
    if handler is None:
        messages.error(request, f"unknown action {action!r}")
        return back
    form = handler.form(task, request.POST)
    if form is not None and not form.is_valid():
        return render(request, task, {handler.form_name: form}, status=400)
    try:
        done = handler.act(task, user, form)
    except QueueActionRefused as refused:
        if refused.code == "invalid" and form is not None:
            for field, problems in refused.field_errors.items():
                form.add_error(field if field in form.fields else None, "; ".join(problems) or str(refused))
            if not refused.field_errors:
                form.add_error(None, str(refused))
            return render(request, task, {handler.form_name: form}, status=400)
        messages.error(request, f"Not done: {refused}")
        return back
    except (ApprovalNotPending, PermissionDenied) as refused:
        messages.error(request, f"Not done: {refused}")
        return back
    messages.success(request, done)
    return back


@dataclass(frozen=True)
class _Handler:
    form_name: str
    form: Callable[[Task, Any], forms.Form | None]
    act: Callable[[Task, Any, Any], str]


def _resolve_form(task: Task, data: Any) -> forms.Form:
    failed = failed_tool_step(task)
    schema = result_schema_of(failed) if failed else None
    return ResolveForm(data, result_schema=schema or {})


def _resolve(task: Task, user: Any, form: Any) -> str:
    seen = form.cleaned_data["seen_handoff_at"]
    task_resolve(task_id=task.pk, user=user, note=form.cleaned_data["note"], data=form.result(), seen_handoff_at=seen)
    return "Resolved: the agent resumes with the result you entered."


def _retry(task: Task, user: Any, form: Any) -> str:
    seen, note = form.cleaned_data["seen_handoff_at"], form.cleaned_data["note"]
    task_retry_now(task_id=task.pk, user=user, note=note, seen_handoff_at=seen)
    return "Retrying now, with a fresh retry budget."


def _send_back(task: Task, user: Any, form: Any) -> str:
    data = form.cleaned_data
    seen, note = data["seen_handoff_at"], data["note"]
    task_send_back(task_id=task.pk, user=user, note=note, instruction=data["instruction"], seen_handoff_at=seen)
    return "Sent back: the agent reads your instruction before its next turn."


def _close(task: Task, user: Any, form: Any) -> str:
    data = form.cleaned_data
    task_close(
        task_id=task.pk, user=user, note=data["note"], output=data["output"], seen_handoff_at=data["seen_handoff_at"]
    )
    return "Closed: the task is COMPLETED with your result."


def _cancel(task: Task, user: Any, form: Any) -> str:
    data = form.cleaned_data
    task_queue_cancel(task_id=task.pk, user=user, note=data["note"], seen_handoff_at=data["seen_handoff_at"])
    return "Cancelled."


def _approval(task: Task, user: Any, form: Any) -> str:
    pending = pending_approval(task)
    if pending is None:
        raise ApprovalNotPending("this task holds no call for approval")
    approve = form.cleaned_data["verdict"] == "approve"
    if not user.has_perm(DECIDE_PERMISSION):
        raise QueueActionRefused("deciding approvals needs its permission", code="not_permitted")
    approval_decide(approval_id=pending.pk, user=user, approve=approve, message=form.cleaned_data["note"])
    return "Approved: the call runs now." if approve else "Rejected: the model hears why."


def _note(task: Task, user: Any, form: Any) -> str:
    task_note_add(task_id=task.pk, user=user, note=form.cleaned_data["note"])
    return "Note added."


def _assign(task: Task, user: Any, form: Any) -> str:
    assignee: User = form.cleaned_data["assignee"]
    task_assign(task_id=task.pk, user=user, assignee=assignee, note=form.cleaned_data["note"])
    return f"Assigned to {assignee.get_username()}."


def _claim(task: Task, user: Any, form: Any) -> str:
    task_claim(task_id=task.pk, user=user)
    return "You hold this task now."


def _release(task: Task, user: Any, form: Any) -> str:
    task_release(task_id=task.pk, user=user)
    return "Released."


_HANDLERS: dict[str, _Handler] = {
    "retry": _Handler("retry", lambda task, data: RetryForm(data), _retry),
    "resolve": _Handler("resolve", _resolve_form, _resolve),
    "send_back": _Handler("send_back", lambda task, data: SendBackForm(data), _send_back),
    "close": _Handler("close", lambda task, data: CloseForm(data), _close),
    "cancel": _Handler("cancel", lambda task, data: CancelForm(data), _cancel),
    "approval": _Handler("approval", lambda task, data: ApprovalForm(data), _approval),
    "note": _Handler("note", lambda task, data: NoteForm(data), _note),
    "assign": _Handler("assign", lambda task, data: AssignForm(data), _assign),
    "claim": _Handler("claim", lambda task, data: None, _claim),
    "release": _Handler("release", lambda task, data: None, _release),
}
