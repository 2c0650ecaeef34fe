"""Orders with money in integer minor units plus an ISO 4217 currency, statuses as enums."""

from __future__ import annotations

from django.db import models


class OrderStatus(models.TextChoices):
    PLACED = "PLACED"
    PAID = "PAID"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    REFUNDED = "REFUNDED"
    CANCELLED = "CANCELLED"


class Order(models.Model):
    number = models.CharField(max_length=32, unique=True)
    customer_name = models.CharField(max_length=200)
    amount_cents = models.PositiveBigIntegerField()
    currency = models.CharField(max_length=3)
    refunded_cents = models.PositiveBigIntegerField(default=0)
    status = models.CharField(max_length=20, choices=OrderStatus.choices, default=OrderStatus.PLACED)
    shipping_address = models.JSONField(help_text="{line1, line2, city, postal_code, country}")
    # While the payment provider settles the order, refunds are refused (retryably) until then.
    settlement_locked_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.number


class Refund(models.Model):
    """One refund. The key is the tool call's: belt and braces beside the call ledger."""

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="refunds")
    amount_cents = models.PositiveBigIntegerField()
    currency = models.CharField(max_length=3)
    reason = models.TextField()
    idempotency_key = models.CharField(max_length=400, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.amount_cents} {self.currency} on {self.order_id}"


class OrderNote(models.Model):
    """A note added by a tool call; unique per call key, so a repeated call adds it once."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="notes")
    text = models.TextField()
    idempotency_key = models.CharField(max_length=400, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"note on {self.order_id}"
