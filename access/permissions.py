"""Every API view says which scope each of its methods needs; a token without it is refused (403)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from access.models import ApiToken

# What a method needs when its view names none for it: HEAD reads like GET; OPTIONS describes, it changes nothing.
_AS_METHOD = {"HEAD": "GET"}


def scope_required(view: Any, method: str) -> str | None:
    """The scope `view` declares for `method`, or None when it declares none (refused)."""
    declared: Mapping[str, str] | None = getattr(view, "required_scopes", None)
    if declared is None:
        return None
    return declared.get(_AS_METHOD.get(method, method))


class HasRequiredScope(BasePermission):
    """A token reaches a method only with the scope its view declares; a method with no declared scope is refused
    to everyone (a test lists every endpoint, so none ships without one). A session (an admin user in the browser)
    has no token: its Django permissions alone decide, as in the admin."""

    message = "this token lacks the scope this endpoint needs"

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method == "OPTIONS":
            return True
        needed = scope_required(view, request.method or "")
        if needed is None:
            self.message = "this endpoint declares no scope, so nobody may call it"
            return False
        token = request.auth
        if not isinstance(token, ApiToken):
            return True
        if needed not in token.scopes:
            self.message = f"this token lacks the {needed} scope"
            return False
        return True
