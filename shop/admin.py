from django.contrib import admin

from shop.models import Order, OrderNote


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin[Order]):
    list_display = ["number", "customer_name", "status", "amount_cents", "currency", "created_at"]
    list_filter = ["status", "currency"]
    search_fields = ["number", "customer_name"]


@admin.register(OrderNote)
class OrderNoteAdmin(admin.ModelAdmin[OrderNote]):
    list_display = ["order", "text", "idempotency_key", "created_at"]
    readonly_fields = ["order", "text", "idempotency_key", "created_at"]
