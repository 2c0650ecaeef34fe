"""Demo shop tools: look up an order, add a note to it."""

from __future__ import annotations

from typing import Any

from shop.models import Order, OrderStatus
from shop.services import order_note_add
from tools.adapters.base import CallContext, ToolAdapter, register
from tools.envelope import ToolResult

_ORDER_NUMBER = {"type": "string", "pattern": "^[A-Z]-[0-9]{4,10}$", "description": "e.g. A-1001"}


def _order_data(order: Order) -> dict[str, Any]:
    return {
        "order_number": order.number,
        "status": order.status,
        "amount": {"amount_cents": order.amount_cents, "currency": order.currency},
        "shipping_address": order.shipping_address,
        "created_at": order.created_at.isoformat(),
    }


def _not_found(number: str) -> ToolResult:
    return ToolResult.failure("ORDER_NOT_FOUND", f"no order with number {number}", retryable=False)


@register
class LookupOrder(ToolAdapter):
    name = "lookup_order"
    description = "Look up an order by its number: status, amount (integer cents + currency), shipping address."
    parameters_schema = {
        "type": "object",
        "properties": {"order_number": _ORDER_NUMBER},
        "required": ["order_number"],
        "additionalProperties": False,
    }
    result_schema = {
        "type": "object",
        "properties": {
            "order_number": {"type": "string"},
            "status": {"type": "string", "enum": list(OrderStatus.values)},
            "amount": {
                "type": "object",
                "properties": {
                    "amount_cents": {"type": "integer", "minimum": 0},
                    "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                },
                "required": ["amount_cents", "currency"],
            },
            "shipping_address": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
        },
        "required": ["order_number", "status", "amount", "shipping_address", "created_at"],
    }

    def run(self, arguments: dict[str, Any], context: CallContext) -> ToolResult:
        order = Order.objects.filter(number=arguments["order_number"]).first()
        if order is None:
            return _not_found(arguments["order_number"])
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

    def run(self, arguments: dict[str, Any], context: CallContext) -> ToolResult:
        order = Order.objects.filter(number=arguments["order_number"]).first()
        if order is None:
            return _not_found(arguments["order_number"])
        note, _ = order_note_add(order=order, text=arguments["note"], idempotency_key=context.idempotency_key)
        return ToolResult.success({"note_id": note.pk, "order_number": order.number})
