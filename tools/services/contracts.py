"""Contract versions: every edit or restore creates the next immutable version and makes it current."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db.models import F

from lib.versioning import ConfigInvalid, Problems, Versioning
from tools.adapters.base import registered_adapters
from tools.adapters.handoff import HANDOFF_TOOL
from tools.metrics import CONTRACT_VIOLATIONS
from tools.models import ToolContract, ToolContractVersion
from tools.validation import contract_problems

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


class ContractInvalid(ConfigInvalid):
    """Contract values refused: `problems` names each field (and the path in it) and what is wrong."""


def identity_problems(name: str, values: dict[str, Any]) -> Problems:
    if name == HANDOFF_TOOL and not values["enabled"]:
        return {"enabled": ["every agent must always be able to hand a task to a human"]}
    return {}


def _problems(contract: ToolContract, values: dict[str, Any]) -> Problems:
    return contract_problems(values) | identity_problems(contract.name, values)


CONTRACT_VERSIONS: Versioning[ToolContract, ToolContractVersion] = Versioning(
    owner_model=ToolContract,
    version_model=ToolContractVersion,
    owner_field="contract",
    fields=VERSIONED_FIELDS,
    problems=_problems,
    invalid=ContractInvalid,
)


def version_values(version: ToolContractVersion) -> dict[str, Any]:
    return CONTRACT_VERSIONS.values(version)


def contract_update(
    *, contract: ToolContract, values: dict[str, Any], user: User | None, comment: str = ""
) -> ToolContractVersion:
    """Validate and save `values` as the contract's next version; the next planned call uses it."""
    return CONTRACT_VERSIONS.update(owner=contract, values=values, user=user, comment=comment)


def contract_create(*, name: str, adapter: str, values: dict[str, Any], user: User | None) -> ToolContract:
    return CONTRACT_VERSIONS.create(owner=ToolContract(name=name, adapter=adapter), values=values, user=user)


def contract_restore(*, version: ToolContractVersion, user: User | None) -> ToolContractVersion:
    """Make an old version current again, as a new version (history is never rewritten)."""
    return CONTRACT_VERSIONS.restore(version=version, user=user)


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
    return CONTRACT_VERSIONS.diff(version)
