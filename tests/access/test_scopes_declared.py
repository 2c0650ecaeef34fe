"""Every API endpoint declares the token scope each of its methods needs; one that declares none is refused."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory, force_authenticate
from rest_framework.views import APIView

from access.permissions import scope_required
from access.scopes import Scope

# The schema and its docs page describe the API to anyone who may call it; they show no data.
PUBLIC = {SpectacularAPIView, SpectacularSwaggerSplitView}


def _api_views(patterns: list[Any], prefix: str = "") -> Iterator[tuple[str, type[APIView]]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _api_views(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            view = getattr(pattern.callback, "cls", None)
            if isinstance(view, type) and issubclass(view, APIView):
                yield prefix + str(pattern.pattern), view


def _methods(view: type[APIView]) -> list[str]:
    return [m.upper() for m in view.http_method_names if m not in {"options", "head"} and hasattr(view, m)]


def test_every_api_method_declares_a_known_scope() -> None:
    views = list(_api_views(get_resolver().url_patterns))
    assert len(views) >= 15  # the tasks and queue endpoints at least: the walk really finds them
    undeclared = [
        f"{route} {method} ({view.__name__})"
        for route, view in views
        if view not in PUBLIC
        for method in _methods(view)
        if scope_required(view, method) not in Scope.values
    ]
    assert undeclared == []


class _Undeclared(APIView):
    def get(self, request: Request) -> Response:
        return Response({"reached": True})


@pytest.mark.django_db
def test_a_view_that_declares_no_scope_is_refused_even_to_a_session(client_user: Any) -> None:
    request = APIRequestFactory().get("/api/v1/undeclared/")
    force_authenticate(request, user=client_user)
    response = _Undeclared.as_view()(request)
    assert response.status_code == 403
    assert "declares no scope" in str(response.data)
