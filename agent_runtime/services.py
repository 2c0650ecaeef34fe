"""Agent versions: every edit creates the next immutable version; new tasks get the current one."""

from __future__ import annotations

import dataclasses
from decimal import Decimal, InvalidOperation
from typing import Any

from agents import ModelSettings
from django.conf import settings
from django.contrib.auth.models import User

from agent_runtime.catalog import DEFAULT_AGENT, DEFAULT_INSTRUCTIONS
from agent_runtime.endpoints import OFFLINE
from agent_runtime.models import AgentConfig, AgentVersion, ModelPrice, Rollout, RolloutState
from lib.versioning import ConfigInvalid, Problems, Versioning
from tools.models import ToolContract, ToolContractVersion

# What a budget column holds (agent versions and tasks alike).
MAX_TOKEN_BUDGET = 10**12
MIN_COST_BUDGET, MAX_COST_BUDGET = Decimal("0.0001"), Decimal("99999999.9999")

AGENT_FIELDS = (
    "instructions",
    "model",
    "model_settings",
    "tools",
    "max_turns",
    "token_budget",
    "cost_budget_usd",
    "memory_window_turns",
    "memory_summary_tokens",
    "memory_inject_tokens",
    "tool_contracts",
)
# What the memory fields may hold: (lowest, highest).
MEMORY_LIMITS = {
    "memory_window_turns": (3, 100),  # the task's message, its latest turn, and at least one more
    "memory_summary_tokens": (300, 500),
    "memory_inject_tokens": (0, 4000),
}


class AgentInvalid(ConfigInvalid):
    """Agent values refused: `problems` names each field and what is wrong with it."""


def agent_problems(values: dict[str, Any]) -> Problems:
    problems: Problems = {}
    if not str(values.get("instructions", "")).strip():
        problems["instructions"] = ["an agent needs instructions"]
    if not str(values.get("model", "")).strip():
        problems["model"] = ["name a model (`offline` for the built-in one)"]
    model_settings = values.get("model_settings")
    if not isinstance(model_settings, dict):
        problems["model_settings"] = ["must be a JSON object of ModelSettings fields"]
    else:
        known = {f.name for f in dataclasses.fields(ModelSettings)}
        unknown = sorted(set(model_settings) - known)
        if unknown:
            problems["model_settings"] = [f"not ModelSettings fields: {', '.join(unknown)}"]
        elif "retry" in model_settings:
            problems["model_settings"] = [
                "retry: the platform retries failed model requests itself (MODEL_RETRY_*), each attempt recorded"
            ]
        else:
            try:
                ModelSettings(**model_settings)
            except (TypeError, ValueError) as exc:
                problems["model_settings"] = [f"invalid: {exc}"]
    tools = values.get("tools")
    if not isinstance(tools, list) or not all(isinstance(name, str) for name in tools):
        problems["tools"] = ["must be a list of tool names"]
    else:
        unknown = sorted(set(tools) - set(ToolContract.objects.values_list("name", flat=True)))
        if unknown:
            problems["tools"] = [f"no such tool: {', '.join(unknown)}"]
    if not 1 <= int(values.get("max_turns") or 0) <= 100:
        problems["max_turns"] = ["between 1 and 100"]
    return problems | _budget_problems(values) | _memory_problems(values) | _pinned_contract_problems(values)


def _pinned_contract_problems(values: dict[str, Any]) -> Problems:
    """Pinned contracts name existing versions of existing tools: {"lookup_order": 3}."""
    pinned = values.get("tool_contracts")
    if pinned is None:
        return {}
    if not isinstance(pinned, dict) or not all(
        isinstance(number, int) and not isinstance(number, bool) and number >= 1 for number in pinned.values()
    ):
        return {"tool_contracts": ['a JSON object of tool name to contract version number, e.g. {"lookup_order": 3}']}
    known = set(
        ToolContractVersion.objects.filter(contract__name__in=list(pinned)).values_list("contract__name", "number")
    )
    missing = sorted(f"{name} v{number}" for name, number in pinned.items() if (name, number) not in known)
    return {"tool_contracts": [f"no such contract version: {', '.join(missing)}"]} if missing else {}


