"""Outcome webhooks: a client's endpoints, the outbox of deliveries written with each outcome, every attempt made,
and the audit of what people did to them. Deliveries are driven from these rows, never from broker messages alone.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django_fsm import ConcurrentTransitionMixin, FSMField, transition


class WebhookEvent(models.TextChoices):
    TASK_COMPLETED = "task.completed", "task completed"
    TASK_FAILED = "task.failed", "task failed (fatal tool error)"
    TASK_CANCELLED = "task.cancelled", "task cancelled"
    TASK_MANUAL_REVIEW = "task.manual_review", "task handed to a human (manual review)"


class WebhookEndpoint(models.Model):
    """Where a client service (the `owner`, an API user) wants its tasks' outcomes POSTed, and the secrets that sign
    them. Secrets are stored encrypted; after a rotation the previous one keeps signing until `previous_secret_until`.
    """

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2000)
    events = models.JSONField(default=list, help_text="The event types this endpoint receives")
    enabled = models.BooleanField(default=True)
    disabled_reason = models.TextField(blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    secret_encrypted = models.TextField(editable=False)
    previous_secret_encrypted = models.TextField(blank=True, editable=False)
    previous_secret_until = models.DateTimeField(null=True, blank=True, editable=False)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["owner", "enabled"], name="webhook_endpoint_owner_idx")]

    def __str__(self) -> str:
        return f"{self.url} ({self.owner_id})"


class WebhookDeliveryState(models.TextChoices):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


class WebhookDelivery(ConcurrentTransitionMixin, models.Model):
    """One outcome for one endpoint: written in the transaction of the task's state change (the outbox), its
    `message_id` and `payload` fixed then, so every attempt sends the same bytes under the same webhook-id.

    The task is named by id, not by a foreign key: a delivery outlives the task's retention, and retention's
    deletes by task id know nothing of this table.
    """

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    task_id = models.UUIDField(db_index=True)
    event = models.CharField(max_length=32, choices=WebhookEvent.choices)
    message_id = models.CharField(max_length=40, unique=True, help_text="The webhook-id header: msg_<...>")
    payload = models.TextField(help_text="The exact body sent (ASCII JSON), signed as is")
    state = FSMField(default=WebhookDeliveryState.PENDING, choices=WebhookDeliveryState.choices, protected=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Attempts made, every round included")
    round_started_at_attempt = models.PositiveIntegerField(
        default=0, help_text="Attempts made before the current round (a redelivery starts the schedule afresh)"
    )
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="When the next attempt is due")
    lease_token = models.UUIDField(null=True, blank=True, editable=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_outcome = models.CharField(max_length=200, blank=True, help_text="The latest attempt's outcome, in short")
    delivered_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        permissions = [("redeliver_webhook", "Can redeliver a webhook delivery")]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(state=WebhookDeliveryState.PENDING),
                name="webhook_delivery_due_idx",
            ),
            models.Index(fields=["endpoint", "-created_at"], name="webhook_delivery_endpoint_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.message_id} {self.event} ({self.state})"

    # --- transitions: the graph only; services/webhook_delivery.py guards, records and schedules ------------
    @transition(field=state, source=WebhookDeliveryState.PENDING, target=WebhookDeliveryState.DELIVERED)
    def deliver(self) -> None:
        """The endpoint answered 2xx."""

    @transition(field=state, source=WebhookDeliveryState.PENDING, target=WebhookDeliveryState.FAILED)
    def fail(self) -> None:
        """Every attempt of the retry schedule failed."""

    @transition(
        field=state,
        source=[WebhookDeliveryState.DELIVERED, WebhookDeliveryState.FAILED, WebhookDeliveryState.PENDING],
        target=WebhookDeliveryState.PENDING,
    )
    def redeliver(self) -> None:
        """An operator asked for a new attempt soon (same webhook-id, same bytes)."""


class WebhookAttemptOutcome(models.TextChoices):
    IN_FLIGHT = "in_flight", "in flight"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    LOST = "lost", "lost (the worker stopped before recording an answer)"


class WebhookAttempt(models.Model):
    """One POST of a delivery: written when it begins (so a worker killed mid-POST leaves a trace), closed when the
    answer is recorded."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField(help_text="Which attempt of the delivery, from 1")
    outcome = models.CharField(
        max_length=10, choices=WebhookAttemptOutcome.choices, default=WebhookAttemptOutcome.IN_FLIGHT
    )
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True)
    error = models.TextField(blank=True)
    worker = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["delivery", "number", "id"]

    def __str__(self) -> str:
        return f"attempt {self.number} ({self.outcome})"


class WebhookAuditAction(models.TextChoices):
    REGISTERED = "registered"
    UPDATED = "updated"
    SECRET_ROTATED = "secret_rotated", "secret rotated"
    DISABLED = "disabled"
    ENABLED = "enabled"
    REDELIVERED = "redelivered"


class WebhookAuditEntry(models.Model):
    """Who did what to an endpoint or a delivery, and why. Never edited."""

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="audit")
    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, null=True, blank=True, related_name="audit")
    action = models.CharField(max_length=20, choices=WebhookAuditAction.choices)
    actor = models.CharField(max_length=200, help_text="user:<name>, or the worker that decided")
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "webhook audit entries"

    def __str__(self) -> str:
        return f"{self.action} by {self.actor}"
