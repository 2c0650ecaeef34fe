"""A JSON parser that refuses oversize bodies and malformed JSON with a 400, before anything is read twice."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


class BoundedJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = settings.API_MAX_BODY_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise ParseError(f"request body is larger than {limit} bytes")
        try:
            # NaN and Infinity are Python's extensions, not JSON, and PostgreSQL's jsonb refuses them.
            return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant) if raw else {}
        except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
            raise ParseError(f"malformed JSON: {exc}") from None
        except RecursionError:
            raise ParseError("malformed JSON: nested too deeply") from None
