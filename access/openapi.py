"""How the OpenAPI schema describes the API's tokens and the refusals every endpoint can give (drf-spectacular finds
the extension by its target class; ScopedAutoSchema is the project's DEFAULT_SCHEMA_CLASS)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

from access.permissions import scope_required

# The one shape of every API error (orchestration/api/errors.py writes it): {"error": {"code", "message", "fields"?}}.
ERROR_SCHEMA = inline_serializer(
    "Error",
    fields={
        "error": inline_serializer(
            "ErrorDetail",
            fields={
                "code": serializers.CharField(),
                "message": serializers.CharField(),
                "fields": serializers.DictField(required=False),
            },
        )
    },
)

# What any endpoint may answer whatever its view does: the token, its scope and its rate are checked first.
_REFUSALS = {
    "401": "No token, or one that is unknown, expired, revoked or of an inactive user",
    "403": "The token lacks the scope this endpoint needs, or its user the permission",
    "429": "The token's rate is spent; Retry-After says when to try again",
}
# What any endpoint that takes a body may answer before its view reads it (orchestration/api/parsers.py).
_BODY_REFUSALS = {
    "400": "The body is not JSON, nests too deeply, or has invalid fields",
    "413": "The body is larger than the API accepts",
    "415": "The body is not application/json",
}
_RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds until the token may call again"}}


class ScopedTokenScheme(OpenApiAuthenticationExtension):
    target_class = "access.authentication.ScopedTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token from the admin (Access > API tokens), sent as `Authorization: Bearer "
            "<key>`. Each endpoint needs one scope, named in its description.",
        }


class ScopedAutoSchema(AutoSchema):
    """Every operation's description names the scope its token needs, and its responses include the refusals that
    come before its view runs (so a view documents only what it decides itself)."""

    # drf-spectacular calls it without arguments, unlike the DRF inspector its stubs describe.
    def get_description(self) -> str:  # type: ignore[override]
        description = str(super().get_description() or "")
        scope = scope_required(self.view, self.method)
        needs = f"Token scope: `{scope}`." if scope else "Needs no token scope."
        return f"{description}\n\n{needs}".strip()

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = dict(super()._get_response_bodies(direction))
        refusals = dict(_REFUSALS)
        if self.method in ("POST", "PUT", "PATCH"):
            refusals.update(_BODY_REFUSALS)
        if self.method == "GET" and self._is_list_view() and self._get_paginator() is not None:
            refusals["404"] = "No such page"
        for code, description in refusals.items():
            if code not in responses:
                shown = OpenApiResponse(ERROR_SCHEMA, description=description)
                responses[code] = self._get_response_for_code(shown, code, direction=direction)
        responses["429"].setdefault("headers", {}).update(_RETRY_AFTER)
        return responses
