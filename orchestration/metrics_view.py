"""`/metrics`: this web node's counters (every gunicorn worker's, in multiprocess mode) and the database gauges,
for a scrape with the scrape token or from an allowed network (lib/metrics_access.py)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from prometheus_client.exposition import choose_encoder

from lib.metrics_access import scrape_allowed
from lib.metrics_process import exposition_registry
from orchestration.metrics_state import DatabaseStateCollector

REFUSED = "metrics need the scrape token (Authorization: Bearer ...) or an address in METRICS_ALLOWED_NETWORKS\n"


def metrics(request: HttpRequest) -> HttpResponse:
    remote_addr = request.META.get("REMOTE_ADDR", "")
    if not scrape_allowed(remote_addr=remote_addr, authorization=request.headers.get("Authorization", "")):
        return HttpResponse(REFUSED, status=403, content_type="text/plain; charset=utf-8")
    registry = exposition_registry(DatabaseStateCollector())
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encode(registry), content_type=content_type)
