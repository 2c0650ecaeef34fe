"""Writes of the demo shop, called by its tool adapters and by the demo seeding."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from shop.models import Order, OrderNote, OrderStatus, Refund


class RefundRefused(Exception):
    """A refund the shop will not make; `code` says why, in the refund tool's error dictionary."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class AddressChangeRefused(RefundRefused):
    pass


def _address(line1: str, city: str, postal_code: str, country: str) -> dict[str, Any]:
    return {"line1": line1, "line2": None, "city": city, "postal_code": postal_code, "country": country}


_S = OrderStatus
DEMO_ORDERS = [
    ("A-1001", "Ada Lovelace", 4999, "EUR", _S.SHIPPED, _address("12 Analytical Row", "London", "N1 9GU", "GB")),
    ("A-1002", "Grace Hopper", 125000, "USD", _S.PAID, _address("1 Compiler Way", "Arlington", "22201", "US")),
    ("A-1003", "Alan Turing", 1999, "GBP", _S.DELIVERED, _address("7 Enigma Lane", "Manchester", "M1 1AE", "GB")),
    ("A-1004", "Edsger Dijkstra", 8900, "EUR", _S.PAID, _address("3 Semaphore St", "Eindhoven", "5611", "NL")),
]


def orders_seed_demo(*, settlement_lock_seconds: float = 0) -> int:
    """Create the demo orders once; optionally put A-1002 under a settlement lock from now on."""
    created = 0
    for number, customer, cents, currency, status, address in DEMO_ORDERS:
        _, was_created = Order.objects.get_or_create(
            number=number,
            defaults={
                "customer_name": customer,
                "amount_cents": cents,
                "currency": currency,
                "status": status,
                "shipping_address": address,
            },
        )
        created += int(was_created)
    if settlement_lock_seconds:
        locked_until = timezone.now() + timedelta(seconds=settlement_lock_seconds)
        Order.objects.filter(number="A-1002").update(settlement_locked_until=locked_until)
    return created


def order_refund(*, order: Order, amount_cents: int, currency: str, reason: str, idempotency_key: str) -> Refund:
    """Refund part or all of an order. Runs inside the caller's transaction (the call ledger's)."""
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order.pk)
        if order.settlement_locked_until and order.settlement_locked_until > timezone.now():
            raise RefundRefused("ORDER_LOCKED", "order is locked by settlement process")
        if order.status in (OrderStatus.PLACED, OrderStatus.CANCELLED, OrderStatus.REFUNDED):
            raise RefundRefused("ORDER_NOT_REFUNDABLE", f"an order that is {order.status} cannot be refunded")
        if currency != order.currency:
            raise RefundRefused("CURRENCY_MISMATCH", f"the order is in {order.currency}, not {currency}")
        remaining = order.amount_cents - order.refunded_cents
        if amount_cents > remaining:
            raise RefundRefused("REFUND_EXCEEDS_BALANCE", f"only {remaining} {order.currency} cents are refundable")
        refund = Refund.objects.create(
            order=order, amount_cents=amount_cents, currency=currency, reason=reason, idempotency_key=idempotency_key
        )
        order.refunded_cents += amount_cents
        if order.refunded_cents == order.amount_cents:
            order.status = OrderStatus.REFUNDED
        order.save(update_fields=["refunded_cents", "status", "updated_at"])
        return refund


def order_address_update(*, order: Order, address: dict[str, Any]) -> Order:
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order.pk)
        if order.status in (OrderStatus.SHIPPED, OrderStatus.DELIVERED):
            raise AddressChangeRefused("ORDER_ALREADY_SHIPPED", f"the order is already {order.status}")
        order.shipping_address = address
        order.save(update_fields=["shipping_address", "updated_at"])
        return order


def order_note_add(*, order: Order, text: str, idempotency_key: str) -> tuple[OrderNote, bool]:
    """Add a note once per key: a retried or replayed call returns the note it already added."""
    with transaction.atomic():
        return OrderNote.objects.get_or_create(idempotency_key=idempotency_key, defaults={"order": order, "text": text})
