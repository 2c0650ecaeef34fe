"""Agent configurations (versioned, like tool contracts) and the per-model price table."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

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
    tool_contracts = models.JSONField(
        default=dict,
        blank=True,
        help_text='Pinned tool contract versions, e.g. {"lookup_order": 3}; a tool not named uses its current one',
    )

    class Meta:
        ordering = ["agent", "-number"]
        constraints = [models.UniqueConstraint(fields=["agent", "number"], name="agent_version_number")]
        permissions = [("force_agent_version", "Can submit a task pinned to a chosen agent version (testing)")]

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


class RolloutState(models.TextChoices):
    ACTIVE = "ACTIVE"
    PROMOTED = "PROMOTED"
    ROLLED_BACK = "ROLLED_BACK"


class Rollout(ConcurrentTransitionMixin, models.Model):
    """A canary: a share of an agent's new tasks goes to `canary`, the rest to `stable`, until it is promoted or
    rolled back. Which tasks is a stable hash of each task's routing key (`agent_runtime.rollouts`)."""

    agent = models.ForeignKey(AgentConfig, on_delete=models.CASCADE, related_name="rollouts")
    stable = models.ForeignKey(AgentVersion, on_delete=models.PROTECT, related_name="+")
    canary = models.ForeignKey(AgentVersion, on_delete=models.PROTECT, related_name="+")
    canary_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal(10),
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="The share of new tasks the canary gets, 0 to 100 %",
    )
    state = FSMField(default=RolloutState.ACTIVE, choices=RolloutState.choices, protected=True)

    # Automatic rollback: off unless turned on; margins say how much worse the canary may be before it counts.
    auto_rollback = models.BooleanField(default=False)
    min_finished_tasks = models.PositiveIntegerField(
        default=200, validators=[MinValueValidator(20)], help_text="Finished tasks each arm needs before any verdict"
    )
    max_success_drop = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=Decimal("0.05"),
        validators=[MinValueValidator(0), MaxValueValidator(1)],
        help_text="How far the canary's success rate may fall below stable's (0.05: five points)",
    )
    max_handoff_rise = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=Decimal("0.05"),
        validators=[MinValueValidator(0), MaxValueValidator(1)],
        help_text="How far the canary's handoff ratio may rise above stable's (0.05: five points)",
    )
    max_cost_rise = models.DecimalField(
        max_digits=5,
        decimal_places=3,
        default=Decimal("0.2"),
        validators=[MinValueValidator(0), MaxValueValidator(10)],
        help_text="How much more a successful task may cost on the canary (0.2: 20 %)",
    )
    alpha = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=Decimal("0.05"),
        validators=[MinValueValidator(Decimal("0.001")), MaxValueValidator(Decimal("0.2"))],
        help_text="The false-alarm probability of the sequential test, shared by its three metrics",
    )

    last_verdict = models.JSONField(default=dict, blank=True, help_text="The latest automatic evaluation's figures")
    evaluated_at = models.DateTimeField(null=True, blank=True)

    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    started_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["agent"], condition=models.Q(state=RolloutState.ACTIVE), name="one_active_rollout_per_agent"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.agent.name}: v{self.canary.number} over v{self.stable.number} ({self.state})"

    @transition(field=state, source=RolloutState.ACTIVE, target=RolloutState.PROMOTED)
    def promote(self) -> None:
        """The canary becomes the agent's current version: every new task gets it."""

    @transition(field=state, source=RolloutState.ACTIVE, target=RolloutState.ROLLED_BACK)
    def roll_back(self) -> None:
        """The rollback switch: every new task gets the stable version again."""


class RolloutEventKind(models.TextChoices):
    STARTED = "started"
    SHARE_CHANGED = "share_changed"
    SETTINGS_CHANGED = "settings_changed", "automatic rollback settings changed"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    AUTO_ROLLED_BACK = "auto_rolled_back", "rolled back automatically"


class RolloutEvent(models.Model):
    """The audit of a rollout: every start, share change, promotion and rollback: who, when, why, with figures."""

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=30, choices=RolloutEventKind.choices)
    actor = models.CharField(max_length=200, help_text="user:<name>, or the evaluator for automatic rollbacks")
    reason = models.TextField()
    detail = models.JSONField(default=dict, blank=True, help_text="Shares before and after; a verdict's figures")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.kind} by {self.actor}"
