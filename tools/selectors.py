"""Reads of contracts: what calls are checked against and what the agent sees."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

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


def _pinned_version(name: str, number: int) -> ToolContractVersion | None:
    return ToolContractVersion.objects.select_related("contract").filter(contract__name=name, number=number).first()


def _with_current_safety(pinned: Contract, current: Contract) -> Contract:
    """A pinned version's schemas, timeout, errors and retries, under the current version's switch, approval rule
    and sensitive fields: disabling a tool, or tightening its approval or redaction, applies to pinned runs too."""
    return dataclasses.replace(
        pinned,
        enabled=current.enabled,
        approval_mode=current.approval_mode,
        approval_rule=current.approval_rule,
        sensitive_fields=current.sensitive_fields,
    )


def contract_at(name: str, pinned: Mapping[str, int]) -> Contract | None:
    """The contract a run checks and runs the tool's calls against: the version its agent version pins, if it pins
    one (a canary pairing a prompt change with a contract change), else the current one."""
    current = active_contract(name)
    if name not in pinned or current is None:
        return current
    version = _pinned_version(name, pinned[name])
    return _with_current_safety(Contract.from_version(version), current) if version else None


def tool_specs(pinned: Mapping[str, int] | None = None) -> tuple[ToolSpec, ...]:
    """What the agent sees: name, description and strict parameter schema of every enabled tool, each as its
    pinned contract version says (`pinned`: tool name to version number), else as its current one does."""
    contracts = {version.contract.name: Contract.from_version(version) for version in _current_versions()}
    for name, number in (pinned or {}).items():
        version = _pinned_version(name, number)
        if version is not None and name in contracts:
            contracts[name] = _with_current_safety(Contract.from_version(version), contracts[name])
    shown = [contracts[name] for name in sorted(contracts)]
    return tuple(
        contract.spec() for contract in shown if contract.enabled and adapter_for(contract.adapter) is not None
    )
