"""Agent configurations (versioned, like tool contracts) and the per-model price table."""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

from lib.versioning import ConfigVersion


class AgentConfig(models.Model):
    """An agent clients name in `agent`. What it is lives in its versions; `current` serves new tasks."""

    name = models.CharField(
        max_length=100, unique=True, validators=[RegexValidator(r"^[a-z][a-z0-9_-]*$", "lower-case slug")]
    )
    current = models.ForeignKey("AgentVersion", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AgentVersion(ConfigVersion):
    """One saved state of an agent. Never updated; a task keeps the version it was submitted with."""

    agent = models.ForeignKey(AgentConfig, on_delete=models.CASCADE, related_name="versions")
    instructions = models.TextField()
    model = models.CharField(max_length=200, help_text="`offline`, or a model name the configured endpoint serves")
    model_settings = models.JSONField(default=dict, blank=True, help_text='e.g. {"temperature": 0.2}')
    tools = models.JSONField(default=list, blank=True, help_text="Tool names; empty means every enabled tool")
    max_turns = models.PositiveSmallIntegerField(default=12)
    token_budget = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Tokens (input and output) one task may spend; empty: TASK_TOKEN_BUDGET"
    )
    cost_budget_usd = models.DecimalField(
        max_digits=12,
        decimal_places=4,
        null=True,
        blank=True,
        help_text="USD one task may spend on the model; empty: TASK_COST_BUDGET_USD",
    )
    memory_window_turns = models.PositiveSmallIntegerField(
        default=8, help_text="Turns the model sees verbatim (a tool call and its output are one turn)"
    )
    memory_summary_tokens = models.PositiveSmallIntegerField(
        default=400, help_text="The cap of the session's summary of facts, 300 to 500 tokens"
    )
    memory_inject_tokens = models.PositiveSmallIntegerField(
        default=200, help_text="The most summary facts one turn is sent, in tokens (the relevant ones)"
    )

    class Meta:
        ordering = ["agent", "-number"]
        constraints = [models.UniqueConstraint(fields=["agent", "number"], name="agent_version_number")]

    def __str__(self) -> str:
        return f"{self.agent.name} v{self.number}"


class ModelPrice(models.Model):
    """What a model costs, input and output priced separately, in USD per million tokens."""

    model = models.CharField(max_length=200, unique=True)
    input_usd_per_million = models.DecimalField(
        max_digits=12, decimal_places=4, default=Decimal("0"), validators=[MinValueValidator(Decimal("0"))]
    )
    output_usd_per_million = models.DecimalField(
        max_digits=12, decimal_places=4, default=Decimal("0"), validators=[MinValueValidator(Decimal("0"))]
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model"]

    def __str__(self) -> str:
        return self.model
