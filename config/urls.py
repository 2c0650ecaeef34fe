from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from orchestration.health import healthz, readyz
from orchestration.metrics_view import metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("orchestration.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script from a URL of its own: the content security policy refuses
    # inline scripts.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
]

handler404 = "orchestration.api.errors.json_404"
handler500 = "orchestration.api.errors.json_500"
handler400 = "orchestration.api.errors.json_400"
