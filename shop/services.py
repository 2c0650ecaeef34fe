"""Writes and reads of the demo shop, called by its tool adapters and by the demo seeding."""

from __future__ import annotations

from django.db import transaction

from shop.models import Order, OrderNote, OrderStatus

DEMO_ORDERS = [
    ("A-1001", "Ada Lovelace", 4999, "EUR", OrderStatus.SHIPPED, "12 Analytical Row, London"),
    ("A-1002", "Grace Hopper", 125000, "USD", OrderStatus.PAID, "1 Compiler Way, Arlington"),
    ("A-1003", "Alan Turing", 1999, "GBP", OrderStatus.DELIVERED, "7 Enigma Lane, Manchester"),
]


def orders_seed_demo() -> int:
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
    return created


def order_note_add(*, order: Order, text: str, idempotency_key: str) -> tuple[OrderNote, bool]:
    """Add a note once per key: a retried or replayed call returns the note it already added."""
    with transaction.atomic():
        return OrderNote.objects.get_or_create(idempotency_key=idempotency_key, defaults={"order": order, "text": text})
