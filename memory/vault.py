"""Protect and reveal: redact a value for storage and display, keeping what each token stands for in the vault.

Everything the platform stores or shows passes through `protect` (submissions, model requests and answers, tool
arguments and results, decisions, reasons): the model only ever reads tokens, so a replay gives it the same bytes
as the first run. `reveal` is for one place only, the moment a tool runs: the adapter gets the real value behind
each token the model passed on.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import IntegrityError, transaction

from lib.redaction import TOKEN, Found, platform_redactor
from lib.strict_json import loads_strict
from memory.models import VaultedValue


def redaction_scope(*, owner_id: int, session_id: str, task_id: str) -> str:
    """Tokens are stable within one client's session (its tasks share memory and name one card alike), else
    within one task."""
    return f"session:{owner_id}:{session_id}" if session_id else task_scope(task_id)


def task_scope(task_id: str) -> str:
    """The scope of a task outside any session: its tokens are its alone, and go when the task goes."""
    return f"task:{task_id}"


@lru_cache(maxsize=1)
def vault_fernet() -> Fernet:
    """REDACTION_VAULT_KEY if set (a Fernet key), else one derived from SECRET_KEY. Also seals what else is kept
    encrypted at rest (webhook secrets)."""
    if settings.REDACTION_VAULT_KEY:
        return Fernet(settings.REDACTION_VAULT_KEY.encode())
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"redaction vault").derive(
        settings.SECRET_KEY.encode()
    )
    return Fernet(base64.urlsafe_b64encode(derived))


def protect(value: Any, *, scope: str, sensitive_paths: Iterable[str] = ()) -> Any:
    """`value` redacted; what each new token replaced goes into the vault under `scope`."""
    found: Found = {}
    redacted = platform_redactor().value(value, scope=scope, sensitive_paths=sensitive_paths, found=found)
    _vault(scope, found)
    return redacted


def protect_text(text: str, *, scope: str) -> str:
    found: Found = {}
    redacted = platform_redactor().text(text, scope=scope, found=found)
    _vault(scope, found)
    return redacted


def protect_answer(
    response: dict[str, Any], *, scope: str, sensitive_fields: Callable[[str], Iterable[str]]
) -> dict[str, Any]:
    """A model's answer redacted, each tool call's arguments with that tool's sensitive fields replaced whole."""
    items = []
    for item in response.get("output") or []:
        if item.get("type") == "function_call" and isinstance(item.get("arguments"), str):
            paths = tuple(sensitive_fields(str(item.get("name"))))
            item = {**item, "arguments": _protected_arguments(item["arguments"], scope=scope, paths=paths)}
        items.append(item)
    return dict(protect({**response, "output": items}, scope=scope))


def _protected_arguments(arguments: str, *, scope: str, paths: tuple[str, ...]) -> str:
    try:
        parsed = loads_strict(arguments)
    except ValueError:
        return protect_text(arguments, scope=scope)  # not JSON: redacted as text
    return json.dumps(protect(parsed, scope=scope, sensitive_paths=paths))


def reveal_arguments(arguments: str, *, scope: str) -> str:
    """A tool call's arguments (JSON text) with the values behind their tokens, for the adapter."""
    try:
        parsed = loads_strict(arguments)
    except ValueError:
        return arguments  # not JSON: the call path answers INVALID_ARGUMENTS
    return json.dumps(reveal(parsed, scope=scope))


def reveal(value: Any, *, scope: str) -> Any:
    """`value` with each token of `scope` replaced by what it stands for (tokens the vault does not know stay)."""
    tokens = set(_tokens_in(value))
    if not tokens:
        return value
    known = {}
    for row in VaultedValue.objects.filter(scope=scope, token__in=tokens):
        try:
            known[row.token] = json.loads(vault_fernet().decrypt(row.ciphertext.encode()))
        except InvalidToken:
            continue  # vaulted under another key (SECRET_KEY rotated): the token stays a token
    return _replaced(value, known)


def _vault(scope: str, found: Found) -> None:
    if not found:
        return
    have = set(VaultedValue.objects.filter(scope=scope, token__in=found).values_list("token", flat=True))
    for token, original in found.items():
        if token in have:
            continue
        ciphertext = vault_fernet().encrypt(json.dumps(original).encode()).decode()
        try:
            with transaction.atomic():
                VaultedValue.objects.create(scope=scope, token=token, ciphertext=ciphertext)
        except IntegrityError:
            pass  # another process vaulted the same value (same token) first


def _tokens_in(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield from TOKEN.findall(value)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tokens_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _tokens_in(item)


def _replaced(value: Any, known: dict[str, Any]) -> Any:
    if isinstance(value, str):
        if value in known:
            return known[value]  # a whole field: its value as it was, a number stays a number
        return TOKEN.sub(lambda match: _as_text(known.get(match.group(), match.group())), value)
    if isinstance(value, dict):
        return {name: _replaced(item, known) for name, item in value.items()}
    if isinstance(value, list):
        return [_replaced(item, known) for item in value]
    return value


def _as_text(original: Any) -> str:
    return original if isinstance(original, str) else json.dumps(original)
