"""Field types every API body shares: a value of the JSON type the schema names (a string, a boolean, a number, never
one quietly converted into another), JSON objects jsonb can store, no unknown fields."""

from __future__ import annotations

import re
from contextlib import suppress
from decimal import ROUND_DOWN, Decimal
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from lib.strict_json import contains_nul

_DECIMAL_DIGITS = re.compile(r"\d+(\.\d+)?")


class StrictCharField(serializers.CharField):
    """A string field that refuses numbers and booleans instead of quietly turning them into text."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class StrictBooleanField(serializers.BooleanField):
    """JSON true or false, not DRF's "yes", "on", 1 or "false"."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer, not a string of digits, 1.0 or true (DRF's field takes all three)."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return int(super().to_internal_value(data))


class DecimalNumberField(serializers.DecimalField):
    """A JSON number, or a string of decimal digits for an exact amount ("0.25"); not true, not "1e5" nor " 1" (DRF's
    field takes them all). A number is a double, whose decimal expansion can run past `decimal_places` (0.1 + 0.2): it
    is cut to them, toward zero, rather than refused for digits the client never wrote."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, bool) or not isinstance(data, int | float | str):
            self.fail("invalid")
        if isinstance(data, str) and not _DECIMAL_DIGITS.fullmatch(data):
            self.fail("invalid")
        if isinstance(data, float) and self.decimal_places is not None:
            with suppress(ArithmeticError):  # too large to quantize (or not finite): the field's own checks refuse it
                data = Decimal(repr(data)).quantize(Decimal(1).scaleb(-self.decimal_places), rounding=ROUND_DOWN)
        return super().to_internal_value(data)


@extend_schema_field(OpenApiTypes.OBJECT)
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
