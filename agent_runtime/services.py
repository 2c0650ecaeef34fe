"""Agent versions: every edit creates the next immutable version; new tasks get the current one."""

from __future__ import annotations

import dataclasses
from typing import Any

from agents import ModelSettings
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Max

from agent_runtime.catalog import DEFAULT_AGENT, DEFAULT_INSTRUCTIONS
from agent_runtime.endpoints import OFFLINE
from agent_runtime.models import AgentConfig, AgentVersion, ModelPrice

AGENT_FIELDS = ("instructions", "model", "model_settings", "tools", "max_turns")


class AgentInvalid(Exception):
    def __init__(self, problems: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{field}: {', '.join(found)}" for field, found in problems.items()))
        self.problems = problems


def agent_problems(values: dict[str, Any]) -> dict[str, list[str]]:
    from tools.models import ToolContract

    problems: dict[str, list[str]] = {}
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
    return problems


def agent_update(*, agent: AgentConfig, values: dict[str, Any], user: User | None, comment: str = "") -> AgentVersion:
    current = {name: getattr(agent.current, name) for name in AGENT_FIELDS} if agent.current else {}
    merged = {"model_settings": {}, "tools": [], "max_turns": 12, **current, **values}
    problems = agent_problems(merged)
    if problems:
        raise AgentInvalid(problems)
    with transaction.atomic():
        locked = AgentConfig.objects.select_for_update().get(pk=agent.pk)
        number = (locked.versions.aggregate(top=Max("number"))["top"] or 0) + 1
        fields = {name: merged[name] for name in AGENT_FIELDS}
        version = AgentVersion.objects.create(agent=locked, number=number, created_by=user, comment=comment, **fields)
        locked.current = version
        locked.save(update_fields=["current"])
    agent.current = version
    return version


def agent_create(*, name: str, values: dict[str, Any], user: User | None) -> AgentConfig:
    with transaction.atomic():
        agent = AgentConfig.objects.create(name=name)
        agent_update(agent=agent, values=values, user=user, comment="created")
    return agent


def agents_install_defaults() -> None:
    """The default agent (model from AGENT_MODEL, at first install only) and the offline model's price."""
    if not AgentConfig.objects.filter(name=DEFAULT_AGENT).exists():
        values = {"instructions": DEFAULT_INSTRUCTIONS, "model": settings.AGENT_MODEL, "max_turns": 12}
        agent_create(name=DEFAULT_AGENT, values=values, user=None)
    ModelPrice.objects.get_or_create(model=OFFLINE)
