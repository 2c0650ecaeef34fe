"""A contract version as plain, immutable data: what the call path, the runtime and the orchestrator read."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from agents.strict_schema import ensure_strict_json_schema

from tools.errors import SHARED_ERROR_CODES, ErrorCodeSpec, RecoveryAction
from tools.models import ApprovalMode, ToolContractVersion
from tools.policy import CircuitPolicy, RetryPolicy
from tools.spec import ToolSpec


@dataclass(frozen=True)
class Contract:
    name: str
    adapter: str
    version_id: int
    version: int
    description: str
    parameters_schema: dict[str, Any]
    result_schema: dict[str, Any]
    error_codes: dict[str, ErrorCodeSpec]
    """The tool's own codes and the shared ones."""
    timeout_seconds: float
    retry: RetryPolicy
    circuit: CircuitPolicy
    approval_mode: str
    approval_rule: dict[str, Any] | None
    sensitive_fields: tuple[str, ...] = field(default_factory=tuple)
    enabled: bool = True

    @classmethod
    def from_version(cls, version: ToolContractVersion) -> Contract:
        own = {
            entry["code"]: ErrorCodeSpec(
                entry["code"], entry["meaning"], entry["retryable"], RecoveryAction(entry["action"])
            )
            for entry in version.error_codes
        }
        return cls(
            name=version.contract.name,
            adapter=version.contract.adapter,
            version_id=version.pk,
            version=version.number,
            description=version.description,
            parameters_schema=version.parameters_schema,
            result_schema=version.result_schema,
            error_codes={**own, **SHARED_ERROR_CODES},
            timeout_seconds=version.timeout_seconds,
            retry=RetryPolicy(version.retry_max, version.retry_base_seconds, version.retry_cap_seconds),
            circuit=CircuitPolicy(
                version.circuit_failure_threshold, version.circuit_window_seconds, version.circuit_open_seconds
            ),
            approval_mode=version.approval_mode,
            approval_rule=version.approval_rule,
            sensitive_fields=tuple(version.sensitive_fields or ()),
            enabled=version.enabled,
        )

    @cached_property
    def strict_parameters_schema(self) -> dict[str, Any]:
        """Exactly the schema the model is shown, and the one arguments are checked against."""
        return ensure_strict_json_schema(copy.deepcopy(self.parameters_schema))

    def spec(self) -> ToolSpec:
        return ToolSpec(name=self.name, description=self.description, parameters_schema=self.strict_parameters_schema)

    def recovery_for(self, error_code: str) -> tuple[RecoveryAction, str]:
        """What the orchestrator does with a failure of this code, and the dictionary rule that says so.
        A code missing from the dictionary is fatal."""
        spec = self.error_codes.get(error_code)
        if spec is None:
            return (
                RecoveryAction.FATAL,
                f"{self.name} v{self.version}: {error_code} is not in its error dictionary: fatal",
            )
        rule = f"{self.name} v{self.version} error dictionary: {error_code} ({spec.meaning}) -> {spec.action}"
        return spec.action, rule

    def approval_reason(self, arguments: dict[str, Any]) -> str | None:
        """Why this call needs a human's approval first, or None."""
        if self.approval_mode == ApprovalMode.ALWAYS:
            return f"{self.name} always needs approval"
        if self.approval_mode == ApprovalMode.RULE and self.approval_rule:
            value = arguments.get(self.approval_rule["field"])
            if isinstance(value, int | float) and not isinstance(value, bool) and value > self.approval_rule["above"]:
                return f"{self.name}: {self.approval_rule['field']} {value} is above {self.approval_rule['above']}"
        return None
