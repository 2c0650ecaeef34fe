"""Delivering webhooks: claim a due delivery under a lease, POST its fixed bytes signed for this attempt, record.

The rows drive everything. A delivery is due when it is PENDING, its `next_attempt_at` has passed, its endpoint is
enabled and no live lease holds it. A worker claims it with SELECT ... FOR UPDATE SKIP LOCKED, writes the attempt
and a lease, commits, and only then POSTs (no transaction is held across the network). A worker killed mid-POST
leaves its attempt in flight: once the lease expires the next claim marks it lost and tries again, with the same
webhook-id, so receivers deduplicate. What follows an attempt is `delivery_next_move`, a pure function.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from math import floor
from urllib.parse import urlsplit

import certifi
import urllib3
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from orchestration import metrics
from orchestration.models import (
    WebhookAttempt,
    WebhookAttemptOutcome,
    WebhookDelivery,
    WebhookDeliveryState,
    WebhookEndpoint,
)
from orchestration.services.actors import worker_actor
from orchestration.services.webhooks import (
    WebhookRefused,
    endpoint_disabled_mark,
    endpoint_signing_secrets,
    webhook_address,
)

logger = logging.getLogger(__name__)

LEASE_GRACE_SECONDS = 5.0
SWEEP_LIMIT = 50  # deliveries one beat run attempts at most; the next run goes on
SWEEP_BUDGET_SECONDS = 30.0
EXCERPT_BYTES = 500
JITTER = 0.1  # up to 10 % later than the schedule says, so retries of one outage do not arrive in one burst
USER_AGENT = "agent-platform-webhooks/1"


@dataclass(frozen=True)
class AttemptResult:
    succeeded: bool
    status_code: int | None
    """The HTTP status, or None when no answer came (refused, timeout, connection error)."""
    excerpt: str
    """The start of the answer's body, for the admin."""
    error: str
    duration_ms: int

    def summary(self) -> str:
        return f"HTTP {self.status_code}" if self.status_code is not None else self.error[:200]


@dataclass(frozen=True)
class NextMove:
    """What follows an attempt: delivered, retried after `retry_in_seconds`, or given up (schedule used up)."""

    delivered: bool = False
    retry_in_seconds: float | None = None
    give_up: bool = False


def delivery_next_move(*, succeeded: bool, attempts_in_round: int, schedule: Sequence[int], jitter: float) -> NextMove:
    """After the `attempts_in_round`-th attempt of this round: the schedule's n-th delay follows the n-th failure,
    stretched by `jitter` (a fraction); a failure past the schedule's end gives up."""
    if succeeded:
        return NextMove(delivered=True)
    if attempts_in_round <= len(schedule):
        return NextMove(retry_in_seconds=schedule[attempts_in_round - 1] * (1 + jitter))
    return NextMove(give_up=True)


@dataclass(frozen=True)
class Claim:
    """A delivery this worker holds under `lease_token` for one attempt, with what the attempt sends."""

    delivery_id: int
    endpoint_id: int
    lease_token: uuid.UUID
    attempt_id: int
    message_id: str
    url: str
    payload: str
    secrets: tuple[str, ...]


def webhooks_deliver_due(*, limit: int = SWEEP_LIMIT, budget_seconds: float = SWEEP_BUDGET_SECONDS) -> int:
    """Attempt due deliveries one at a time (each under its own lease) until none is due, `limit` were attempted or
    the budget is spent; how many were attempted. Safe to run in any number of workers at once."""
    started, attempted = time.monotonic(), 0
    while attempted < limit and time.monotonic() - started < budget_seconds:
        claim = _claim(delivery_id=None)
        if claim is None:
            break
        _attempt(claim)
        attempted += 1
    return attempted


def webhook_deliver(*, delivery_id: int) -> bool:
    """Attempt this delivery if it is due and nobody holds it (the on-commit message); True if attempted."""
    claim = _claim(delivery_id=delivery_id)
    if claim is None:
        return False
    _attempt(claim)
    return True


