"""Tool contracts (the schema registry), their immutable versions, and the idempotency ledger."""

from __future__ import annotations

from django.core.validators import RegexValidator
from django.db import models

from lib.versioning import ConfigVersion
from tools.policy import DEFAULT_RETRY


class ApprovalMode(models.TextChoices):
    NEVER = "never", "never"
    ALWAYS = "always", "always"
    RULE = "rule", "when the rule matches"


class ToolContract(models.Model):
    """A tool's identity. What it promises lives in its versions; `current` is the one calls use."""

    name = models.CharField(
        max_length=64,
        unique=True,
        validators=[RegexValidator(r"^[a-z][a-z0-9_]*$", "lower_snake_case letters, digits and underscores")],
    )
    adapter = models.CharField(max_length=64, help_text="The registered adapter that executes this tool")
    current = models.ForeignKey(
        "ToolContractVersion", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    contract_violations = models.PositiveIntegerField(
        default=0, help_text="Results with an error code the dictionary lacks, or breaking the result schema"
    )
    last_violation = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ToolContractVersion(ConfigVersion):
    """One saved state of a contract. Never updated: every edit, or restore, creates the next version."""

    contract = models.ForeignKey(ToolContract, on_delete=models.CASCADE, related_name="versions")
    description = models.TextField()
    parameters_schema = models.JSONField()
    result_schema = models.JSONField()
    error_codes = models.JSONField(default=list, help_text="[{code, meaning, retryable, action}]")
    timeout_seconds = models.FloatField(default=10.0)
    retry_max = models.PositiveSmallIntegerField(default=DEFAULT_RETRY.max_retries)
    retry_base_seconds = models.FloatField(default=DEFAULT_RETRY.base_seconds)
    retry_cap_seconds = models.FloatField(default=DEFAULT_RETRY.cap_seconds)
    circuit_failure_threshold = models.PositiveIntegerField(default=5)
    circuit_window_seconds = models.PositiveIntegerField(default=60)
    circuit_open_seconds = models.PositiveIntegerField(default=30)
    approval_mode = models.CharField(max_length=10, choices=ApprovalMode.choices, default=ApprovalMode.NEVER)
    approval_rule = models.JSONField(null=True, blank=True, help_text='{"field": "amount_cents", "above": 50000}')
    sensitive_fields = models.JSONField(default=list, blank=True, help_text="Parameter names to redact")
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["contract", "-number"]
        constraints = [models.UniqueConstraint(fields=["contract", "number"], name="contract_version_number")]

    def __str__(self) -> str:
        return f"{self.contract.name} v{self.number}"


class ToolCallRecord(models.Model):
    """The idempotency ledger: the final envelope of each call key. A key found here never runs again.

    For database-backed adapters the record is written in the same transaction as the adapter's effects.
    """

    idempotency_key = models.CharField(max_length=400, unique=True)
    tool = models.CharField(max_length=64)
    contract_version = models.ForeignKey(ToolContractVersion, on_delete=models.PROTECT, related_name="+")
    envelope = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.idempotency_key


class CircuitRecord(models.Model):
    """Circuit-breaker state for the embedded mode, which has no Redis (production keeps it in Redis)."""

    tool = models.CharField(max_length=64, primary_key=True)
    state = models.JSONField(default=dict)

    def __str__(self) -> str:
        return self.tool
