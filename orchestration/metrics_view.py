"""`/metrics`: this web node's counters (every gunicorn worker's, in multiprocess mode) and the database gauges."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from prometheus_client.exposition import choose_encoder

from lib.metrics_process import exposition_registry
from orchestration.metrics_state import DatabaseStateCollector


def metrics(request: HttpRequest) -> HttpResponse:
    registry = exposition_registry(DatabaseStateCollector())
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encode(registry), content_type=content_type)
