"""The schema registry in the admin: edit a contract (each save is a new version), see what the agent sees,
compare and restore versions, watch and reset circuit breakers. Every write goes through a service."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from lib.versioning_admin import ConfigVersionAdmin
from tools.adapters.base import registered_adapters
from tools.circuit import CLOSED
from tools.contract import Contract
from tools.errors import SHARED_ERROR_CODES
from tools.models import ApprovalMode, ToolCallRecord, ToolContract, ToolContractVersion
from tools.services.circuits import circuit_reset, circuit_state
from tools.services.contracts import (
    CONTRACT_VERSIONS,
    VERSIONED_FIELDS,
    ContractInvalid,
    contract_create,
    contract_update,
    identity_problems,
    version_values,
)
from tools.validation import contract_problems

_JSON = {"widget": forms.Textarea(attrs={"rows": 12, "cols": 100, "style": "font-family: monospace"})}


def _pre(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, indent=2, sort_keys=True)
    return format_html('<pre style="white-space: pre-wrap">{}</pre>', text)


class ToolContractForm(forms.ModelForm[ToolContract]):
    """The contract's identity plus every versioned field, shown from (and saved as) the current version."""

    adapter = forms.ChoiceField(choices=())
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 100}))
    parameters_schema = forms.JSONField(**_JSON)
    result_schema = forms.JSONField(**_JSON)
    error_codes = forms.JSONField(
        help_text="[{code, meaning, retryable, action}]; action is retry, replan, handoff or fatal; "
        f"shared codes ({', '.join(SHARED_ERROR_CODES)}) are defined once for every tool",
        **_JSON,
    )
    timeout_seconds = forms.FloatField()
    retry_max = forms.IntegerField(min_value=0)
    retry_base_seconds = forms.FloatField()
    retry_cap_seconds = forms.FloatField()
    circuit_failure_threshold = forms.IntegerField(min_value=0)
    circuit_window_seconds = forms.IntegerField(min_value=0)
    circuit_open_seconds = forms.IntegerField(min_value=0)
    approval_mode = forms.ChoiceField(choices=ApprovalMode.choices)
    approval_rule = forms.JSONField(required=False, help_text='{"field": "amount_cents", "above": 50000}')
    sensitive_fields = forms.JSONField(required=False, help_text='Parameter paths to redact, e.g. ["address.line1"]')
    enabled = forms.BooleanField(required=False)
    comment = forms.CharField(required=False, max_length=300, help_text="Why this change (kept with the version)")

    class Meta:
        model = ToolContract
        fields = ["name", "adapter"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "adapter" in self.fields:  # only on the add form: a contract's adapter never changes
            self.fields["adapter"].choices = [(a.name, a.name) for a in registered_adapters()]  # type: ignore[attr-defined]
        current = self.instance.current if self.instance.pk else None
        if current is not None:
            for name, value in version_values(current).items():
                self.initial[name] = value

    def versioned_values(self) -> dict[str, Any]:
        values = {name: self.cleaned_data.get(name) for name in VERSIONED_FIELDS}
        values["sensitive_fields"] = values["sensitive_fields"] or []
        return values

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if any(name in self.errors for name in VERSIONED_FIELDS):
            return cleaned  # a field is already malformed (not JSON, not a number): say that first
        values = self.versioned_values()
        name = self.instance.name if self.instance.pk else self.cleaned_data.get("name", "")
        for field, problems in (contract_problems(values) | identity_problems(name, values)).items():
            for problem in problems:
                self.add_error(field if field in self.fields else None, problem)
        return cleaned


@admin.register(ToolContract)
class ToolContractAdmin(admin.ModelAdmin[ToolContract]):
    form = ToolContractForm
    list_display = ["name", "version", "enabled", "circuit", "contract_violations"]
    search_fields = ["name"]
    actions = ["reset_circuits"]
    fieldsets = [
        (None, {"fields": ["name", "adapter"]}),
        ("What the agent sees", {"fields": ["agent_view"]}),
        (
            "Contract (saving creates a new version)",
            {
                "fields": [
                    "description",
                    "parameters_schema",
                    "result_schema",
                    "error_codes",
                    "enabled",
                    "comment",
                ]
            },
        ),
        (
            "Timeout and retries",
            {"fields": ["timeout_seconds", "retry_max", "retry_base_seconds", "retry_cap_seconds"]},
        ),
        (
            "Circuit breaker",
            {
                "fields": [
                    "circuit_detail",
                    "circuit_failure_threshold",
                    "circuit_window_seconds",
                    "circuit_open_seconds",
                ]
            },
        ),
        ("Approval and sensitive data", {"fields": ["approval_mode", "approval_rule", "sensitive_fields"]}),
        ("History", {"fields": ["version_history", "contract_violations", "last_violation"]}),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: ToolContract | None = None) -> list[str]:
        computed = ["agent_view", "circuit_detail", "version_history", "contract_violations", "last_violation"]
        return (["name", "adapter"] if obj is not None else []) + computed

    def get_fieldsets(self, request: HttpRequest, obj: ToolContract | None = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:  # nothing to show about a contract that does not exist yet
            hidden = {"agent_view", "circuit_detail", "version_history", "contract_violations", "last_violation"}
            return [
                (title, {**options, "fields": [f for f in options["fields"] if f not in hidden]})
                for title, options in fieldsets
                if [f for f in options["fields"] if f not in hidden]
            ]
        return fieldsets

    @admin.display(description="version")
    def version(self, contract: ToolContract) -> str:
        return f"v{contract.current.number}" if contract.current else "-"

    @admin.display(description="enabled", boolean=True)
    def enabled(self, contract: ToolContract) -> bool:
        return bool(contract.current and contract.current.enabled)

    @admin.display(description="circuit")
    def circuit(self, contract: ToolContract) -> str:
        return circuit_state(contract.name).status

    @admin.display(description="exactly what the model is shown")
    def agent_view(self, contract: ToolContract) -> str:
        if contract.current is None:
            return "-"
        spec = Contract.from_version(contract.current).spec()
        return _pre({"name": spec.name, "description": spec.description, "parameters": spec.parameters_schema})

    @admin.display(description="circuit state")
    def circuit_detail(self, contract: ToolContract) -> str:
        state = circuit_state(contract.name)
        lines = [f"status: {state.status}"]
        if state.status != CLOSED:
            lines.append(f"open until: {_when(state.open_until)}")
        lines.append(f"failures in the current window: {len(state.failures)}")
        lines += [f"  {_when(failure['at'])}  {failure['code']}" for failure in state.recent]
        return _pre("\n".join(lines))

    @admin.display(description="versions")
    def version_history(self, contract: ToolContract) -> str:
        versions = contract.versions.select_related("created_by").order_by("-number")[:20]
        return format_html_join(
            "",
            '<div><a href="../../toolcontractversion/{}/change/">v{}</a> {} by {} {}</div>',
            (
                (v.pk, v.number, v.created_at.strftime("%Y-%m-%d %H:%M:%S"), v.created_by or "system", v.comment)
                for v in versions
            ),
        )

    def save_model(self, request: HttpRequest, obj: ToolContract, form: Any, change: bool) -> None:
        values, comment = form.versioned_values(), form.cleaned_data.get("comment", "")
        try:
            if change:
                contract_update(contract=obj, values=values, user=request.user, comment=comment)  # type: ignore[arg-type]
            else:
                created = contract_create(name=obj.name, adapter=obj.adapter, values=values, user=request.user)  # type: ignore[arg-type]
                obj.pk, obj.current = created.pk, created.current
                obj._state.adding = False
        except ContractInvalid as invalid:  # the form checked the same rules; this is a race with another edit
            self.message_user(request, f"Not saved: {invalid}", messages.ERROR)

    @admin.action(description="Reset (close) the circuit breaker", permissions=["change"])
    def reset_circuits(self, request: HttpRequest, queryset: QuerySet[ToolContract]) -> None:
        for contract in queryset:
            circuit_reset(contract.name)
        self.message_user(request, f"Closed the circuit of {queryset.count()} tool(s).", messages.SUCCESS)


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@admin.register(ToolContractVersion)
class ToolContractVersionAdmin(ConfigVersionAdmin[ToolContractVersion]):
    """Versions are immutable: viewable, comparable with the one before, restorable as a new version."""

    versioning = CONTRACT_VERSIONS
    list_display = ["contract", "number", "enabled", "created_by", "created_at", "comment"]


@admin.register(ToolCallRecord)
class ToolCallRecordAdmin(admin.ModelAdmin[ToolCallRecord]):
    """The idempotency ledger, read-only."""

    list_display = ["idempotency_key", "tool", "created_at"]
    list_filter = ["tool"]
    search_fields = ["=idempotency_key"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ToolCallRecord | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ToolCallRecord | None = None) -> bool:
        return False  # a deleted record would let the same call run twice
