"""REST API v1 routes for a client's webhook endpoints (included under /api/v1/)."""

from django.urls import URLPattern, path

from orchestration.api import webhook_views

urlpatterns: list[URLPattern] = [
    path("webhooks/", webhook_views.WebhookListCreateView.as_view(), name="webhook-list"),
    path("webhooks/<int:pk>/", webhook_views.WebhookDetailView.as_view(), name="webhook-detail"),
    path("webhooks/<int:pk>/rotate-secret/", webhook_views.WebhookRotateSecretView.as_view(), name="webhook-rotate"),
    path("webhooks/<int:pk>/deliveries/", webhook_views.WebhookDeliveriesView.as_view(), name="webhook-deliveries"),
]
