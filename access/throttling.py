"""Requests per token, counted in Redis by the `limits` library: its moving window is one Lua script per request,
so concurrent requests are counted one by one and none slips past the limit. Over the limit: 429 with
Retry-After (DRF's Throttled)."""

from __future__ import annotations

import logging
import math
import time
from functools import cache
from typing import Any

import limits
from django.conf import settings
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from access.models import ApiToken

logger = logging.getLogger(__name__)
NAMESPACE = "api-rate"


@cache
def _limiter() -> MovingWindowRateLimiter:
    return MovingWindowRateLimiter(storage_from_string(settings.API_THROTTLE_STORAGE_URI))


@cache
def _rate(spec: str) -> limits.RateLimitItem:
    return limits.parse(spec)


def rate_of(token: ApiToken | None) -> limits.RateLimitItem:
    if token is not None and token.rate_per_minute:
        return _rate(f"{token.rate_per_minute}/minute")
    return _rate(settings.API_THROTTLE_RATE)


class TokenRateThrottle(BaseThrottle):
    """One budget per token (a session: per user). If Redis cannot be reached the request is let through and the
    failure logged: the limit protects the service, and refusing every client during a Redis outage would not."""

    def __init__(self) -> None:
        self.retry_after: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        token = request.auth if isinstance(request.auth, ApiToken) else None
        who = f"token:{token.pk}" if token is not None else f"user:{getattr(request.user, 'pk', None)}"
        rate = rate_of(token)
        try:
            if _limiter().hit(rate, NAMESPACE, who):
                return True
            reset_at = _limiter().get_window_stats(rate, NAMESPACE, who).reset_time
        except Exception:  # the storage's own errors (redis.ConnectionError, ...) have no common base
            logger.warning("rate limit storage unavailable; request let through", exc_info=True)
            return True
        self.retry_after = max(1.0, math.ceil(reset_at - time.time()))
        return False

    def wait(self) -> float | None:
        return self.retry_after
