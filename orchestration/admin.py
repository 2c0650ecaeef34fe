"""A read-mostly view of tasks for operators; the console issue adds the manual queue's actions."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django_fsm import TransitionNotAllowed

from orchestration.models import Step, Task, TaskTransition
from orchestration.services.actors import user_actor
from orchestration.services.transitions import task_cancel


class StepInline(admin.TabularInline[Step, Task]):
    model = Step
    extra = 0
    can_delete = False
    fields = readonly_fields = (
        "seq", "kind", "name", "state", "attempt", "duration_ms", "input_tokens", "output_tokens", "output",
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


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin[Task]):
    list_display = ["id", "state", "agent", "owner", "goal_preview", "input_tokens", "output_tokens", "created_at"]
    list_filter = ["state", "agent"]
    search_fields = ["=id", "=trace_id", "=idempotency_key", "goal"]
    show_full_result_count = False
    list_select_related = ["owner"]
    inlines = [StepInline, TransitionInline]
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
