"""Contract versions: every edit or restore creates the next immutable version and makes it current."""

from __future__ import annotations

import difflib
import json
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F, Max

from tools.adapters.base import registered_adapters
from tools.adapters.handoff import HANDOFF_TOOL
from tools.metrics import CONTRACT_VIOLATIONS
from tools.models import ToolContract, ToolContractVersion
from tools.validation import Problems, contract_problems

VERSIONED_FIELDS = (
    "description",
    "parameters_schema",
    "result_schema",
    "error_codes",
    "timeout_seconds",
    "retry_max",
    "retry_base_seconds",
    "retry_cap_seconds",
    "circuit_failure_threshold",
    "circuit_window_seconds",
    "circuit_open_seconds",
    "approval_mode",
    "approval_rule",
    "sensitive_fields",
    "enabled",
)
_DEFAULTS: dict[str, Any] = {
    field.name: field.get_default() for field in ToolContractVersion._meta.fields if field.name in VERSIONED_FIELDS
}


class ContractInvalid(Exception):
    def __init__(self, problems: Problems) -> None:
        super().__init__("; ".join(f"{field}: {', '.join(found)}" for field, found in problems.items()))
        self.problems = problems


def version_values(version: ToolContractVersion) -> dict[str, Any]:
    return {name: getattr(version, name) for name in VERSIONED_FIELDS}


def contract_update(
    *, contract: ToolContract, values: dict[str, Any], user: User | None, comment: str = ""
) -> ToolContractVersion:
    """Validate and save `values` as the contract's next version; the next planned call uses it."""
    merged = {**_DEFAULTS, **(version_values(contract.current) if contract.current else {}), **values}
    problems = contract_problems(merged) | identity_problems(contract.name, merged)
    if problems:
        raise ContractInvalid(problems)
    with transaction.atomic():
        locked = ToolContract.objects.select_for_update().get(pk=contract.pk)
        number = (locked.versions.aggregate(top=Max("number"))["top"] or 0) + 1
        version = ToolContractVersion.objects.create(
            contract=locked, number=number, created_by=user, comment=comment, **merged
        )
        locked.current = version
        locked.save(update_fields=["current"])
    contract.current = version
    return version


def identity_problems(name: str, values: dict[str, Any]) -> Problems:
    if name == HANDOFF_TOOL and not values["enabled"]:
        return {"enabled": ["every agent must always be able to hand a task to a human"]}
    return {}


def contract_create(*, name: str, adapter: str, values: dict[str, Any], user: User | None) -> ToolContract:
    problems = contract_problems({**_DEFAULTS, **values})
    if problems:
        raise ContractInvalid(problems)
    with transaction.atomic():
        contract = ToolContract.objects.create(name=name, adapter=adapter)
        contract_update(contract=contract, values=values, user=user, comment="created")
    return contract


def contract_restore(*, version: ToolContractVersion, user: User | None) -> ToolContractVersion:
    """Make an old version current again, as a new version (history is never rewritten)."""
    return contract_update(
        contract=version.contract, values=version_values(version), user=user, comment=f"restored v{version.number}"
    )


def contracts_install_defaults() -> int:
    """Create a contract from its adapter's defaults for every adapter that has none yet."""
    existing = set(ToolContract.objects.values_list("adapter", flat=True))
    created = 0
    for adapter in registered_adapters():
        if adapter.name not in existing:
            contract_create(name=adapter.name, adapter=adapter.name, values=adapter.default_contract(), user=None)
            created += 1
    return created


def contract_violation_record(*, tool: str, detail: str) -> None:
    """Count a result that broke its contract; the admin shows the count and the last one."""
    CONTRACT_VIOLATIONS.labels(tool=tool).inc()
    ToolContract.objects.filter(name=tool).update(
        contract_violations=F("contract_violations") + 1, last_violation=detail[:2000]
    )


def version_diff(version: ToolContractVersion) -> str:
    """A unified diff of this version against the one before it."""
    previous = version.contract.versions.filter(number__lt=version.number).order_by("-number").first()
    before = _as_text(version_values(previous)) if previous else []
    after = _as_text(version_values(version))
    label = f"v{previous.number}" if previous else "(nothing)"
    return "".join(difflib.unified_diff(before, after, fromfile=label, tofile=f"v{version.number}"))


def _as_text(values: dict[str, Any]) -> list[str]:
    return [line + "\n" for line in json.dumps(values, indent=2, sort_keys=True).splitlines()]
