"""The vault: what a redaction token stands for, encrypted, for the tools that need the real value."""

from __future__ import annotations

from django.conf import settings
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


class Session(models.Model):
    """One client's conversation across tasks (tasks submitted with one `session_id`): its memory, two layers.

    A task recalls it once, when it starts (journalled), and merges what it learnt back when it settles, under a
    row lock, so two tasks of one session never lose each other's facts. `version` counts those merges."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memory_sessions")
    session_id = models.CharField(max_length=255)
    version = models.PositiveIntegerField(default=0)
    turns = models.PositiveIntegerField(default=0, help_text="Model turns the session's tasks have had")
    facts = models.JSONField(default=list, help_text="The summary: [{text, turn}], oldest first, within its cap")
    window = models.JSONField(default=list, help_text="The last turns: [{task, items}], oldest first")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["owner", "session_id"], name="memory_session_owner_id")]

    def __str__(self) -> str:
        return f"{self.session_id} (v{self.version})"


class SessionWrite(models.Model):
    """One task's merge into its session: what it added, and what the summary's cap pushed out."""

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="writes")
    task_id = models.CharField(max_length=64, db_index=True)
    version = models.PositiveIntegerField(help_text="The session's version this merge made")
    learnt = models.JSONField(default=list)
    dropped = models.JSONField(default=list)
    turns = models.PositiveIntegerField(default=0, help_text="The task's model turns, as of this merge")
    digest = models.CharField(max_length=64, help_text="Of what the task contributed: an unchanged task merges once")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.session} by task {self.task_id}"
