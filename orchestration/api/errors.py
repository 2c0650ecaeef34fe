"""Every API error has one shape: {"error": {"code", "message", "fields"?}}. Never a stack trace."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from django_fsm import ConcurrentTransition, TransitionNotAllowed
from rest_framework import status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler

from orchestration.services.queue import QueueActionRefused

logger = logging.getLogger(__name__)


def error_body(code: str, message: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error}


def _flatten(detail: Any) -> Any:
    if isinstance(detail, dict):
        return {key: _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_flatten(item) for item in detail]
    return str(detail)


_REFUSAL_STATUS = {"not_permitted": 403, "invalid": 400}


def structured_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    if isinstance(exc, QueueActionRefused):
        fields = exc.field_errors or None
        return Response(error_body(exc.code, str(exc), fields), status=_REFUSAL_STATUS.get(exc.code, 409))
    if isinstance(exc, TransitionNotAllowed | ConcurrentTransition):
        return Response(error_body("invalid_state", str(exc) or "the task cannot make this move now"), status=409)
    if isinstance(exc, DjangoPermissionDenied):
        return Response(error_body("permission_denied", str(exc) or "permission denied"), status=403)
    if isinstance(exc, RequestDataTooBig):
        return Response(error_body("too_large", "request body is too large"), status=413)
    response = exception_handler(exc, context)
    if response is None:
        logger.exception("unhandled API error", exc_info=exc)
        return Response(error_body("internal", "internal error"), status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    if isinstance(exc, ValidationError):
        response.data = error_body("invalid", "the request has invalid fields", _flatten(exc.detail))
    elif isinstance(exc, Http404):
        response.data = error_body("not_found", "not found")
    elif isinstance(exc, APIException):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else "error"
        response.data = error_body(code, str(exc.detail))
    return response


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def json_404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(error_body("not_found", "not found"), status=404)
    return defaults.page_not_found(request, exception or Http404())


def json_500(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(error_body("internal", "internal error"), status=500)
    return defaults.server_error(request)


def json_400(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(error_body("bad_request", "bad request"), status=400)
    return defaults.bad_request(request, exception or Exception())
