"""API tokens in the admin: issue (the key is shown once), rotate (the old key keeps working for the overlap),
revoke. Never deleted, so who had access, and when it ended, stays visible."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from access.models import ApiToken
from access.scopes import Scope
from access.services import TokenInvalid, token_issue, token_revoke, token_rotate


class ApiTokenForm(forms.ModelForm[ApiToken]):
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=ApiToken.default_scopes,
        help_text="A client service needs submit, read, cancel and webhooks; operators' tools may need more.",
    )

    class Meta:
        model = ApiToken
        fields = ["user", "name", "scopes", "expires_at", "rate_per_minute"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin[ApiToken]):
    form = ApiTokenForm
    list_display = ["name", "user", "hint", "scope_list", "status", "expires_at", "last_used_at", "created_at"]
    list_filter = ["revoked_at", "expires_at"]
    search_fields = ["name", "user__username", "hint"]
    list_select_related = ["user"]
    actions = ["rotate_tokens", "revoke_tokens"]
    readonly_fields = ["hint", "last_used_at", "revoked_at", "revoked_reason", "replaced_by", "created_by"]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        # A token's owner never changes: a key handed to one client must not start acting for another.
        return [*self.readonly_fields, "user"] if obj is not None else list(self.readonly_fields)

    def has_delete_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return False

    @admin.display(description="scopes")
    def scope_list(self, token: ApiToken) -> str:
        return ", ".join(token.scopes)

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        issued = token_issue(
            user=obj.user,
            name=obj.name,
            scopes=list(obj.scopes),
            expires_at=obj.expires_at,
            rate_per_minute=obj.rate_per_minute,
            created_by=request.user,  # type: ignore[arg-type]
        )
        obj.__dict__.update(issued.token.__dict__)  # the admin goes on with the row the service created
        self._show_key_once(request, issued.key)

    def _show_key_once(self, request: HttpRequest, key: str) -> None:
        self.message_user(request, f"The new key, shown only now (only its digest is kept): {key}", messages.WARNING)

    @admin.action(description="Rotate: a new key; the old one keeps working for the overlap, then expires")
    def rotate_tokens(self, request: HttpRequest, tokens: QuerySet[ApiToken]) -> None:
        for token in tokens:
            try:
                issued = token_rotate(token_id=token.pk, actor=request.user)  # type: ignore[arg-type]
            except TokenInvalid as exc:
                self.message_user(request, str(exc), messages.ERROR)
                continue
            self._show_key_once(request, issued.key)

    @admin.action(description="Revoke: the key stops working now")
    def revoke_tokens(self, request: HttpRequest, tokens: QuerySet[ApiToken]) -> None:
        for token in tokens:
            token_revoke(token_id=token.pk, reason=f"revoked in the admin by {request.user}")
        self.message_user(request, f"Revoked {len(tokens)} token(s).", messages.SUCCESS)
