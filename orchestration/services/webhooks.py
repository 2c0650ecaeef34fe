"""Outcome webhooks: endpoints and their secrets, the outbox written with each outcome, redelivery.

A task's terminal state, or its entry into MANUAL_REVIEW, writes one delivery per enabled endpoint of its owner
subscribed to that event, in the transaction of the state change (`webhook_outbox_write`, called by the one place
states change). The delivery's webhook-id and bytes are fixed then; `services/webhook_delivery.py` POSTs them.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import secrets
import socket
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from celery import current_app
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from memory.vault import vault_fernet  # the vault's key: secrets at rest are encrypted as its values are
from orchestration.models import (
    Task,
    TaskState,
    WebhookAuditAction,
    WebhookAuditEntry,
    WebhookDelivery,
    WebhookDeliveryState,
    WebhookEndpoint,
    WebhookEvent,
)

logger = logging.getLogger(__name__)

DELIVER_WEBHOOK = "orchestration.tasks.deliver_webhook"
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # Standard Webhooks asks for 24 to 64 random bytes
OUTCOME_EVENTS: dict[str, WebhookEvent] = {
    TaskState.COMPLETED: WebhookEvent.TASK_COMPLETED,
    TaskState.TOOL_FAILED_FATAL: WebhookEvent.TASK_FAILED,
    TaskState.CANCELLED: WebhookEvent.TASK_CANCELLED,
    TaskState.MANUAL_REVIEW: WebhookEvent.TASK_MANUAL_REVIEW,
}


class WebhookRefused(ValueError):
    """An endpoint the platform will not call (address, scheme), or events it does not know."""


# --- what may be called ---------------------------------------------------------------------------------
def webhook_url_refusal(url: str) -> str | None:
    """Why the platform refuses to POST to `url`, or None: checked at registration (and, by `webhook_address`,
    before every attempt)."""
    try:
        webhook_address(url, resolve=not settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES)
    except WebhookRefused as exc:
        return str(exc)
    return None


def webhook_address(url: str, *, resolve: bool = True) -> str | None:
    """The address to connect to for `url` (None when not asked to resolve), or WebhookRefused: https only, no
    credentials, and no loopback, private, link-local or reserved address, unless WEBHOOK_ALLOW_PRIVATE_ADDRESSES
    (the local demo). A delivery connects to the address returned, never to the name again: a name that resolved
    to a public address here could resolve to an internal one a moment later (DNS rebinding)."""
    parts = urlsplit(url)
    allow_private = settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise WebhookRefused("must be an http(s) URL with a host")
    if parts.scheme != "https" and not allow_private:
        raise WebhookRefused("must use https")
    if parts.username or parts.password:
        raise WebhookRefused("must not carry credentials")
    if not resolve:
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        found = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError) as exc:
        raise WebhookRefused(f"host {parts.hostname} does not resolve ({exc})") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
    for address in addresses if not allow_private else []:
        if _internal(address):
            raise WebhookRefused(
                f"host {parts.hostname} resolves to {address}, a loopback, private, link-local or reserved address"
            )
    return addresses[0]


def _internal(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone ("%eth0") is not part of the address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def _checked(url: str, events: Iterable[str]) -> list[str]:
    refusal = webhook_url_refusal(url)
    if refusal:
        raise WebhookRefused(f"url {refusal}")
    chosen = sorted(set(events))
    unknown = [event for event in chosen if event not in WebhookEvent.values]
    if unknown or not chosen:
        raise WebhookRefused(f"events must be some of {', '.join(WebhookEvent.values)}")
    return chosen


# --- secrets ----------------------------------------------------------------------------------------------
def new_webhook_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _sealed(secret: str) -> str:
    return vault_fernet().encrypt(secret.encode()).decode()


def _opened(sealed: str) -> str:
    return vault_fernet().decrypt(sealed.encode()).decode()


def endpoint_signing_secrets(endpoint: WebhookEndpoint, *, at: datetime) -> list[str]:
    """The secrets that sign at `at`: the current one, and the previous one during its overlap after a rotation."""
    current = [_opened(endpoint.secret_encrypted)]
    until = endpoint.previous_secret_until
    if endpoint.previous_secret_encrypted and until is not None and at < until:
        return [*current, _opened(endpoint.previous_secret_encrypted)]
    return current


# --- endpoints --------------------------------------------------------------------------------------------
def webhook_endpoint_register(
    *, owner: User, url: str, events: Iterable[str], actor: str
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its secret, which is shown this once (only its ciphertext is kept)."""
    chosen = _checked(url, events)
    secret = new_webhook_secret()
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.create(owner=owner, url=url, events=chosen, secret_encrypted=_sealed(secret))
        _audit(endpoint, WebhookAuditAction.REGISTERED, actor, f"{url} for {', '.join(chosen)}")
    return endpoint, secret


