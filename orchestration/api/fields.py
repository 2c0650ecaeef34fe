"""Field types every API body shares: strings that stay strings, JSON objects jsonb can store, no unknown fields."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from lib.strict_json import contains_nul


class StrictCharField(serializers.CharField):
    """A string field that refuses numbers and booleans instead of quietly turning them into text."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class JSONObjectField(serializers.JSONField):
    default_error_messages = {
        "not_object": "Must be a JSON object.",
        "null_character": "Null characters (\\u0000) are not allowed.",
    }

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            self.fail("not_object")
        if contains_nul(value):  # PostgreSQL's jsonb cannot store them
            self.fail("null_character")
        return value


class UnknownFieldsRefused:
    """A body with a field the API does not know is refused, not silently half-read."""

    fields: Any

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)  # type: ignore[misc]
