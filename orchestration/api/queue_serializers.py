"""API shapes of the manual queue's actions (claim, notes, retry, resolve, send back, close, bulk retry)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from orchestration.api.fields import JSONObjectField, StrictBooleanField, StrictCharField, StrictIntegerField
from orchestration.models import HandoffReason


class QueueNoteSerializer(serializers.Serializer[Any]):
    note = StrictCharField(max_length=5000, help_text="Why, for the audit log")


class QueueDecisionSerializer(QueueNoteSerializer):
    seen_handoff_at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        default=None,
        help_text="The task's handoff.since as you saw it: the action is refused (409) if it was handed off again",
    )


class QueueResolveSerializer(QueueDecisionSerializer):
    result = JSONObjectField(help_text="The failed tool call's result, checked against the tool's result schema")


class QueueSendBackSerializer(QueueDecisionSerializer):
    instruction = StrictCharField(
        max_length=5000, help_text="What the model reads, as a user message, before its next turn"
    )


class QueueCloseSerializer(QueueDecisionSerializer):
    output = StrictCharField(max_length=20_000, help_text="The task's final result, in the operator's words")


class QueueAssignSerializer(QueueNoteSerializer):
    assignee = StrictCharField(max_length=150, help_text="The username of a colleague who works the queue")


class QueueBulkRetrySerializer(QueueNoteSerializer):
    reason = serializers.ChoiceField(choices=HandoffReason.choices, help_text="Retry the tasks handed off for this")
    since = serializers.DateTimeField(help_text="... at or after this time")
    confirm = StrictBooleanField(default=False, help_text="false (the default): only count the tasks; true: retry them")
    expected_count = StrictIntegerField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Required with confirm: the count you were shown; refused (409) if the queue has changed since",
    )


class QueueBulkRetryResultSerializer(serializers.Serializer[Any]):
    count = serializers.IntegerField(help_text="Tasks that match")
    retried = serializers.ListField(child=serializers.CharField(), help_text="Ids of the tasks retried")
    refused = serializers.ListField(
        child=serializers.DictField(child=serializers.CharField()), help_text="{task, why} of those left"
    )
