"""REST API v1 for a client's webhook endpoints: thin views over services/webhooks.py. A client sees and touches only
its own endpoints (anyone else's is a 404)."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from access.scopes import Scope
from orchestration.api.views import ERROR_SCHEMA
from orchestration.api.webhook_serializers import (
    WebhookDeliverySerializer,
    WebhookEndpointCreateSerializer,
    WebhookEndpointSecretSerializer,
    WebhookEndpointSerializer,
    WebhookEndpointUpdateSerializer,
)
from orchestration.models import WebhookAttempt, WebhookEndpoint
from orchestration.services.actors import user_actor
from orchestration.services.webhooks import (
    WebhookRefused,
    webhook_endpoint_delete,
    webhook_endpoint_register,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_update,
)

RECENT_DELIVERIES = 50
MANAGE = Scope.WEBHOOKS_MANAGE


def _own_endpoints(request: Request) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(owner_id=request.user.pk).order_by("id")


def _own_endpoint(request: Request, pk: int) -> WebhookEndpoint:
    return generics.get_object_or_404(_own_endpoints(request), pk=pk)


def _actor(request: Request) -> str:
    return user_actor(request.user)  # type: ignore[arg-type]


class WebhookListCreateView(APIView):
    required_scopes = {"GET": MANAGE, "POST": MANAGE}

    @extend_schema(responses={200: WebhookEndpointSerializer(many=True)})
    def get(self, request: Request) -> Response:
        return Response(WebhookEndpointSerializer(_own_endpoints(request), many=True).data)

    @extend_schema(
        request=WebhookEndpointCreateSerializer,
        responses={201: WebhookEndpointSecretSerializer, 400: ERROR_SCHEMA},
        description="Register an endpoint. The answer carries its signing secret, this once.",
    )
    def post(self, request: Request) -> Response:
        body = WebhookEndpointCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            endpoint, secret = webhook_endpoint_register(
                owner=request.user,  # type: ignore[arg-type]
                url=body.validated_data["url"],
                events=body.validated_data["events"],
                actor=_actor(request),
            )
        except WebhookRefused as refused:
            raise ValidationError({"url": [str(refused)]}) from None
        shown = WebhookEndpointSecretSerializer(endpoint, context={"secret": secret}).data
        return Response(shown, status=status.HTTP_201_CREATED)


class WebhookDetailView(APIView):
    required_scopes = {"GET": MANAGE, "PATCH": MANAGE, "DELETE": MANAGE}

    @extend_schema(responses={200: WebhookEndpointSerializer, 404: ERROR_SCHEMA})
    def get(self, request: Request, pk: int) -> Response:
        return Response(WebhookEndpointSerializer(_own_endpoint(request, pk)).data)

    @extend_schema(
        request=WebhookEndpointUpdateSerializer,
        responses={200: WebhookEndpointSerializer, 400: ERROR_SCHEMA, 404: ERROR_SCHEMA},
        description="Change the url or events, or disable (enabled=false) and re-enable (enabled=true) the endpoint.",
    )
    def patch(self, request: Request, pk: int) -> Response:
        endpoint = _own_endpoint(request, pk)
        body = WebhookEndpointUpdateSerializer(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        try:
            updated = webhook_endpoint_update(endpoint_id=endpoint.pk, actor=_actor(request), **body.validated_data)
        except WebhookRefused as refused:
            raise ValidationError({"url": [str(refused)]}) from None
        return Response(WebhookEndpointSerializer(updated).data)

    @extend_schema(responses={204: None, 404: ERROR_SCHEMA})
    def delete(self, request: Request, pk: int) -> Response:
        webhook_endpoint_delete(endpoint_id=_own_endpoint(request, pk).pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookRotateSecretView(APIView):
    required_scopes = {"POST": MANAGE}

    @extend_schema(
        request=None,
        responses={200: WebhookEndpointSecretSerializer, 404: ERROR_SCHEMA},
        description="A new signing secret, shown this once. The old one keeps signing (a second signature) until "
        "previous_secret_valid_until, so the receiver can switch without rejecting a delivery.",
    )
    def post(self, request: Request, pk: int) -> Response:
        endpoint = _own_endpoint(request, pk)
        secret = webhook_endpoint_rotate_secret(endpoint_id=endpoint.pk, actor=_actor(request))
        endpoint.refresh_from_db()
        return Response(WebhookEndpointSecretSerializer(endpoint, context={"secret": secret}).data)


class WebhookDeliveriesView(APIView):
    required_scopes = {"GET": MANAGE}

    @extend_schema(responses={200: WebhookDeliverySerializer(many=True), 404: ERROR_SCHEMA})
    def get(self, request: Request, pk: int) -> Response:
        endpoint = _own_endpoint(request, pk)
        attempts: Any = Prefetch("attempt_log", queryset=WebhookAttempt.objects.order_by("number", "id"))
        recent = endpoint.deliveries.order_by("-created_at", "-id").prefetch_related(attempts)[:RECENT_DELIVERIES]
        return Response(WebhookDeliverySerializer(recent, many=True).data)
