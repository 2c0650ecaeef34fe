"""Reads of contracts: what calls are checked against and what the agent sees."""

from __future__ import annotations

from django.db.models import F, QuerySet

from tools.adapters.base import adapter_for
from tools.contract import Contract
from tools.models import ToolContractVersion
from tools.spec import ToolSpec


def _current_versions() -> QuerySet[ToolContractVersion]:
    return ToolContractVersion.objects.select_related("contract").filter(contract__current_id=F("id"))


def active_contract(name: str) -> Contract | None:
    """The current version of the tool's contract, enabled or not; None if there is no such tool."""
    version = _current_versions().filter(contract__name=name).first()
    return Contract.from_version(version) if version else None


def tool_specs() -> tuple[ToolSpec, ...]:
    """What the agent sees: name, description and strict parameter schema of every enabled tool."""
    contracts = [Contract.from_version(version) for version in _current_versions().order_by("contract__name")]
    return tuple(
        contract.spec() for contract in contracts if contract.enabled and adapter_for(contract.adapter) is not None
    )
