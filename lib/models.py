"""Model behaviour shared by the hot tables: a save writes only what changed."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any, Self

from django.db import models


class ChangedFieldsSave(models.Model):
    """`save()` on a row that is already stored writes only the columns that changed since it was read or last
    saved (plus `auto_now` ones), as if the caller had passed `update_fields`.

    Why: a run saves its task and steps at every step boundary, and a full-row UPDATE re-sends every column, the
    step's request snapshot (JSON, often over 10 KB) included. Every such save happens on a row the caller holds
    locked, so nobody else's change can be overwritten or lost by writing less. A caller that passes
    `update_fields`, or a new row, gets Django's own behaviour. Columns never loaded (deferred) stay unwritten
    unless assigned, as with Django. A JSON value read from the database is always written back (a dict can change
    in place, and copying every one read would tax every page that lists rows); one this instance saved is
    compared with a deep copy taken at that save.
    """

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        stored: dict[str, Any] | None = getattr(self, "_stored_values", None)
        if stored is not None and not self._state.adding and not args and _plain(kwargs):
            kwargs["update_fields"] = self._changed_since(stored)
        super().save(*args, **kwargs)
        self._stored_values = self._values_now()

    @classmethod
    def from_db(cls, db: str | None, field_names: Any, values: Any) -> Self:
        instance = super().from_db(db, field_names, values)
        instance._stored_values = instance._values_now(copy_containers=False)
        return instance

    def refresh_from_db(
        self, using: str | None = None, fields: Iterable[str] | None = None, from_queryset: Any = None
    ) -> None:
        fields = list(fields) if fields is not None else None  # read twice: here and by Django
        super().refresh_from_db(using=using, fields=fields, from_queryset=from_queryset)
        stored: dict[str, Any] | None = getattr(self, "_stored_values", None)
        fresh = self._values_now(copy_containers=False)
        if stored is None or fields is None:
            self._stored_values = fresh
            return
        names = set(fields)
        for field in self._meta.concrete_fields:
            if field.name in names or field.attname in names:
                stored.pop(field.attname, None)
                if field.attname in fresh:
                    stored[field.attname] = fresh[field.attname]

    def _values_now(self, *, copy_containers: bool = True) -> dict[str, Any]:
        """What each loaded column holds now; dicts and lists deep-copied, or left out (then always written)."""
        loaded = self.__dict__
        values = {}
        for field in self._meta.concrete_fields:
            if field.attname not in loaded:
                continue
            value = loaded[field.attname]
            if isinstance(value, dict | list):
                if not copy_containers:
                    continue
                value = copy.deepcopy(value)
            values[field.attname] = value
        return values

    def _changed_since(self, stored: dict[str, Any]) -> list[str]:
        loaded = self.__dict__
        return [
            field.name
            for field in self._meta.concrete_fields
            if not field.primary_key
            and field.attname in loaded
            and (
                getattr(field, "auto_now", False)
                or field.attname not in stored
                or loaded[field.attname] != stored[field.attname]
            )
        ]


def _plain(kwargs: dict[str, Any]) -> bool:
    return kwargs.get("update_fields") is None and not kwargs.get("force_insert") and not kwargs.get("force_update")
