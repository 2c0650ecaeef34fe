"""API shapes of a client's webhook endpoints, their deliveries and attempts."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from orchestration.api.fields import StrictBooleanField, StrictCharField, UnknownFieldsRefused
from orchestration.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from orchestration.services.webhooks import webhook_url_refusal


class _EndpointBody(UnknownFieldsRefused, serializers.Serializer[Any]):
    url = StrictCharField(max_length=2000, help_text="https://...; private and loopback addresses are refused")
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=WebhookEvent.choices),
        allow_empty=False,
        max_length=len(WebhookEvent.values),
        help_text="The outcomes this endpoint receives",
    )

    def validate_url(self, url: str) -> str:
        refusal = webhook_url_refusal(url)
        if refusal:
            raise serializers.ValidationError(f"Refused: this URL {refusal}.")
        return url


class WebhookEndpointCreateSerializer(_EndpointBody):
    pass


class WebhookEndpointUpdateSerializer(_EndpointBody):
    enabled = StrictBooleanField(help_text="false stops attempts (pending deliveries wait); true resumes them")


class WebhookEndpointSerializer(serializers.ModelSerializer[WebhookEndpoint]):
    previous_secret_valid_until = serializers.DateTimeField(
        source="previous_secret_until",
        allow_null=True,
        read_only=True,
        help_text="After a rotation: until when the old secret signs too (a second signature)",
    )

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id", "url", "events", "enabled", "disabled_reason", "disabled_at", "last_success_at", "last_failure_at",
            "previous_secret_valid_until", "created_at",
        ]  # fmt: skip
        read_only_fields = fields


class WebhookEndpointSecretSerializer(WebhookEndpointSerializer):
    secret = serializers.SerializerMethodField(help_text="whsec_...: shown this once; verify deliveries with it")

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]
        read_only_fields = fields

    def get_secret(self, endpoint: WebhookEndpoint) -> str:
        return str(self.context["secret"])


class WebhookAttemptSerializer(serializers.ModelSerializer[WebhookAttempt]):
    class Meta:
        model = WebhookAttempt
        fields = ["number", "outcome", "started_at", "duration_ms", "status_code", "response_excerpt", "error"]
        read_only_fields = fields


class WebhookDeliverySerializer(serializers.ModelSerializer[WebhookDelivery]):
    webhook_id = serializers.CharField(source="message_id", read_only=True)
    # Plain text, not a second enum of the same choices as `events` (drf-spectacular warns on the duplicate name).
    event = serializers.CharField(read_only=True, help_text=f"One of {', '.join(WebhookEvent.values)}")
    attempt_count = serializers.IntegerField(source="attempts", read_only=True)
    attempts = WebhookAttemptSerializer(source="attempt_log", many=True, read_only=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "webhook_id", "event", "task_id", "state", "attempt_count", "next_attempt_at", "last_outcome",
            "delivered_at", "failed_at", "created_at", "attempts",
        ]  # fmt: skip
        read_only_fields = fields
