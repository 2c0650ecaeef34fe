"""`Authorization: Bearer <key>` (or DRF's `Token <key>`) against hashed, scoped API tokens."""

from __future__ import annotations

from django.utils import timezone
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from access.models import ApiToken, TokenUser
from access.services import token_authenticate

KEYWORDS = (b"bearer", b"token")  # "Token" is DRF's word, kept for clients written against it


class ScopedTokenAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[TokenUser, ApiToken] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in KEYWORDS:
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("the Authorization header must be 'Bearer <token>'")
        try:
            key = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("invalid token") from None
        token = token_authenticate(key)
        if token is None:
            raise AuthenticationFailed("invalid token")
        if not token.usable_at(timezone.now()):
            raise AuthenticationFailed(f"token {token.status}")
        if not token.user.is_active:
            raise AuthenticationFailed("the token's user is inactive")
        return TokenUser.of(token.user, token.scopes), token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
