"""Prepare the embedded demo: an admin, an operator and a platform engineer (passwords printed once), a client
token, demo orders, and the demo tasks (`make run` submits them over the API) that end in the manual queue for
several reasons. Safe to rerun."""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.utils import timezone

from access.models import ApiToken
from access.scopes import Scope
from access.services import token_issue, token_revoke
from agent_runtime.catalog import DEFAULT_AGENT, DEFAULT_INSTRUCTIONS
from agent_runtime.models import AgentConfig, Rollout
from agent_runtime.rollouts import rollout_start
from agent_runtime.services import agent_propose
from orchestration.models import WebhookEndpoint, WebhookEvent
from orchestration.services.webhooks import webhook_endpoint_delete, webhook_endpoint_register
from shop.models import Order
from shop.services import orders_seed_demo

ADMIN_USERNAME = "admin"
# Started when the demo tasks are submitted (make run does that once the worker is up), so the refund's first
# attempt meets the lock and a retry after the backoff gets through.
DEMO_SETTLEMENT_LOCK_SECONDS = 4
CLIENT_USERNAME = "demo-client"
DEMO_TOKEN_NAME = "demo client (make run)"
DEMO_READ_ONLY_NAME = "demo read-only, 3/minute (make run)"
# One user per role, neither a superuser: they see what the groups let them.
ROLE_USERS = {"operator": "operators", "engineer": "platform engineers"}

DEMO_TASKS: list[dict[str, Any]] = [
    {
        "key": "demo-lookup-and-note",
        "goal": "Look up order A-1001 and add an order note that the customer asked about delivery.",
        "input": {"order_number": "A-1001", "note": "Customer asked about delivery (demo)."},
    },
    {
        # A-1002 is under a settlement lock for a few seconds: the refund fails retryably, backs off, succeeds.
        "key": "demo-refund-after-retry",
        "goal": "Refund 200.00 USD on order A-1002: the box arrived damaged.",
        "input": {"order_number": "A-1002", "amount_cents": 20000, "currency": "USD", "reason": "box damaged"},
    },
    {
        # Above the refund contract's approval limit: the call waits for a human in MANUAL_REVIEW.
        "key": "demo-refund-needs-approval",
        "goal": "Refund 900.00 USD on order A-1002.",
        "input": {"order_number": "A-1002", "amount_cents": 90000, "currency": "USD", "reason": "goodwill"},
    },
    {
        "key": "demo-handoff",
        "goal": "The customer insists on speaking to a person: hand off to a human.",
        "input": {"order_number": "A-1002"},
    },
    {
        # A-1004 stays locked by its settlement for an hour: the refund's retries are used up, a human decides.
        "key": "demo-refund-retries-used-up",
        "goal": "Refund 10.00 EUR on order A-1004: the parcel was late.",
        "input": {"order_number": "A-1004", "amount_cents": 1000, "currency": "EUR", "reason": "late parcel"},
    },
    {
        # A-1001 has shipped: the address tool's error dictionary says a human must handle it.
        "key": "demo-address-after-shipping",
        "goal": "Update the shipping address of order A-1001.",
        "input": {
            "order_number": "A-1001",
            "address": {
                "line1": "5 New Street",
                "line2": None,
                "city": "Oxford",
                "postal_code": "OX1 1AA",
                "country": "GB",
            },
        },
    },
]
DEMO_LONG_LOCK = timedelta(hours=1)
# Submitted once the demo tasks have settled: a later task of a customer's session, answered from its memory.
FOLLOW_UPS: list[dict[str, Any]] = [
    {
        "key": "demo-follow-up-a1001",
        "body": {"goal": "What do you remember about order A-1001?", "input": {}, "session_id": "customer-A-1001"},
    },
]


def _session_of(demo: dict[str, Any]) -> str:
    """One session per customer (here, per order): tasks about one order share memory."""
    return f"customer-{demo['input']['order_number']}"


