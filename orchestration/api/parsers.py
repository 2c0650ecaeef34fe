"""A JSON parser that refuses oversize bodies (413) and malformed or too deeply nested JSON (400), before anything
is read twice."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser


class BodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """Whether `value` nests objects and arrays deeper than `limit` (iterative: a deep value cannot recurse)."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


class BoundedJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = settings.API_MAX_BODY_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise BodyTooLarge(f"request body is larger than {limit} bytes")
        try:
            # NaN and Infinity are Python's extensions, not JSON, and PostgreSQL's jsonb refuses them.
            data = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant) if raw else {}
        except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
            raise ParseError(f"malformed JSON: {exc}") from None
        except RecursionError:
            raise ParseError(f"JSON nested deeper than {settings.API_MAX_JSON_DEPTH} levels") from None
        if json_depth_exceeds(data, settings.API_MAX_JSON_DEPTH):
            raise ParseError(f"JSON nested deeper than {settings.API_MAX_JSON_DEPTH} levels")
        return data
