"""Issuing, rotating, revoking and checking API tokens. A key is shown once, when it is made; only its digest is
kept."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from access.models import ApiToken, new_token_key, token_digest
from access.scopes import scopes_invalid

# last_used_at is written at most this often per token: a write per request would cost every call a commit.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenInvalid(ValueError):
    """The token request cannot be honoured (unknown scope, already revoked, ...); the message says why."""


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    key: str  # the only time the key exists outside the client


def token_issue(
    *,
    user: User,
    name: str,
    scopes: list[str],
    expires_at: datetime | None = None,
    rate_per_minute: int | None = None,
    created_by: User | None = None,
) -> IssuedToken:
    problem = scopes_invalid(scopes)
    if problem:
        raise TokenInvalid(problem)
    if not scopes:
        raise TokenInvalid("a token needs at least one scope")
    if expires_at is not None and expires_at <= timezone.now():
        raise TokenInvalid("the expiry must be in the future")
    key = new_token_key()
    token = ApiToken(
        user=user,
        name=name,
        scopes=sorted(set(scopes)),
        expires_at=expires_at,
        rate_per_minute=rate_per_minute,
        created_by=created_by,
    )
    token.set_key(key)
    token.save()
    return IssuedToken(token, key)


def token_rotate(*, token_id: int, actor: User | None) -> IssuedToken:
    """A new key with the same user, scopes and limits; the old key keeps working for
    API_TOKEN_ROTATION_OVERLAP_SECONDS, so the client can switch without an outage, then expires."""
    with transaction.atomic():
        old = ApiToken.objects.select_for_update().get(pk=token_id)
        if not old.usable_at(timezone.now()):
            raise TokenInvalid(f"token {old} is {old.status}: issue a new one instead")
        if old.replaced_by_id is not None:
            raise TokenInvalid(f"token {old} was already rotated")
        issued = token_issue(
            user=old.user,
            name=old.name,
            scopes=list(old.scopes),
            expires_at=old.expires_at,
            rate_per_minute=old.rate_per_minute,
            created_by=actor,
        )
        overlap_end = timezone.now() + timedelta(seconds=settings.API_TOKEN_ROTATION_OVERLAP_SECONDS)
        old.expires_at = min(old.expires_at, overlap_end) if old.expires_at else overlap_end
        old.replaced_by = issued.token
        old.save(update_fields=["expires_at", "replaced_by"])
    return issued


def token_revoke(*, token_id: int, reason: str) -> ApiToken:
    with transaction.atomic():
        token = ApiToken.objects.select_for_update().get(pk=token_id)
        if token.revoked_at is None:
            token.revoked_at, token.revoked_reason = timezone.now(), reason[:500]
            token.save(update_fields=["revoked_at", "revoked_reason"])
    return token


def token_authenticate(key: str) -> ApiToken | None:
    """The usable token with this key (its user loaded), or None; notes when it was used."""
    token = ApiToken.objects.select_related("user").filter(digest=token_digest(key)).first()
    now = timezone.now()
    if token is None:
        return None
    if token.usable_at(now) and (token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