def _due(now: datetime) -> Q:
    return Q(
        state=WebhookDeliveryState.PENDING,
        next_attempt_at__lte=now,
        endpoint__enabled=True,
    ) & (Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))


def _claim(*, delivery_id: int | None) -> Claim | None:
    now = timezone.now()
    with transaction.atomic():
        due = WebhookDelivery.objects.filter(_due(now))
        if delivery_id is not None:
            due = due.filter(pk=delivery_id)
        delivery = (
            due.order_by("next_attempt_at").select_for_update(skip_locked=True, of=("self",)).select_related("endpoint")
        ).first()
        if delivery is None:
            return None
        lost = WebhookAttempt.objects.filter(delivery=delivery, outcome=WebhookAttemptOutcome.IN_FLIGHT)
        lost.update(outcome=WebhookAttemptOutcome.LOST, error="the worker stopped before recording an answer")
        token, number = uuid.uuid4(), delivery.attempts + 1
        lease = timedelta(seconds=2 * settings.WEBHOOK_TIMEOUT_SECONDS + LEASE_GRACE_SECONDS)  # connect + read
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            attempts=number, lease_token=token, lease_expires_at=now + lease
        )
        attempt = WebhookAttempt.objects.create(delivery=delivery, number=number, started_at=now, worker=worker_actor())
        endpoint = delivery.endpoint
        return Claim(
            delivery_id=delivery.pk,
            endpoint_id=endpoint.pk,
            lease_token=token,
            attempt_id=attempt.pk,
            message_id=delivery.message_id,
            url=endpoint.url,
            payload=delivery.payload,
            secrets=tuple(endpoint_signing_secrets(endpoint, at=now)),
        )


def _attempt(claim: Claim) -> None:
    result = webhook_post(url=claim.url, message_id=claim.message_id, payload=claim.payload, secrets=claim.secrets)
    _record(claim, result)


