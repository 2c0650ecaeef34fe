"""The vault: what a redaction token stands for, encrypted, for the tools that need the real value."""

from __future__ import annotations

from django.db import models


class VaultedValue(models.Model):
    """One sensitive value behind its token, within a scope (a session, or a task), encrypted (Fernet).

    Nothing shows it: the admin, the API, snapshots and logs carry the token. Only a tool call resolves it, so the
    adapter gets the value the model referred to."""

    scope = models.CharField(max_length=300)
    token = models.CharField(max_length=300)
    ciphertext = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["scope", "token"], name="vaulted_value_scope_token")]

    def __str__(self) -> str:
        return f"{self.token} ({self.scope})"