def webhook_endpoint_update(
    *,
    endpoint_id: int,
    actor: str,
    url: str | None = None,
    events: Sequence[str] | None = None,
    enabled: bool | None = None,
) -> WebhookEndpoint:
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update(no_key=True).get(pk=endpoint_id)
        new_url = url if url is not None else endpoint.url
        chosen = _checked(new_url, events if events is not None else endpoint.events)
        if (new_url, chosen) != (endpoint.url, endpoint.events):
            endpoint.url, endpoint.events = new_url, chosen
            endpoint.save(update_fields=["url", "events", "updated_at"])
            _audit(endpoint, WebhookAuditAction.UPDATED, actor, f"{new_url} for {', '.join(chosen)}")
    if enabled is True and not endpoint.enabled:
        return webhook_endpoint_enable(endpoint_id=endpoint_id, actor=actor)
    if enabled is False and endpoint.enabled:
        return webhook_endpoint_disable(endpoint_id=endpoint_id, actor=actor, reason=f"disabled by {actor}")
    return endpoint


def webhook_endpoint_rotate_secret(*, endpoint_id: int, actor: str) -> str:
    """A new secret, shown this once. The old one keeps signing (a second signature) for
    WEBHOOK_SECRET_OVERLAP_SECONDS, so the receiver can switch without rejecting a delivery; an older one stops."""
    secret = new_webhook_secret()
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update(no_key=True).get(pk=endpoint_id)
        overlap = timedelta(seconds=settings.WEBHOOK_SECRET_OVERLAP_SECONDS)
        endpoint.previous_secret_encrypted = endpoint.secret_encrypted
        endpoint.previous_secret_until = timezone.now() + overlap
        endpoint.secret_encrypted = _sealed(secret)
        endpoint.save()
        until = f"{endpoint.previous_secret_until:%Y-%m-%d %H:%M:%S} UTC"
        _audit(endpoint, WebhookAuditAction.SECRET_ROTATED, actor, f"the old secret signs until {until}")
    return secret


def webhook_endpoint_disable(*, endpoint_id: int, actor: str, reason: str) -> WebhookEndpoint:
    """No more attempts to this endpoint; its pending deliveries are kept for when it is enabled again."""
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update(no_key=True).get(pk=endpoint_id)
        endpoint_disabled_mark(endpoint, actor=actor, reason=reason)
    return endpoint


def endpoint_disabled_mark(endpoint: WebhookEndpoint, *, actor: str, reason: str) -> None:
    """Disable the locked `endpoint` in the caller's transaction, with the reason shown wherever it is listed."""
    if not endpoint.enabled:
        return
    endpoint.enabled, endpoint.disabled_at, endpoint.disabled_reason = False, timezone.now(), reason
    endpoint.save(update_fields=["enabled", "disabled_at", "disabled_reason", "updated_at"])
    _audit(endpoint, WebhookAuditAction.DISABLED, actor, reason)


def webhook_endpoint_enable(*, endpoint_id: int, actor: str) -> WebhookEndpoint:
    """Attempts resume: every delivery still pending for this endpoint is due now."""
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update(no_key=True).get(pk=endpoint_id)
        if endpoint.enabled:
            return endpoint
        was = endpoint.disabled_reason
        endpoint.enabled, endpoint.disabled_at, endpoint.disabled_reason = True, None, ""
        endpoint.save(update_fields=["enabled", "disabled_at", "disabled_reason", "updated_at"])
        pending = WebhookDelivery.objects.filter(endpoint=endpoint, state=WebhookDeliveryState.PENDING)
        pending.update(next_attempt_at=timezone.now())
        _audit(endpoint, WebhookAuditAction.ENABLED, actor, f"was: {was}" if was else "")
        webhook_deliveries_dispatch(list(pending.values_list("pk", flat=True)[:100]))  # the rest: the beat sweep
    return endpoint


