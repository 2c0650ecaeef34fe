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
    status = models.CharField(max_length=20, choices=OrderStatus.choices, default=OrderStatus.PLACED)
    shipping_address = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.number


class OrderNote(models.Model):
    """A note added by a tool call; unique per call key, so a repeated call adds it once."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="notes")
    text = models.TextField()
    idempotency_key = models.CharField(max_length=400, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"note on {self.order_id}"
