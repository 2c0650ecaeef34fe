"""The admin of a versioned configuration's versions (see lib.versioning): read-only, each with its diff
against the one before, and a restore action that makes an old version current again as a new one."""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from lib.versioning import ConfigInvalid, Version, Versioning


class ConfigVersionAdmin(admin.ModelAdmin[Version]):
    """Subclass, set `versioning` (the one the owner's services use) and `list_display`, and register.

    The page shows every column, read-only: the owner, number, who and why, the diff, the versioned fields."""

    versioning: ClassVar[Versioning[Any, Any]]
    actions = ["restore"]
    show_full_result_count = False

    def get_fields(self, request: HttpRequest, obj: Version | None = None) -> tuple[str, ...]:
        owner = self.versioning.owner_field
        return (owner, "number", "created_by", "created_at", "comment", "diff", *self.versioning.fields)

    def get_readonly_fields(self, request: HttpRequest, obj: Version | None = None) -> tuple[str, ...]:
        return self.get_fields(request, obj)

    def get_list_filter(self, request: HttpRequest) -> tuple[str, ...]:
        return (self.versioning.owner_field,)

    def get_list_select_related(self, request: HttpRequest) -> tuple[str, ...]:
        return (self.versioning.owner_field, "created_by")

    @admin.display(description="changes against the previous version")
    def diff(self, version: Version) -> str:
        return format_html(
            '<pre style="white-space: pre-wrap">{}</pre>', self.versioning.diff(version) or "(no change)"
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Version | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Version | None = None) -> bool:
        return False

    def has_restore_permission(self, request: HttpRequest) -> bool:
        """Restoring is editing the owner, so it takes the permission to change the owner."""
        owner = self.versioning.owner_model._meta
        return request.user.has_perm(f"{owner.app_label}.change_{owner.model_name}")

    @admin.action(description="Restore the selected version (as a new version)", permissions=["restore"])
    def restore(self, request: HttpRequest, queryset: QuerySet[Version]) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to restore.", messages.WARNING)
            return
        version = queryset.select_related(self.versioning.owner_field).get()
        try:
            restored = self.versioning.restore(version=version, user=request.user)  # type: ignore[arg-type]
        except ConfigInvalid as invalid:
            self.message_user(request, f"Not restored: {invalid}", messages.ERROR)
            return
        owner = getattr(version, self.versioning.owner_field)
        self.message_user(
            request, f"{owner}: v{version.number} is current again as v{restored.number}.", messages.SUCCESS
        )