def signed_headers(*, message_id: str, payload: str, secrets: Sequence[str], at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers for one attempt: the timestamp is this attempt's, so each attempt is signed
    anew over id.timestamp.body, one `v1,` signature per valid secret (two during a rotation's overlap)."""
    signatures = " ".join(Webhook(secret).sign(msg_id=message_id, timestamp=at, data=payload) for secret in secrets)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(floor(at.timestamp())),
        "webhook-signature": signatures,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


def webhook_post(*, url: str, message_id: str, payload: str, secrets: Sequence[str]) -> AttemptResult:
    """The one place webhooks leave the platform: the address checked again (it may resolve elsewhere by now) and
    connected to as checked, no redirect followed (a 3xx is a failure), the timeout applied to connect and to the
    read (twice it in all), the answer read only as far as the excerpt."""
    try:
        address = webhook_address(url)
    except WebhookRefused as exc:
        return AttemptResult(False, None, "", f"refused: url {exc}", 0)
    headers = signed_headers(message_id=message_id, payload=payload, secrets=secrets, at=timezone.now())
    started = time.monotonic()
    try:
        status, excerpt = _post_to(url, str(address), body=payload.encode("ascii"), headers=headers)
    except Exception as exc:  # urllib3's errors, and whatever a broken answer raises while read
        return AttemptResult(False, None, "", f"{type(exc).__name__}: {exc}"[:1000], _since(started))
    text = excerpt.decode("utf-8", errors="replace")
    return AttemptResult(200 <= status < 300, status, text, "", _since(started))


def _post_to(url: str, address: str, *, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """POST to `address`, the one checked, as `url`'s host: the Host header, TLS's server name and the certificate
    check all name the host, only the socket goes to the address."""
    parts = urlsplit(url)
    host = str(parts.hostname)
    each = settings.WEBHOOK_TIMEOUT_SECONDS
    # Connect and read share 2 x the timeout in all, as the claim's lease assumes.
    timeout = urllib3.Timeout(connect=each, read=each, total=2 * each)
    pool: urllib3.HTTPConnectionPool
    if parts.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            address, parts.port or 443, timeout=timeout, retries=False, server_hostname=host,
            assert_hostname=host, cert_reqs="CERT_REQUIRED", ca_certs=certifi.where(),
        )  # fmt: skip
    else:
        pool = urllib3.HTTPConnectionPool(address, parts.port or 80, timeout=timeout, retries=False)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    with pool:
        response = pool.urlopen(
            "POST", target, body=body, headers={**headers, "host": parts.netloc}, redirect=False,
            preload_content=False, assert_same_host=False,
        )  # fmt: skip
        try:
            return response.status, response.read(EXCERPT_BYTES, decode_content=True) or b""
        finally:
            response.release_conn()


def _since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _record(claim: Claim, result: AttemptResult) -> None:
    now = timezone.now()
    with transaction.atomic():
        # The endpoint first, then the delivery, as every writer of both (FOR NO KEY UPDATE: an outbox insert's
        # foreign key check does not wait for it).
        endpoint = WebhookEndpoint.objects.select_for_update(no_key=True).filter(pk=claim.endpoint_id).first()
        delivery = WebhookDelivery.objects.select_for_update().filter(pk=claim.delivery_id).first()
        if endpoint is None or delivery is None:
            return  # the client deleted the endpoint meanwhile
        WebhookAttempt.objects.filter(pk=claim.attempt_id).update(
            outcome=WebhookAttemptOutcome.SUCCEEDED if result.succeeded else WebhookAttemptOutcome.FAILED,
            duration_ms=result.duration_ms,
            status_code=result.status_code,
            response_excerpt=result.excerpt,
            error=result.error,
        )
        if delivery.lease_token != claim.lease_token or delivery.state != WebhookDeliveryState.PENDING:
            # Our lease expired and another attempt took over, or an operator acted: the attempt is on record, the
            # delivery is theirs to move.
            logger.warning("late webhook result recorded, not acted on", extra={"message_id": claim.message_id})
            return
        move = delivery_next_move(
            succeeded=result.succeeded,
            attempts_in_round=delivery.attempts - delivery.round_started_at_attempt,
            schedule=settings.WEBHOOK_RETRY_SCHEDULE_SECONDS,
            jitter=random.uniform(0, JITTER),
        )
        outcome = "delivered" if move.delivered else "retrying" if move.retry_in_seconds is not None else "gave_up"
        metrics.webhook_attempt_count(outcome)
        _apply(delivery, endpoint, move, result=result, now=now)


def _apply(
    delivery: WebhookDelivery, endpoint: WebhookEndpoint, move: NextMove, *, result: AttemptResult, now: datetime
) -> None:
    delivery.lease_token, delivery.lease_expires_at = None, None
    delivery.last_outcome = result.summary()
    if move.delivered:
        delivery.deliver()
        delivery.delivered_at, delivery.next_attempt_at = now, None
        endpoint.last_success_at = now
    elif move.retry_in_seconds is not None:
        delivery.next_attempt_at = now + timedelta(seconds=move.retry_in_seconds)
        endpoint.last_failure_at = now
    else:
        delivery.fail()
        delivery.failed_at, delivery.next_attempt_at = now, None
        endpoint.last_failure_at = now
    delivery.save()
    endpoint.save(update_fields=["last_success_at", "last_failure_at"])
    if move.give_up:
        reason = (
            f"disabled at {now:%Y-%m-%d %H:%M:%S} UTC: delivery {delivery.message_id} failed {delivery.attempts} "
            f"attempts since {delivery.created_at:%Y-%m-%d %H:%M:%S} UTC; last: {result.summary()}"
        )
        endpoint_disabled_mark(endpoint, actor=worker_actor(), reason=reason)
