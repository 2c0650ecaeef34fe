"""The body of a task submission."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from agent_runtime.catalog import DEFAULT_AGENT, current_agent_version_id
from agent_runtime.models import AgentConfig
from orchestration.api.fields import (
    DecimalNumberField,
    JSONObjectField,
    StrictCharField,
    StrictIntegerField,
    UnknownFieldsRefused,
)


@extend_schema_field(
    {
        "oneOf": [
            {"type": "number", "minimum": 0.0001, "maximum": 10**8, "exclusiveMaximum": True},
            {"type": "string", "pattern": r"^\d{1,8}(\.\d{1,4})?$"},
        ]
    }
)
class UsdAmountField(DecimalNumberField):
    """USD up to 99,999,999.9999: a number (cut to 4 decimal places) or a string of digits for the exact amount."""


class BudgetRequestSerializer(UnknownFieldsRefused, serializers.Serializer[dict[str, Any]]):
    tokens = StrictIntegerField(
        min_value=1, max_value=10**12, required=False, help_text="Tokens (input and output) the task may spend"
    )
    cost_usd = UsdAmountField(
        max_digits=12,
        decimal_places=4,
        min_value=Decimal("0.0001"),
        required=False,
        coerce_to_string=False,
        help_text="USD the task may spend on the model: a number (cut to 4 decimal places) or a string of digits "
        '("0.25"); at least 0.0001',
    )


class TaskCreateSerializer(UnknownFieldsRefused, serializers.Serializer[dict[str, Any]]):
    goal = StrictCharField(max_length=10_000)
    input = JSONObjectField()
    session_id = StrictCharField(max_length=255, required=False, default="", allow_blank=True)
    agent = StrictCharField(max_length=100, required=False, default=DEFAULT_AGENT)
    metadata = JSONObjectField(required=False, default=dict)
    budget = BudgetRequestSerializer(
        required=False, help_text="Overrides the agent's budget for this task (each part optional)"
    )
    routing_key = StrictCharField(
        max_length=255,
        required=False,
        default="",
        allow_blank=True,
        help_text="What a canary rollout hashes to choose the version, when there is no session_id (e.g. a "
        "customer id): tasks with one key stay on one version. Empty: the task's own id",
    )
    agent_version = StrictIntegerField(
        min_value=1,
        max_value=2**31 - 1,
        required=False,
        help_text="Run on this version of the agent, whatever the rollout says (testing; needs the "
        "force-version permission)",
    )

    def validate_agent(self, value: str) -> str:
        if current_agent_version_id(value) is None:
            known = AgentConfig.objects.filter(current__isnull=False).values_list("name", flat=True)
            raise serializers.ValidationError(f"unknown agent; known agents: {', '.join(known)}")
        return value
