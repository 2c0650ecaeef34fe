"""Demo shop tools: look up an order, refund part or all of it, change its shipping address, note it."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from shop.models import Order, OrderStatus
from shop.services import RefundRefused, order_address_update, order_note_add, order_refund
from tools.adapters.base import CallContext, ToolAdapter, register
from tools.envelope import ToolResult

_ORDER_NUMBER = {"type": "string", "pattern": "^[A-Z]-[0-9]{4,10}$", "description": "e.g. A-1001"}
_CURRENCY = {"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 4217 code, e.g. EUR"}
_MONEY = {
    "type": "object",
    "properties": {"amount_cents": {"type": "integer", "minimum": 0}, "currency": _CURRENCY},
    "required": ["amount_cents", "currency"],
}
_ADDRESS = {
    "type": "object",
    "properties": {
        "line1": {"type": "string", "minLength": 1, "maxLength": 200},
        "line2": {"type": ["string", "null"], "maxLength": 200},
        "city": {"type": "string", "minLength": 1, "maxLength": 100},
        "postal_code": {"type": "string", "minLength": 1, "maxLength": 20},
        "country": {"type": "string", "pattern": "^[A-Z]{2}$", "description": "ISO 3166-1 alpha-2"},
    },
    "required": ["line1", "line2", "city", "postal_code", "country"],
    "additionalProperties": False,
}
_ORDER = {
    "type": "object",
    "properties": {
        "order_number": {"type": "string"},
        "status": {"type": "string", "enum": list(OrderStatus.values)},
        "total": _MONEY,
        "refunded": _MONEY,
        "shipping_address": _ADDRESS,
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
    },
    "required": ["order_number", "status", "total", "refunded", "shipping_address", "created_at", "updated_at"],
}
_NOT_FOUND = {"code": "ORDER_NOT_FOUND", "meaning": "no order has this number", "retryable": False, "action": "replan"}


def _order_data(order: Order) -> dict[str, Any]:
    return {
        "order_number": order.number,
        "status": order.status,
        "total": {"amount_cents": order.amount_cents, "currency": order.currency},
        "refunded": {"amount_cents": order.refunded_cents, "currency": order.currency},
        "shipping_address": order.shipping_address,
        "created_at": order.created_at.isoformat(),
        "updated_at": order.updated_at.isoformat(),
    }


def _order(number: str) -> Order | None:
    return Order.objects.filter(number=number).first()


def _not_found(number: str) -> ToolResult:
    return ToolResult.failure("ORDER_NOT_FOUND", f"no order with number {number}", retryable=False)


@register
class LookupOrder(ToolAdapter):
    name = "lookup_order"
    description = "Look up an order by its number: status, total and refunded amounts (integer cents + currency)."
    parameters_schema = {
        "type": "object",
        "properties": {"order_number": _ORDER_NUMBER},
        "required": ["order_number"],
        "additionalProperties": False,
    }
    result_schema = _ORDER
    error_codes = [_NOT_FOUND]

    def run(self, arguments: dict[str, Any], context: CallContext) -> ToolResult:
        order = _order(arguments["order_number"])
        return ToolResult.success(_order_data(order)) if order else _not_found(arguments["order_number"])


@register
class RefundOrder(ToolAdapter):
    name = "refund_order"
    description = (
        "Refund part or all of an order. amount_cents is in minor units of the order's currency "
        "(10.00 EUR is 1000). Large refunds wait for a human's approval."
    )
    parameters_schema = {
        "type": "object",
        "properties": {
            "order_number": _ORDER_NUMBER,
            "amount_cents": {"type": "integer", "minimum": 1, "maximum": 100_000_000},
            "currency": _CURRENCY,
            "reason": {"type": "string", "minLength": 1, "maxLength": 500},
        },
        "required": ["order_number", "amount_cents", "currency", "reason"],
        "additionalProperties": False,
    }
    result_schema = {
        "type": "object",
        "properties": {
            "refund_id": {"type": "integer"},
            "refunded": _MONEY,
            "order": _ORDER,
            "created_at": {"type": "string", "format": "date-time"},
        },
        "required": ["refund_id", "refunded", "order", "created_at"],
    }
    error_codes = [
        _NOT_FOUND,
        {"code": "ORDER_LOCKED", "meaning": "the order is being settled", "retryable": True, "action": "retry"},
        {"code": "CURRENCY_MISMATCH", "meaning": "not the order's currency", "retryable": False, "action": "replan"},
        {
            "code": "REFUND_EXCEEDS_BALANCE",
            "meaning": "more than what is left to refund",
            "retryable": False,
            "action": "replan",
        },
        {
            "code": "ORDER_NOT_REFUNDABLE",
            "meaning": "the order's status allows no refund",
            "retryable": False,
            "action": "handoff",
        },
    ]
    timeout_seconds = 10.0
    approval_mode = "rule"

    @classmethod
    def default_contract(cls) -> dict[str, Any]:
        rule = {"field": "amount_cents", "above": settings.REFUND_APPROVAL_ABOVE_CENTS}
        return {**super().default_contract(), "approval_rule": rule}

    def run(self, arguments: dict[str, Any], context: CallContext) -> ToolResult:
        order = _order(arguments["order_number"])
        if order is None:
            return _not_found(arguments["order_number"])
        try:
            refund = order_refund(
                order=order,
                amount_cents=arguments["amount_cents"],
                currency=arguments["currency"],
                reason=arguments["reason"],
                idempotency_key=context.idempotency_key,
            )
        except RefundRefused as refused:
            return ToolResult.failure(refused.code, str(refused), retryable=refused.code == "ORDER_LOCKED")
        return ToolResult.success(
            {
                "refund_id": refund.pk,
                "refunded": {"amount_cents": refund.amount_cents, "currency": refund.currency},
                "order": _order_data(refund.order),
                "created_at": refund.created_at.isoformat(),
            }
        )


@register
class UpdateShippingAddress(ToolAdapter):
    name = "update_shipping_address"
    description = "Change where an order will be shipped. Only before it has shipped."
    parameters_schema = {
        "type": "object",
        "properties": {"order_number": _ORDER_NUMBER, "address": _ADDRESS},
        "required": ["order_number", "address"],
        "additionalProperties": False,
    }
    result_schema = _ORDER
    error_codes = [
        _NOT_FOUND,
        {
            "code": "ORDER_ALREADY_SHIPPED",
            "meaning": "the parcel has left; a human must redirect it",
            "retryable": False,
            "action": "handoff",
        },
    ]
    sensitive_fields = ["address.line1", "address.line2"]

    def run(self, arguments: dict[str, Any], context: CallContext) -> ToolResult:
        order = _order(arguments["order_number"])
        if order is None:
            return _not_found(arguments["order_number"])
        try:
            order = order_address_update(order=order, address=arguments["address"])
        except RefundRefused as refused:
            return ToolResult.failure(refused.code, str(refused), retryable=False)
        return ToolResult.success(_order_data(order))


@register
class AddOrderNote(ToolAdapter):
    name = "add_order_note"
    description = "Add a note to an order's history (visible to support staff)."
    parameters_schema = {
        "type": "object",
        "properties": {"order_number": _ORDER_NUMBER, "note": {"type": "string", "minLength": 1, "maxLength": 2000}},
        "required": ["order_number", "note"],
        "additionalProperties": False,
    }
    result_schema = {
        "type": "object",
        "properties": {"note_id": {"type": "integer"}, "order_number": {"type": "string"}},
        "required": ["note_id", "order_number"],
    }
    error_codes = [_NOT_FOUND]

    def run(self, arguments: dict[str, Any], context: CallContext) -> ToolResult:
        order = _order(arguments["order_number"])
        if order is None:
            return _not_found(arguments["order_number"])
        note, _ = order_note_add(order=order, text=arguments["note"], idempotency_key=context.idempotency_key)
        return ToolResult.success({"note_id": note.pk, "order_number": order.number})
