"""Outcome webhooks in the admin: clients' endpoints (rotate a secret, disable, enable) and every delivery with its
attempts (redeliver). A client of the services in orchestration/services/webhooks.py: nothing sets a field itself,
and deliveries are never added or edited by hand."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django_fsm import TransitionNotAllowed

from orchestration.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from orchestration.services.actors import user_actor
from orchestration.services.webhooks import (
    WebhookRefused,
    webhook_delivery_redeliver,
    webhook_endpoint_disable,
    webhook_endpoint_enable,
    webhook_endpoint_register,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_update,
    webhook_url_refusal,
)

REDELIVER_PERMISSION = "orchestration.redeliver_webhook"
ATTEMPT_FIELDS = (
    "number", "started_at", "duration_ms", "outcome", "status_code", "response_excerpt", "error", "worker",
)  # fmt: skip
DELIVERY_FIELDS = (
    "message_id", "event", "state", "endpoint", "task_link", "attempts", "next_attempt_at", "lease_expires_at",
    "last_outcome", "delivered_at", "failed_at", "created_at", "payload",
)  # fmt: skip


class WebhookEndpointForm(forms.ModelForm[WebhookEndpoint]):
    url = forms.URLField(max_length=2000, assume_scheme="https")
    events = forms.MultipleChoiceField(choices=WebhookEvent.choices, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = WebhookEndpoint
        fields = ["owner", "url", "events"]

    def clean_url(self) -> str:
        url = str(self.cleaned_data["url"])
        refusal = webhook_url_refusal(url)
        if refusal:
            raise forms.ValidationError(f"Refused: this URL {refusal}.")
        return url


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin[WebhookEndpoint]):
    form = WebhookEndpointForm
    list_display = ["url", "owner", "enabled", "disabled_reason", "last_success_at", "last_failure_at"]
    list_filter = ["enabled"]
    list_select_related = ["owner"]
    search_fields = ["url", "owner__username"]
    actions = ["rotate_secret", "disable_endpoints", "enable_endpoints"]
    shown = ["enabled", "disabled_reason", "disabled_at", "last_success_at", "last_failure_at", "deliveries", "audit"]

    def get_fields(self, request: HttpRequest, obj: WebhookEndpoint | None = None) -> Any:
        return ["owner", "url", "events"] if obj is None else ["owner", "url", "events", *self.shown]

    def get_readonly_fields(self, request: HttpRequest, obj: WebhookEndpoint | None = None) -> Any:
        return [] if obj is None else ["owner", *self.shown]

    def has_delete_permission(self, request: HttpRequest, obj: WebhookEndpoint | None = None) -> bool:
        return False  # disable instead: its deliveries and audit are kept

    @admin.display(description="deliveries")
    def deliveries(self, endpoint: WebhookEndpoint) -> SafeString:
        url = reverse("admin:orchestration_webhookdelivery_changelist") + f"?endpoint__id__exact={endpoint.pk}"
        return format_html('<a href="{}">{} deliveries</a>', url, endpoint.deliveries.count())

    @admin.display(description="audit")
    def audit(self, endpoint: WebhookEndpoint) -> SafeString:
        return format_html_join(
            "",
            "<div>{} {} by {}: {}</div>",
            (
                (entry.created_at.strftime("%Y-%m-%d %H:%M:%S"), entry.get_action_display(), entry.actor, entry.note)
                for entry in endpoint.audit.order_by("id")
            ),
        )

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form: Any, change: bool) -> None:
        data, actor = form.cleaned_data, user_actor(request.user)  # type: ignore[arg-type]
        try:
            if change:
                webhook_endpoint_update(endpoint_id=obj.pk, actor=actor, url=data["url"], events=data["events"])
                return
            created, secret = webhook_endpoint_register(
                owner=data["owner"], url=data["url"], events=data["events"], actor=actor
            )
        except WebhookRefused as refused:
            self.message_user(request, f"Not saved: {refused}", messages.ERROR)
            return
        obj.__dict__.update(created.__dict__)  # what the admin logs and redirects to: the endpoint saved
        self._show_secret(request, created, secret)

    def _show_secret(self, request: HttpRequest, endpoint: WebhookEndpoint, secret: str) -> None:
        self.message_user(
            request,
            f"Signing secret for {endpoint.url} (shown this once, give it to the client): {secret}",
            messages.WARNING,
        )

    @admin.action(description="Rotate the signing secret (the old one signs on for the overlap)")
    def rotate_secret(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for endpoint in queryset:
            secret = webhook_endpoint_rotate_secret(endpoint_id=endpoint.pk, actor=user_actor(request.user))  # type: ignore[arg-type]
            self._show_secret(request, endpoint, secret)

    @admin.action(description="Disable selected endpoints (deliveries are kept)")
    def disable_endpoints(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        actor = user_actor(request.user)  # type: ignore[arg-type]
        for endpoint in queryset:
            webhook_endpoint_disable(endpoint_id=endpoint.pk, actor=actor, reason=f"disabled by {actor}")
        self.message_user(request, f"Disabled {queryset.count()} endpoint(s).", messages.SUCCESS)

    @admin.action(description="Enable selected endpoints (pending deliveries resume)")
    def enable_endpoints(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for endpoint in queryset:
            webhook_endpoint_enable(endpoint_id=endpoint.pk, actor=user_actor(request.user))  # type: ignore[arg-type]
        self.message_user(request, f"Enabled {queryset.count()} endpoint(s).", messages.SUCCESS)


class WebhookAttemptInline(admin.TabularInline[WebhookAttempt, WebhookDelivery]):
    model = WebhookAttempt
    fields = readonly_fields = ATTEMPT_FIELDS
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin[WebhookDelivery]):
    list_display = [
        "message_id", "event", "state", "attempts", "next_attempt_at", "last_outcome", "endpoint", "task_link",
        "created_at",
    ]  # fmt: skip
    list_filter = ["state", "event"]
    list_select_related = ["endpoint"]
    search_fields = ["=message_id", "=task_id"]
    show_full_result_count = False
    inlines = [WebhookAttemptInline]
    actions = ["redeliver"]
    change_form_template = "admin/orchestration/webhookdelivery/change_form.html"
    fields = readonly_fields = DELIVERY_FIELDS

    @admin.display(description="task")
    def task_link(self, delivery: WebhookDelivery) -> SafeString:
        url = reverse("admin:orchestration_task_change", args=[delivery.task_id])
        return format_html('<a href="{}">{}</a>', url, str(delivery.task_id)[:8])

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: WebhookDelivery | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: WebhookDelivery | None = None) -> bool:
        return False

    def has_redeliver_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm(REDELIVER_PERMISSION))

    def get_urls(self) -> list[URLPattern]:
        redeliver = self.admin_site.admin_view(self.redeliver_view)
        return [
            path("<path:object_id>/redeliver/", redeliver, name="orchestration_webhookdelivery_redeliver"),
            *super().get_urls(),
        ]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {**(extra_context or {}), "can_redeliver": self.has_redeliver_permission(request)}
        return super().change_view(request, object_id, form_url, context)

    def redeliver_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_redeliver_permission(request):
            raise PermissionDenied
        self._redeliver(request, WebhookDelivery.objects.filter(pk=object_id))
        return HttpResponseRedirect(reverse("admin:orchestration_webhookdelivery_change", args=[object_id]))

    @admin.action(description="Redeliver selected deliveries (same webhook-id)", permissions=["redeliver"])
    def redeliver(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        self._redeliver(request, queryset)

    def _redeliver(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        actor, done = user_actor(request.user), []  # type: ignore[arg-type]
        for delivery in queryset.select_related("endpoint"):
            try:
                webhook_delivery_redeliver(delivery_id=delivery.pk, actor=actor, note="from the admin")
            except TransitionNotAllowed:
                continue
            done.append(delivery.message_id)
            if not delivery.endpoint.enabled:
                self.message_user(
                    request, f"{delivery.message_id} waits: its endpoint is disabled until enabled", messages.WARNING
                )
        self.message_user(request, f"Redelivering {len(done)} delivery(ies): {', '.join(done)}", messages.SUCCESS)
