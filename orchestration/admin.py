"""The operator console in the Django admin: the manual queue and every task's page (held calls: admin_approvals)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django_fsm import TransitionNotAllowed

from agent_runtime.models import AgentConfig
from orchestration import (
    admin_approvals,  # noqa: F401  (registers the held calls' admin)
    admin_rollouts,  # noqa: F401  (registers the canary rollouts' admin)
    admin_webhooks,  # noqa: F401  (registers the webhook admin)
)
from orchestration.admin_paginators import EstimatedCountPaginator
from orchestration.console import console_context, console_task_or_404, step_snapshot, waited_text
from orchestration.console_actions import console_act
from orchestration.forms import BulkRetryForm
from orchestration.models import HandoffReason, QueueTask, Task, TaskState
from orchestration.policy.operator_actions import RETRIABLE_HANDOFFS
from orchestration.services.actors import user_actor
from orchestration.services.bulk_retry import tasks_for_bulk_retry, tasks_retry_bulk
from orchestration.services.cancellation import task_cancel
from orchestration.services.queue import (
    WORK_PERMISSION,
    QueueActionRefused,
    task_claim,
    task_release,
)
from orchestration.spend import PERIODS, ROLLUPS, period_start, spend_rollup


class AgentFilter(admin.SimpleListFilter):
    """The agents, from their configurations: a task names one of them (submission checks it), and listing them
    this way costs no SELECT DISTINCT over every task, as the "agent" field filter would."""

    title = "agent"
    parameter_name = "agent__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in AgentConfig.objects.order_by("name").values_list("name", flat=True)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(agent=self.value()) if self.value() else queryset


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin[Task]):
    """Every task, read-only. A task's page is the console: its whole story and, in the manual queue, the forms to
    act on it. Nothing here is edited or deleted (retention is a command of its own)."""

    list_display = [
        "id", "state", "handoff_reason", "agent", "owner", "goal_preview", "input_tokens", "output_tokens",
        "created_at",
    ]  # fmt: skip
    list_filter = ["state", "handoff_reason", AgentFilter]
    search_fields = ["=id", "=trace_id", "=idempotency_key", "goal"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_select_related = ["owner"]
    actions = ["cancel_tasks"]

    @admin.display(description="goal")
    def goal_preview(self, task: Task) -> str:
        return task.goal[:80]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Task]:
        return super().get_queryset(request).defer("input", "result", "metadata")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Task | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Task | None = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        act = self.admin_site.admin_view(self.act_view)
        snapshot = self.admin_site.admin_view(self.snapshot_view)
        spend = self.admin_site.admin_view(self.spend_view)
        return [
            path("spend/", spend, name="orchestration_task_spend"),
            path("<path:object_id>/act/<str:action>/", act, name="orchestration_task_act"),
            path("<path:object_id>/steps/<int:seq>/<str:part>/", snapshot, name="orchestration_task_snapshot"),
            *super().get_urls(),
        ]

    def spend_view(self, request: HttpRequest) -> HttpResponse:
        """Tokens and cost by client, agent and agent version, over a period."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        period = request.GET.get("period", "7d")
        period = period if period in PERIODS else "7d"
        since = period_start(period)
        context = {
            **self.admin_site.each_context(request),
            "title": "Spend",
            "opts": self.model._meta,
            "periods": list(PERIODS),
            "period": period,
            "rollups": [(by, spend_rollup(by, since=since)) for by in ROLLUPS],
        }
        return TemplateResponse(request, "admin/orchestration/task/spend.html", context)

    def snapshot_view(self, request: HttpRequest, object_id: str, seq: int, part: str) -> HttpResponse:
        """A step's input or output as text, fetched when an operator opens it on the task page."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        shown = step_snapshot(object_id, seq, part)
        text = shown.text + ("\n... cut; the API has it whole" if shown.cut else "")
        return HttpResponse(text, content_type="text/plain; charset=utf-8")

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return self.render_console(request, console_task_or_404(object_id), {})

    def act_view(self, request: HttpRequest, object_id: str, action: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_view_permission(request):
            raise PermissionDenied
        return console_act(request, object_id, action, self.render_console)

    def render_console(
        self, request: HttpRequest, task: Task, bound: dict[str, Any], status: int = 200
    ) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            **console_context(task, request.user, bound),
            "opts": self.model._meta,
            "title": f"Task {task.pk}",
            "subtitle": task.goal[:80],
        }
        return TemplateResponse(request, "admin/orchestration/task/console.html", context, status=status)

    def has_work_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm(WORK_PERMISSION))

    @admin.action(description="Cancel selected tasks", permissions=["work"])
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


class HeldFilter(admin.SimpleListFilter):
    title = "held by"
    parameter_name = "held"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("me", "me"), ("nobody", "nobody"), ("others", "someone else")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        live = Q(claimed_by__isnull=False, claim_expires_at__gt=timezone.now())
        if self.value() == "me":
            return queryset.filter(live, claimed_by=request.user)
        if self.value() == "nobody":
            return queryset.exclude(live)
        if self.value() == "others":
            return queryset.filter(live).exclude(claimed_by=request.user)
        return queryset


class OverdueFilter(admin.SimpleListFilter):
    title = "waiting"
    parameter_name = "overdue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", f"past the SLA ({settings.MANUAL_REVIEW_SLA_SECONDS // 60} min)"), ("no", "within the SLA")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        deadline = timezone.now() - timedelta(seconds=settings.MANUAL_REVIEW_SLA_SECONDS)
        if self.value() == "yes":
            return queryset.filter(handed_off_at__lt=deadline)
        if self.value() == "no":
            return queryset.filter(handed_off_at__gte=deadline)
        return queryset


@admin.register(QueueTask)
class QueueAdmin(admin.ModelAdmin[QueueTask]):
    """The manual queue: tasks a human must finish, oldest first. A row opens the task's console."""

    list_display = [
        "task_link", "handoff_reason", "waited", "holder", "handoff_tool", "handoff_error_code", "agent",
        "goal_preview",
    ]  # fmt: skip
    list_display_links = None
    list_filter = [HeldFilter, OverdueFilter, "handoff_reason", "handoff_tool", "agent", "handoff_error_code"]
    search_fields = ["=id", "=trace_id", "=idempotency_key", "goal"]
    show_full_result_count = False
    ordering = ["handed_off_at"]
    actions = ["claim_tasks", "release_tasks"]

    def get_urls(self) -> list[URLPattern]:
        bulk = self.admin_site.admin_view(self.bulk_retry_view)
        return [path("bulk-retry/", bulk, name="orchestration_queuetask_bulk_retry"), *super().get_urls()]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        context = {**(extra_context or {}), "can_bulk_retry": request.user.has_perm(WORK_PERMISSION)}
        return super().changelist_view(request, context)

    def bulk_retry_view(self, request: HttpRequest) -> HttpResponse:
        """Count first, then, confirmed, retry: the count the operator saw is what they agreed to."""
        if not request.user.has_perm(WORK_PERMISSION):
            raise PermissionDenied
        reasons = [(str(reason), str(HandoffReason(reason).label)) for reason in sorted(RETRIABLE_HANDOFFS)]
        form = BulkRetryForm(request.POST or None, reasons=reasons)
        count = None
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            count = tasks_for_bulk_retry(reason=data["reason"], since=data["since"]).count()
            if data["confirm"] and data["shown_count"] != count:
                self.message_user(
                    request, f"{count} tasks match now, not the count you were shown: check and confirm again",
                    messages.WARNING,
                )  # fmt: skip
            elif data["confirm"] and count:
                user: Any = request.user
                outcome = tasks_retry_bulk(user=user, reason=data["reason"], since=data["since"], note=data["note"])
                self.message_user(request, f"Retried {len(outcome.retried)} task(s).", messages.SUCCESS)
                for task_id, why in outcome.refused:
                    self.message_user(request, f"{task_id[:8]} not retried: {why}", messages.WARNING)
                return HttpResponseRedirect(reverse("admin:orchestration_queuetask_changelist"))
        if count is not None:
            form = BulkRetryForm(
                {**request.POST.dict(), "shown_count": str(count), "confirm": ""}, reasons=reasons
            )  # the count shown is the count a confirmation agrees to
            form.is_valid()
        context = {**self.admin_site.each_context(request), "form": form, "count": count, "title": "Bulk retry"}
        return TemplateResponse(request, "admin/orchestration/queuetask/bulk_retry.html", context)

    def get_queryset(self, request: HttpRequest) -> QuerySet[QueueTask]:
        queued = super().get_queryset(request).filter(state=TaskState.MANUAL_REVIEW)
        return queued.select_related("claimed_by").defer("input", "result", "metadata", "state_reason")

    @admin.display(description="task", ordering="handed_off_at")
    def task_link(self, task: QueueTask) -> str:
        url = reverse("admin:orchestration_task_change", args=[task.pk])
        return format_html('<a href="{}">{}</a>', url, str(task.pk)[:8])

    @admin.display(description="waited", ordering="handed_off_at")
    def waited(self, task: QueueTask) -> str:
        if task.handed_off_at is None:
            return "?"
        seconds = (timezone.now() - task.handed_off_at).total_seconds()
        text = waited_text(seconds)
        if seconds > settings.MANUAL_REVIEW_SLA_SECONDS:
            return format_html('<strong class="overdue" style="color:#ba2121">{} (past SLA)</strong>', text)
        return text

    @admin.display(description="held by")
    def holder(self, task: QueueTask) -> str:
        live = task.claim_expires_at is not None and task.claim_expires_at > timezone.now()
        return task.claimed_by.get_username() if live and task.claimed_by else "-"

    @admin.display(description="goal")
    def goal_preview(self, task: QueueTask) -> str:
        return task.goal[:60]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: QueueTask | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: QueueTask | None = None) -> bool:
        return False

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """A queued task's page is its console (which stays right after the task leaves the queue)."""
        return HttpResponseRedirect(reverse("admin:orchestration_task_change", args=[object_id]))

    def has_claim_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm(WORK_PERMISSION))

    @admin.action(description="Claim selected tasks", permissions=["claim"])
    def claim_tasks(self, request: HttpRequest, queryset: QuerySet[QueueTask]) -> None:
        self._each(request, queryset, lambda task: task_claim(task_id=task.pk, user=request.user), "Claimed")  # type: ignore[arg-type]

    @admin.action(description="Release selected tasks", permissions=["claim"])
    def release_tasks(self, request: HttpRequest, queryset: QuerySet[QueueTask]) -> None:
        self._each(request, queryset, lambda task: task_release(task_id=task.pk, user=request.user), "Released")  # type: ignore[arg-type]

    def _each(self, request: HttpRequest, queryset: QuerySet[QueueTask], act: Any, done: str) -> None:
        count, refusals = 0, []
        for task in queryset:
            try:
                act(task)
                count += 1
            except QueueActionRefused as refused:
                refusals.append(f"{str(task.pk)[:8]}: {refused}")
        self.message_user(request, f"{done} {count} task(s).", messages.SUCCESS)
        for refusal in refusals:
            self.message_user(request, refusal, messages.WARNING)
