"""What an API token may do. Every API view names the scope each of its methods needs (`required_scopes`); a
token reaches a method only with that scope, and the user behind it keeps only the Django permissions its scopes
cover (see access/authentication.py), so a scope can narrow what a user may do and never widen it."""

from __future__ import annotations

from django.db import models


class Scope(models.TextChoices):
    TASKS_SUBMIT = "tasks:submit", "Submit tasks"
    TASKS_READ = "tasks:read", "Read its own tasks"
    TASKS_CANCEL = "tasks:cancel", "Cancel its own tasks"
    APPROVALS_DECIDE = "approvals:decide", "Decide approvals"
    QUEUE_WORK = "queue:work", "Act on the manual queue (every client's tasks)"
    WEBHOOKS_MANAGE = "webhooks:manage", "Register and manage its webhook endpoints"


# What a client service needs; the default for a new token.
CLIENT_SCOPES = (Scope.TASKS_SUBMIT, Scope.TASKS_READ, Scope.TASKS_CANCEL, Scope.WEBHOOKS_MANAGE)

# The Django permissions a token's user keeps, by scope: any permission not listed for one of the token's scopes
# is withheld, whatever the user's groups grant.
SCOPE_PERMISSIONS: dict[str, frozenset[str]] = {
    Scope.TASKS_SUBMIT: frozenset({"agent_runtime.force_agent_version"}),
    Scope.TASKS_READ: frozenset(),
    Scope.TASKS_CANCEL: frozenset(),
    Scope.APPROVALS_DECIDE: frozenset({"orchestration.decide_approval", "orchestration.override_claim"}),
    Scope.QUEUE_WORK: frozenset(
        {"orchestration.work_queue", "orchestration.assign_task", "orchestration.override_claim"}
    ),
    Scope.WEBHOOKS_MANAGE: frozenset(),
}


def permissions_of(scopes: frozenset[str]) -> frozenset[str]:
    return frozenset().union(*(SCOPE_PERMISSIONS.get(scope, frozenset()) for scope in scopes))


def scopes_invalid(scopes: object) -> str | None:
    """Why `scopes` is not a list of known scopes, or None."""
    if not isinstance(scopes, list) or not all(isinstance(scope, str) for scope in scopes):
        return "scopes must be a list of scope names"
    unknown = sorted(set(scopes) - set(Scope.values))
    if unknown:
        return f"unknown scopes: {', '.join(unknown)}; known: {', '.join(Scope.values)}"
    return None
