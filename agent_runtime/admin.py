"""Agents and model prices in the admin. Saving an agent creates its next version (new tasks get it); a
version shows its diff against the one before and can be restored as a new version."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.http import HttpRequest
from django.utils.html import format_html_join

from agent_runtime.models import AgentConfig, AgentVersion, ModelPrice
from agent_runtime.rollouts import CANARY, RolloutInvalid, active_rollout, rollout_start
from agent_runtime.services import (
    AGENT_FIELDS,
    AGENT_VERSIONS,
    CANARY_RUNNING,
    MAX_COST_BUDGET,
    MAX_TOKEN_BUDGET,
    MEMORY_LIMITS,
    MIN_COST_BUDGET,
    AgentInvalid,
    agent_create,
    agent_problems,
    agent_propose,
    agent_update,
    agent_version_values,
)
from lib.versioning_admin import ConfigVersionAdmin

CURRENT = "current"


def _memory_field(name: str, initial: int, help_text: str) -> forms.IntegerField:
    lowest, highest = MEMORY_LIMITS[name]
    return forms.IntegerField(min_value=lowest, max_value=highest, initial=initial, help_text=help_text)


class AgentConfigForm(forms.ModelForm[AgentConfig]):
    instructions = forms.CharField(widget=forms.Textarea(attrs={"rows": 8, "cols": 100}))
    model = forms.CharField(max_length=200, help_text="`offline`, or a model the configured endpoint serves")
    model_settings = forms.JSONField(required=False, help_text='ModelSettings fields, e.g. {"temperature": 0.2}')
    tools = forms.JSONField(required=False, help_text='Tool names, e.g. ["lookup_order"]; empty: every enabled tool')
    max_turns = forms.IntegerField(min_value=1, max_value=100, initial=12)
    token_budget = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_TOKEN_BUDGET,
        help_text="Tokens one task may spend; empty: TASK_TOKEN_BUDGET from settings",
    )
    cost_budget_usd = forms.DecimalField(
        required=False,
        min_value=MIN_COST_BUDGET,
        max_value=MAX_COST_BUDGET,
        max_digits=12,
        decimal_places=4,
        help_text="USD one task may spend; empty: TASK_COST_BUDGET_USD from settings",
    )
    memory_window_turns = _memory_field(
        "memory_window_turns", 8, "Turns the model sees verbatim; older ones reach it as summary facts"
    )
    memory_summary_tokens = _memory_field("memory_summary_tokens", 400, "The cap of a session's summary, in tokens")
    tool_contracts = forms.JSONField(
        required=False, help_text='Pinned tool contract versions, e.g. {"lookup_order": 3}; empty: current ones'
    )
    memory_inject_tokens = _memory_field(
        "memory_inject_tokens", 200, "The most summary facts one turn is sent (those relevant to the task), in tokens"
    )
    comment = forms.CharField(required=False, max_length=300, help_text="Why: required for a canary")
    release = forms.ChoiceField(
        choices=[
            (CURRENT, "Make it current: every new task gets this version"),
            (CANARY, "Start a canary: a share of new tasks gets it, the rest stay on the current version"),
        ],
        initial=CURRENT,
        widget=forms.RadioSelect,
        required=False,
    )
    canary_percent = forms.DecimalField(
        min_value=Decimal("0.01"),
        max_value=Decimal(100),
        decimal_places=2,
        initial=Decimal(10),
        required=False,
        help_text="The canary's share of new tasks, in %",
    )

    class Meta:
        model = AgentConfig
        fields = ["name"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        current = self.instance.current if self.instance.pk else None
        if current is not None:
            self.initial.update(agent_version_values(current))

    def versioned_values(self) -> dict[str, Any]:
        values = {name: self.cleaned_data.get(name) for name in AGENT_FIELDS}
        values["model_settings"] = values["model_settings"] or {}
        values["tools"] = values["tools"] or []
        values["tool_contracts"] = values["tool_contracts"] or {}
        return values

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        self._clean_release(cleaned)
        if not any(name in self.errors for name in AGENT_FIELDS):
            for field, problems in agent_problems(self.versioned_values()).items():
                for problem in problems:
                    self.add_error(field, problem)
        return cleaned

    def _clean_release(self, cleaned: dict[str, Any]) -> None:
        running = self.instance.pk is not None and active_rollout(self.instance) is not None
        if cleaned.get("release") != CANARY:
            if running:
                self.add_error("release", CANARY_RUNNING)
            return
        if self.instance.pk is None:
            self.add_error("release", "a new agent has no version to compare a canary with: make it current first")
        elif running:
            self.add_error("release", "this agent already has a canary: promote it or roll it back first")
        if not cleaned.get("canary_percent"):
            self.add_error("canary_percent", "a canary needs its share of new tasks")
        if not str(cleaned.get("comment") or "").strip():
            self.add_error("comment", "say why: a canary is started with its reason on record")


@admin.register(AgentConfig)
class AgentConfigAdmin(admin.ModelAdmin[AgentConfig]):
    form = AgentConfigForm
    list_display = ["name", "version", "current_model", "canary"]
    fields = ["name", *AGENT_FIELDS, "comment", "release", "canary_percent", "version_history"]

    @admin.display(description="canary")
    def canary(self, agent: AgentConfig) -> str:
        rollout = active_rollout(agent)
        return f"v{rollout.canary.number} at {rollout.canary_percent} %" if rollout else "-"

    def get_readonly_fields(self, request: HttpRequest, obj: AgentConfig | None = None) -> list[str]:
        return ["name", "version_history"] if obj is not None else ["version_history"]

    @admin.display(description="versions")
    def version_history(self, agent: AgentConfig) -> str:
        if agent.pk is None:
            return "-"
        versions = agent.versions.select_related("created_by").order_by("-number")[:20]
        return format_html_join(
            "",
            '<div><a href="../../agentversion/{}/change/">v{}</a>: {} ({} turns) {} by {} {}</div>',
            (
                (
                    v.pk,
                    v.number,
                    v.model,
                    v.max_turns,
                    v.created_at.strftime("%Y-%m-%d %H:%M"),
                    v.created_by or "system",
                    v.comment,
                )
                for v in versions
            ),
        )

    @admin.display(description="version")
    def version(self, agent: AgentConfig) -> str:
        return f"v{agent.current.number}" if agent.current else "-"

    @admin.display(description="model")
    def current_model(self, agent: AgentConfig) -> str:
        return agent.current.model if agent.current else "-"

    def save_model(self, request: HttpRequest, obj: AgentConfig, form: Any, change: bool) -> None:
        values, comment = form.versioned_values(), form.cleaned_data.get("comment", "")
        try:
            if change and form.cleaned_data.get("release") == CANARY:
                user: Any = request.user
                if not user.has_perm("agent_runtime.add_rollout"):
                    raise RolloutInvalid("starting a canary needs the permission to add rollouts")
                with transaction.atomic():  # a refused canary leaves no version behind
                    canary = agent_propose(agent=obj, values=values, user=user, comment=comment)
                    rollout_start(canary=canary, percent=form.cleaned_data["canary_percent"], user=user, reason=comment)
            elif change:
                agent_update(agent=obj, values=values, user=request.user, comment=comment)  # type: ignore[arg-type]
            else:
                created = agent_create(name=obj.name, values=values, user=request.user)  # type: ignore[arg-type]
                obj.pk, obj.current = created.pk, created.current
                obj._state.adding = False
        except (AgentInvalid, RolloutInvalid) as invalid:
            self.message_user(request, f"Not saved: {invalid}", messages.ERROR)


@admin.register(AgentVersion)
class AgentVersionAdmin(ConfigVersionAdmin[AgentVersion]):
    """Versions are immutable: viewable, comparable with the one before, restorable as a new version."""

    versioning = AGENT_VERSIONS
    list_display = ["agent", "number", "model", "created_by", "created_at", "comment"]


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin[ModelPrice]):
    """USD per million tokens, input and output apart. A model with no row is recorded at cost 0."""

    list_display = ["model", "input_usd_per_million", "output_usd_per_million", "updated_at"]
    list_editable = ["input_usd_per_million", "output_usd_per_million"]
    search_fields = ["model"]
