"""API tokens: stored as a SHA-256 digest only, scoped, expiring, revocable, rotated with an overlap."""

from __future__ import annotations

import copy
import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import models
from django.utils import timezone

from access.scopes import CLIENT_SCOPES, Scope, permissions_of

TOKEN_PREFIX = "aop_"


def token_digest(key: str) -> str:
    """What is stored of a key. A key carries 256 random bits, so a fast hash is enough: nobody can guess one from
    its digest, and a slow password hash would cost every request tens of milliseconds."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_token_key() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What the token is for, e.g. the client service's name")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    # The key's first characters, shown in the admin and logs so a token can be recognised; never enough to use.
    hint = models.CharField(max_length=16, editable=False)
    # A JSON list of Scope values (JSON, not an array column: the embedded mode runs on SQLite).
    scopes = models.JSONField(default=list, help_text="What the token may do")
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires")
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_reason = models.CharField(max_length=500, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    replaced_by = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replaces", editable=False
    )
    # Requests per minute for this token; empty: API_THROTTLE_RATE.
    rate_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests per minute; empty: the platform's default (API_THROTTLE_RATE)"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )

    class Meta:
        verbose_name = "API token"
        indexes = [models.Index(fields=["user", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.hint}…)"

    def set_key(self, key: str) -> None:
        self.digest, self.hint = token_digest(key), key[: len(TOKEN_PREFIX) + 6]

    def usable_at(self, moment: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > moment)

    @property
    def status(self) -> str:
        now = timezone.now()
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    @classmethod
    def default_scopes(cls) -> list[str]:
        return [str(scope) for scope in CLIENT_SCOPES]


class TokenUser(User):
    """The user behind a token, as a request sees it: it keeps only the permissions its token's scopes cover, is
    staff only with the queue scope, reaches no admin module, and is never saved (it is a view, not a row)."""

    token_scopes: frozenset[str] = frozenset()

    class Meta:
        proxy = True
        default_permissions = ()

    def has_perm(self, perm: str, obj: models.Model | None = None) -> bool:
        return perm in permissions_of(self.token_scopes) and super().has_perm(perm, obj)

    def has_perms(self, perm_list: Iterable[str], obj: models.Model | None = None) -> bool:
        return all(self.has_perm(perm, obj) for perm in perm_list)

    def has_module_perms(self, app_label: str) -> bool:
        return False

    def save(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a token's view of its user is read-only; save the User itself")

    @classmethod
    def of(cls, user: User, scopes: Iterable[str]) -> TokenUser:
        viewed = copy.copy(user)
        viewed.__class__ = cls
        assert isinstance(viewed, TokenUser)
        viewed.token_scopes = frozenset(scopes)
        viewed.is_staff = user.is_staff and Scope.QUEUE_WORK in viewed.token_scopes
        return viewed