class Command(BaseCommand):
    help = (
        "Create the demo users (passwords printed once), client token and orders; print them, and the demo tasks "
        "to submit over the API, as JSON."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--webhook-port", type=int, default=8787, help="where make run's demo receiver listens")

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        password = None
        if not user_model.objects.filter(username=ADMIN_USERNAME).exists():
            password = secrets.token_urlsafe(12)
            user_model.objects.create_superuser(ADMIN_USERNAME, "admin@example.invalid", password)
        passwords = {name: _role_user(name, group) for name, group in ROLE_USERS.items()}
        client, _ = user_model.objects.get_or_create(username=CLIENT_USERNAME)
        token = _demo_token(client, DEMO_TOKEN_NAME, ApiToken.default_scopes())
        # make run shows the guards with it: refused without the submit scope, then throttled past 3 a minute.
        read_only = _demo_token(client, DEMO_READ_ONLY_NAME, [Scope.TASKS_READ], rate_per_minute=3)
        webhook_secret = _demo_webhook_endpoint(client, options["webhook_port"])
        orders_seed_demo(settlement_lock_seconds=DEMO_SETTLEMENT_LOCK_SECONDS)
        canary = _demo_canary()
        Order.objects.filter(number="A-1004").update(settlement_locked_until=timezone.now() + DEMO_LONG_LOCK)
        # The tasks go in through the API (make run posts these), as a client's would: counted, traced, keyed.
        follow_ups = [{"key": item["key"], "body": {**item["body"], "metadata": {"demo": True}}} for item in FOLLOW_UPS]
        submissions = [
            {
                "key": demo["key"],
                "body": {
                    "goal": demo["goal"],
                    "input": demo["input"],
                    "session_id": _session_of(demo),
                    "metadata": {"demo": True},
                },
            }
            for demo in DEMO_TASKS
        ]
        self.stdout.write(
            json.dumps(
                {
                    "admin_username": ADMIN_USERNAME,
                    "admin_password": password,
                    "role_passwords": passwords,
                    "token": token,
                    "read_only_token": read_only,
                    "webhook_secret": webhook_secret,
                    "submissions": submissions,
                    "follow_ups": follow_ups,
                    "canary": canary,
                }
            )
        )


def _demo_webhook_endpoint(client: Any, port: int) -> str:
    """The demo client's endpoint at make run's local receiver, registered afresh each run so that its secret can
    be handed to the receiver (only ciphertext is kept)."""
    url = f"http://127.0.0.1:{port}/webhooks"
    for old in WebhookEndpoint.objects.filter(owner=client):
        webhook_endpoint_delete(endpoint_id=old.pk)
    _, secret = webhook_endpoint_register(owner=client, url=url, events=WebhookEvent.values, actor="make run")
    return secret


def _demo_token(client: Any, name: str, scopes: list[str], rate_per_minute: int | None = None) -> str:
    """A fresh key each run (only digests are stored, so an old key cannot be shown again); the previous run's token
    of that name is revoked."""
    for old in ApiToken.objects.filter(user=client, name=name, revoked_at__isnull=True):
        token_revoke(token_id=old.pk, reason="replaced by the next make run")
    return token_issue(user=client, name=name, scopes=scopes, rate_per_minute=rate_per_minute).key


def _role_user(username: str, group: str) -> str | None:
    """A staff user in `group`, created once; returns its new password then, None afterwards."""
    user_model = get_user_model()
    if user_model.objects.filter(username=username).exists():
        return None
    password = secrets.token_urlsafe(12)
    user = user_model.objects.create_user(username, f"{username}@example.invalid", password, is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    return password


DEMO_CANARY_PERCENT = Decimal(50)
"""Half, not the default 10 %: with the demo's four customers both versions get some of their tasks."""


def _demo_canary() -> dict[str, Any]:
    """A canary of the demo agent, started once: the same prompt asking for a one-sentence summary."""
    agent = AgentConfig.objects.get(name=DEFAULT_AGENT)
    rollout = Rollout.objects.filter(agent=agent).order_by("started_at").first()
    if rollout is None:
        canary = agent_propose(
            agent=agent,
            values={"instructions": f"{DEFAULT_INSTRUCTIONS} Keep that summary to one sentence."},
            user=None,
            comment="demo canary: a one-sentence summary",
        )
        rollout = rollout_start(
            canary=canary,
            percent=DEMO_CANARY_PERCENT,
            user=None,
            reason="demo: does a one-sentence summary do as well as the current prompt?",
            settings={"auto_rollback": True, "min_finished_tasks": 50},
        )
    return {
        "id": rollout.pk,
        "state": rollout.state,
        "stable": rollout.stable.number,
        "canary": rollout.canary.number,
        "percent": str(rollout.canary_percent),
    }
