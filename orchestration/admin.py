"""A read-mostly view of tasks for operators; the console issue adds the manual queue's actions."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest
from django_fsm import TransitionNotAllowed

from orchestration.models import Approval, ApprovalDecision, RecoveryDecision, Step, Task, TaskSpan, TaskTransition
from orchestration.services.actors import user_actor
from orchestration.services.approvals import DECIDE_PERMISSION, ApprovalNotPending, approval_decide
from orchestration.services.cancellation import task_cancel


class StepInline(admin.TabularInline[Step, Task]):
    model = Step
    extra = 0
    can_delete = False
    fields = readonly_fields = (
        "seq", "kind", "name", "state", "attempt", "deadline_at", "duration_ms", "input_tokens", "output_tokens",
        "output",
    )  # fmt: skip
    ordering = ["seq"]

    def has_add_permission(self, request: HttpRequest, obj: Task | None = None) -> bool:
        return False


class TransitionInline(admin.TabularInline[TaskTransition, Task]):
    model = TaskTransition
    extra = 0
    can_delete = False
    fields = readonly_fields = ("created_at", "name", "from_state", "to_state", "actor", "reason")

    def has_add_permission(self, request: HttpRequest, obj: Task | None = None) -> bool:
        return False


class RecoveryDecisionInline(admin.TabularInline[RecoveryDecision, Task]):
    """Every decision of the recovery policy on this task: what failed, the rule, what followed and when."""

    model = RecoveryDecision
    extra = 0
    can_delete = False
    fields = readonly_fields = (
        "created_at", "step", "event", "what", "rule", "action", "attempt", "next_attempt_at", "envelope", "actor",
    )  # fmt: skip

    def get_queryset(self, request: HttpRequest) -> QuerySet[RecoveryDecision]:
        return super().get_queryset(request).select_related("step")

    def has_add_permission(self, request: HttpRequest, obj: Task | None = None) -> bool:
        return False


class SpanInline(admin.TabularInline[TaskSpan, Task]):
    """The agent SDK's trace of the task: agent, model and tool spans."""

    model = TaskSpan
    extra = 0
    can_delete = False
    fields = readonly_fields = ("kind", "started_at", "ended_at", "data", "error")

    def has_add_permission(self, request: HttpRequest, obj: Task | None = None) -> bool:
        return False


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin[Task]):
    list_display = [
        "id", "state", "handoff_reason", "agent", "owner", "goal_preview", "input_tokens", "output_tokens",
        "created_at",
    ]  # fmt: skip
    list_filter = ["state", "handoff_reason", "agent"]
    search_fields = ["=id", "=trace_id", "=idempotency_key", "goal"]
    show_full_result_count = False
    list_select_related = ["owner"]
    inlines = [StepInline, TransitionInline, RecoveryDecisionInline, SpanInline]
    actions = ["cancel_tasks"]
    readonly_fields = [field.name for field in Task._meta.fields]

    @admin.display(description="goal")
    def goal_preview(self, task: Task) -> str:
        return task.goal[:80]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Cancel selected tasks")
    def cancel_tasks(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        cancelled = refused = 0
        for task in queryset:
            try:
                task_cancel(task_id=task.pk, actor=user_actor(request.user))  # type: ignore[arg-type]
                cancelled += 1
            except TransitionNotAllowed:
                refused += 1
        self.message_user(request, f"Cancelled {cancelled} task(s).", messages.SUCCESS)
        if refused:
            self.message_user(request, f"{refused} task(s) were already finished.", messages.WARNING)


class ApprovalForm(forms.ModelForm[Approval]):
    verdict = forms.ChoiceField(choices=[("approve", "Approve: run the call"), ("reject", "Reject")])
    reply = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}), help_text="Shown to the model with a rejection"
    )

    class Meta:
        model = Approval
        fields: list[str] = []


@admin.register(Approval)
class ApprovalAdmin(admin.ModelAdmin[Approval]):
    """Held tool calls. Deciding one resumes its task; a decision is final and bound to who gave it."""

    form = ApprovalForm
    list_display = ["tool", "task", "decision", "reason", "created_at", "decided_by"]
    list_filter = ["decision", "tool"]
    list_select_related = ["task", "decided_by"]
    show_full_result_count = False
    readonly_fields = ["task", "tool", "arguments", "reason", "decision", "message", "decided_by", "decided_at"]

    def get_fields(self, request: HttpRequest, obj: Approval | None = None) -> Any:
        decided = obj is not None and obj.decision != ApprovalDecision.PENDING
        return self.readonly_fields + ([] if decided else ["verdict", "reply"])

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Approval | None = None) -> bool:
        return request.user.has_perm(DECIDE_PERMISSION) and (obj is None or obj.decision == ApprovalDecision.PENDING)

    def save_model(self, request: HttpRequest, obj: Approval, form: Any, change: bool) -> None:
        try:
            approval_decide(
                approval_id=obj.pk,
                user=request.user,  # type: ignore[arg-type]
                approve=form.cleaned_data["verdict"] == "approve",
                message=form.cleaned_data.get("reply", ""),
            )
        except (ApprovalNotPending, PermissionDenied) as refused:
            self.message_user(request, f"Not decided: {refused}", messages.ERROR)