def webhook_endpoint_delete(*, endpoint_id: int) -> None:
    """The client's own decision: the endpoint goes, with its deliveries and their attempts."""
    WebhookEndpoint.objects.filter(pk=endpoint_id).delete()


# --- the outbox ------------------------------------------------------------------------------------------
def webhook_outbox_write(*, task: Task) -> list[WebhookDelivery]:
    """One delivery per enabled endpoint of the task's owner subscribed to its new state's event, in the caller's
    transaction: a rolled back state change leaves none, a committed one cannot lose its delivery."""
    event = OUTCOME_EVENTS.get(task.state)
    if event is None:
        return []
    endpoints = WebhookEndpoint.objects.filter(owner_id=task.owner_id, enabled=True).only("pk", "events")
    subscribed = [endpoint for endpoint in endpoints if event in endpoint.events]  # JSON lists: filtered here
    if not subscribed:
        return []
    now = timezone.now()
    payload = webhook_payload(task=task, event=event, at=now)
    created = WebhookDelivery.objects.bulk_create(
        WebhookDelivery(
            endpoint=endpoint, task_id=task.pk, event=event, message_id=new_message_id(), payload=payload,
            next_attempt_at=now,
        )
        for endpoint in subscribed
    )  # fmt: skip
    webhook_deliveries_dispatch([delivery.pk for delivery in created])
    return created


def webhook_payload(*, task: Task, event: str, at: datetime) -> str:
    """The body, in the Standard Webhooks shape ({type, timestamp, data}), as ASCII JSON: its text is its bytes,
    so what is signed is exactly what is sent. Result and reason as the API shows them (redacted)."""
    body = {
        "type": event,
        "timestamp": at.isoformat().replace("+00:00", "Z"),
        "data": {
            "task_id": str(task.pk),
            "state": str(task.state),
            "result": task.result,
            "reason": task.state_reason,
            "handoff_reason": task.handoff_reason or None,
            "trace_id": task.trace_id,
        },
    }
    return json.dumps(body, ensure_ascii=True, separators=(",", ":"), sort_keys=True)


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def webhook_deliveries_dispatch(delivery_ids: Sequence[int]) -> None:
    """Wake a worker for each delivery once the caller's transaction commits. Only for latency: a message lost
    (broker down, worker killed) changes nothing, the beat sweep finds every due delivery in the database."""
    ids = list(delivery_ids)
    if not ids:
        return

    def send() -> None:
        try:
            for delivery_id in ids:
                current_app.send_task(DELIVER_WEBHOOK, args=[delivery_id])
        except Exception:
            logger.warning("broker unavailable; the webhook sweep will deliver these", extra={"deliveries": ids})

    transaction.on_commit(send)


# --- redelivery ------------------------------------------------------------------------------------------
def webhook_delivery_redeliver(*, delivery_id: int, actor: str, note: str = "") -> WebhookDelivery:
    """A new attempt soon, with the same webhook-id and bytes, and a fresh retry schedule (audited). An endpoint
    that is disabled keeps it pending until it is enabled."""
    with transaction.atomic():
        endpoint_id = WebhookDelivery.objects.values_list("endpoint_id", flat=True).get(pk=delivery_id)
        endpoint = WebhookEndpoint.objects.select_for_update(no_key=True).get(pk=endpoint_id)  # endpoint first
        delivery = WebhookDelivery.objects.select_for_update().get(pk=delivery_id)
        delivery.redeliver()
        delivery.round_started_at_attempt = delivery.attempts
        delivery.next_attempt_at, delivery.failed_at = timezone.now(), None
        delivery.save()
        _audit(endpoint, WebhookAuditAction.REDELIVERED, actor, note, delivery=delivery)
        if endpoint.enabled:
            webhook_deliveries_dispatch([delivery.pk])
    return delivery


def _audit(
    endpoint: WebhookEndpoint, action: str, actor: str, note: str, *, delivery: WebhookDelivery | None = None
) -> None:
    WebhookAuditEntry.objects.create(endpoint=endpoint, delivery=delivery, action=action, actor=actor, note=note)
