"""Versioned configurations: an owner row whose every edit, or restore, is the next immutable version.

Agents (AgentConfig / AgentVersion) and tool contracts (ToolContract / ToolContractVersion) are versioned this
way, so that work keeps the version it started with and an operator can see, compare and undo every change.
A new user of the mechanism needs three things:

- an owner model with a nullable foreign key to its current version (`current`, `on_delete=PROTECT`,
  `related_name="+"`): the version new work gets;
- a version model that inherits `ConfigVersion`, with a foreign key to its owner, a unique constraint on
  (owner, number), and one column per versioned field;
- a `Versioning` naming the two models, the versioned fields and the rules their values must follow, kept in
  the owner's services module, whose `<thing>_update/_create/_restore` services delegate to it.

History is never rewritten: a restore is a new version carrying an old one's values.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.conf import settings
from django.contrib.auth.models import User
from django.db import models, transaction
from django.db.models import Max

Problems = dict[str, list[str]]
"""Field name -> what is wrong with its value; empty when nothing is."""


class ConfigVersion(models.Model):
    """The columns every version has besides its owner and its versioned fields. Rows are never updated."""

    number = models.PositiveIntegerField()
    comment = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True


class ConfigInvalid(Exception):
    """Values a version may not have. Each user subclasses it, so callers can tell whose values were refused."""

    def __init__(self, problems: Problems) -> None:
        super().__init__("; ".join(f"{field}: {', '.join(found)}" for field, found in problems.items()))
        self.problems = problems


Owner = TypeVar("Owner", bound=models.Model)
Version = TypeVar("Version", bound=ConfigVersion)


@dataclass(frozen=True)
class Versioning(Generic[Owner, Version]):
    """How one kind of configuration is versioned: one instance per kind, kept beside its services."""

    owner_model: type[Owner]
    version_model: type[Version]
    owner_field: str
    """The version's foreign key to its owner (`agent`, `contract`)."""
    fields: tuple[str, ...]
    """The versioned columns: what an edit may change, what a restore copies, what a diff compares."""
    problems: Callable[[Owner, dict[str, Any]], Problems]
    """What is wrong with a complete set of values for this owner; on create the owner is not saved yet."""
    invalid: type[ConfigInvalid] = ConfigInvalid
    """Raised with the problems."""
    current_field: str = "current"
    """The owner's foreign key to its current version."""
    before_current: Callable[[Owner], None] | None = None
    """Called with the locked owner before an edit or a restore becomes current; raises `invalid` to refuse it
    (agents: not while a canary runs, so that stable does not move under the comparison)."""

    def values(self, version: Version) -> dict[str, Any]:
        return {name: getattr(version, name) for name in self.fields}

    def current(self, owner: Owner) -> Version | None:
        version: Version | None = getattr(owner, self.current_field)
        return version

    def update(self, *, owner: Owner, values: Mapping[str, Any], user: User | None, comment: str = "") -> Version:
        """Save the current values with `values` over them as the owner's next version, and make it current.

        Raises `invalid` (nothing saved) if the result breaks the rules."""
        with transaction.atomic():
            # The lock orders concurrent edits: each gets its own number, and each merges over the version
            # that is current once it holds the lock, so no edit silently undoes another's fields.
            locked = self.owner_model._default_manager.select_for_update().get(pk=owner.pk)
            if self.before_current is not None:
                self.before_current(locked)
            merged = self._complete(locked, values)
            version = self._append(locked, merged, user=user, comment=comment)
        setattr(owner, self.current_field, version)
        return version

    def propose(self, *, owner: Owner, values: Mapping[str, Any], user: User | None, comment: str = "") -> Version:
        """Save the current values with `values` over them as the owner's next version, leaving the current one
        current: a candidate that a rollout can then send a share of new work to (agents' canaries).

        Raises `invalid` (nothing saved) if the result breaks the rules."""
        with transaction.atomic():
            locked = self.owner_model._default_manager.select_for_update().get(pk=owner.pk)
            return self._append(locked, self._complete(locked, values), user=user, comment=comment, make_current=False)

    def make_current(self, *, version: Version) -> None:
        """Make an existing version the one new work gets (a promoted canary); no new version is written."""
        owner: Owner = getattr(version, self.owner_field)
        setattr(owner, self.current_field, version)
        owner.save(update_fields=[self.current_field])

    def create(self, *, owner: Owner, values: Mapping[str, Any], user: User | None, comment: str = "created") -> Owner:
        """Save a new (unsaved) owner and its first version, or neither."""
        merged = self._complete(owner, values)
        with transaction.atomic():
            owner.save()
            self._append(owner, merged, user=user, comment=comment)
        return owner

    def restore(self, *, version: Version, user: User | None) -> Version:
        """Make an old version's values current again, as the owner's next version."""
        owner: Owner = getattr(version, self.owner_field)
        return self.update(owner=owner, values=self.values(version), user=user, comment=f"restored v{version.number}")

    def diff(self, version: Version) -> str:
        """A unified diff of this version's values against the version before it ("" when they are equal)."""
        owner_id = f"{self.owner_field}_id"
        previous = (
            self.version_model._default_manager.filter(
                **{owner_id: getattr(version, owner_id)}, number__lt=version.number
            )
            .order_by("-number")
            .first()
        )
        before = _as_lines(self.values(previous)) if previous else []
        label = f"v{previous.number}" if previous else "(nothing)"
        return "".join(
            difflib.unified_diff(before, _as_lines(self.values(version)), fromfile=label, tofile=f"v{version.number}")
        )

    def _complete(self, owner: Owner, values: Mapping[str, Any]) -> dict[str, Any]:
        """Field defaults, then the current version's values, then `values`: checked, so it can be saved."""
        unknown = sorted(set(values) - set(self.fields))
        if unknown:
            raise self.invalid({name: ["not a versioned field"] for name in unknown})
        current = self.current(owner)
        merged = {**self._defaults(), **(self.values(current) if current else {}), **values}
        problems = self.problems(owner, merged)
        if problems:
            raise self.invalid(problems)
        return merged

    def _defaults(self) -> dict[str, Any]:
        # Per call: a JSONField's default is a fresh dict or list each time, never shared between versions.
        return {
            field.name: field.get_default()
            for field in self.version_model._meta.concrete_fields
            if field.name in self.fields
        }

    def _append(
        self, owner: Owner, values: dict[str, Any], *, user: User | None, comment: str, make_current: bool = True
    ) -> Version:
        versions = self.version_model._default_manager.filter(**{self.owner_field: owner})
        number = (versions.aggregate(top=Max("number"))["top"] or 0) + 1
        version = self.version_model._default_manager.create(
            **{self.owner_field: owner}, number=number, created_by=user, comment=comment, **values
        )
        if make_current:
            setattr(owner, self.current_field, version)
            owner.save(update_fields=[self.current_field])
        return version


def _as_lines(values: dict[str, Any]) -> list[str]:
    return [line + "\n" for line in json.dumps(values, indent=2, sort_keys=True, default=str).splitlines()]