def _memory_problems(values: dict[str, Any]) -> Problems:
    """Memory fields may be left out (their defaults apply); given, they are whole numbers within their limits."""
    problems: Problems = {}
    for name, (lowest, highest) in MEMORY_LIMITS.items():
        value = values.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not lowest <= value <= highest:
            problems[name] = [f"a whole number from {lowest} to {highest}"]
    return problems


def _budget_problems(values: dict[str, Any]) -> Problems:
    """Budgets are optional (empty: the settings' defaults), and positive when given."""
    problems: Problems = {}
    tokens, cost = values.get("token_budget"), values.get("cost_budget_usd")
    if tokens is not None and (
        not isinstance(tokens, int) or isinstance(tokens, bool) or not 1 <= tokens <= MAX_TOKEN_BUDGET
    ):
        problems["token_budget"] = [f"a whole number of tokens from 1 to {MAX_TOKEN_BUDGET:,} (or empty: the default)"]
    if cost is not None:
        try:
            amount = Decimal(str(cost))
        except InvalidOperation:
            amount = Decimal("NaN")
        exact = amount.is_finite() and amount == amount.quantize(Decimal("0.0001"))
        if not exact or not MIN_COST_BUDGET <= amount <= MAX_COST_BUDGET:
            problems["cost_budget_usd"] = [
                f"USD from {MIN_COST_BUDGET} to {MAX_COST_BUDGET:,}, at most 4 decimals (or empty: the default)"
            ]
    return problems


def _no_canary_running(agent: AgentConfig) -> None:
    """Checked under the agent's row lock, which starting a rollout takes too: stable is what the canary is
    compared with, and what a rollback sends every task back to, so it does not move while a canary runs."""
    if Rollout.objects.filter(agent=agent, state=RolloutState.ACTIVE).exists():
        raise AgentInvalid({"current": [CANARY_RUNNING]})


CANARY_RUNNING = "a canary of this agent is running: promote it or roll it back first, or save the edit as a canary"


AGENT_VERSIONS: Versioning[AgentConfig, AgentVersion] = Versioning(
    owner_model=AgentConfig,
    version_model=AgentVersion,
    owner_field="agent",
    fields=AGENT_FIELDS,
    problems=lambda _agent, values: agent_problems(values),
    invalid=AgentInvalid,
    before_current=_no_canary_running,
)


def agent_update(*, agent: AgentConfig, values: dict[str, Any], user: User | None, comment: str = "") -> AgentVersion:
    """Save `values` over the current ones as the agent's next version; tasks submitted from now on get it.

    Refused while a canary of the agent runs (`_no_canary_running`), restores included. Propose the edit
    (`agent_propose`) and roll it out instead."""
    return AGENT_VERSIONS.update(owner=agent, values=values, user=user, comment=comment)


def agent_propose(*, agent: AgentConfig, values: dict[str, Any], user: User | None, comment: str = "") -> AgentVersion:
    """Save `values` over the current ones as the agent's next version without making it current: a candidate
    for a canary (`agent_runtime.rollouts.rollout_start`)."""
    return AGENT_VERSIONS.propose(owner=agent, values=values, user=user, comment=comment)


def agent_create(*, name: str, values: dict[str, Any], user: User | None) -> AgentConfig:
    return AGENT_VERSIONS.create(owner=AgentConfig(name=name), values=values, user=user)


def agent_restore(*, version: AgentVersion, user: User | None) -> AgentVersion:
    """Make an old version current again, as a new version (history is never rewritten)."""
    return AGENT_VERSIONS.restore(version=version, user=user)


def agent_version_values(version: AgentVersion) -> dict[str, Any]:
    return AGENT_VERSIONS.values(version)


def agent_version_diff(version: AgentVersion) -> str:
    """A unified diff of this version against the one before it."""
    return AGENT_VERSIONS.diff(version)


def agents_install_defaults() -> None:
    """The default agent (model from AGENT_MODEL, at first install only) and the offline model's price."""
    if not AgentConfig.objects.filter(name=DEFAULT_AGENT).exists():
        values = {"instructions": DEFAULT_INSTRUCTIONS, "model": settings.AGENT_MODEL, "max_turns": 12}
        agent_create(name=DEFAULT_AGENT, values=values, user=None)
    ModelPrice.objects.get_or_create(model=OFFLINE)
