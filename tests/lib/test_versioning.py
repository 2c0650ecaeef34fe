"""The versioning mechanism, through both its users: numbering, merging, refusing, restoring, diffing."""

from __future__ import annotations

import pytest
from django.test import Client

from agent_runtime.models import AgentConfig, AgentVersion
from agent_runtime.services import (
    AgentInvalid,
    agent_create,
    agent_restore,
    agent_update,
    agent_version_diff,
)
from tools.models import ToolContract
from tools.services.contracts import ContractInvalid, contract_create, contract_update, version_diff

pytestmark = pytest.mark.django_db

VALUES = {"instructions": "Help.", "model": "offline"}


def test_create_starts_from_the_field_defaults_and_an_edit_keeps_what_it_does_not_change() -> None:
    agent = agent_create(name="helper", values=VALUES, user=None)
    assert agent.current is not None
    first = agent.current
    assert (first.number, first.comment, first.max_turns, first.tools, first.model_settings) == (
        1,
        "created",
        12,
        [],
        {},
    )

    second = agent_update(agent=agent, values={"max_turns": 5}, user=None, comment="shorter")
    assert (second.number, second.instructions, second.max_turns) == (2, "Help.", 5)
    assert AgentConfig.objects.get(pk=agent.pk).current == second == agent.current


def test_refused_values_save_nothing_and_say_which_field() -> None:
    with pytest.raises(AgentInvalid) as refused:
        agent_create(name="broken", values={**VALUES, "max_turns": 0}, user=None)
    assert refused.value.problems == {"max_turns": ["between 1 and 100"]}
    assert not AgentConfig.objects.filter(name="broken").exists()

    agent = agent_create(name="helper", values=VALUES, user=None)
    with pytest.raises(AgentInvalid, match="max_turn: not a versioned field"):
        agent_update(agent=agent, values={"max_turn": 5}, user=None)  # a typo is not silently dropped
    assert agent.versions.count() == 1


def test_a_restore_is_a_new_version_and_the_diff_shows_each_change() -> None:
    agent = agent_create(name="helper", values=VALUES, user=None)
    first = agent.current
    assert first is not None
    agent_update(agent=agent, values={"model": "gpt-4.1-mini"}, user=None)
    restored = agent_restore(version=first, user=None)
    assert (restored.number, restored.model, restored.comment) == (3, "offline", "restored v1")

    diff = agent_version_diff(restored)
    assert '-  "model": "gpt-4.1-mini",' in diff and '+  "model": "offline",' in diff
    assert diff.startswith("--- v2\n+++ v3\n")
    assert agent_version_diff(first).startswith("--- (nothing)\n+++ v1\n")


def test_contracts_use_the_same_mechanism_with_their_own_rules() -> None:
    handoff = ToolContract.objects.get(name="handoff_to_human")
    with pytest.raises(ContractInvalid) as refused:
        contract_update(contract=handoff, values={"enabled": False}, user=None)
    assert list(refused.value.problems) == ["enabled"]

    template = ToolContract.objects.get(name="lookup_order")
    assert template.current is not None
    values = {
        "description": "Find it.",
        "parameters_schema": template.current.parameters_schema,
        "result_schema": template.current.result_schema,
    }
    contract = contract_create(name="lookup_again", adapter="lookup_order", values=values, user=None)
    assert contract.current is not None and (contract.current.number, contract.current.retry_max) == (1, 3)
    edited = contract_update(contract=contract, values={"timeout_seconds": 2.5}, user=None)
    assert '+  "timeout_seconds": 2.5\n' in version_diff(edited)


def test_an_agent_version_is_restored_from_the_admin(operator: Client) -> None:
    agent = AgentConfig.objects.get(name="default")
    first = agent.current
    assert first is not None
    agent_update(agent=agent, values={"max_turns": 3}, user=None)
    page = operator.get(f"/admin/agent_runtime/agentversion/{agent.current.pk}/change/").content.decode()  # type: ignore[union-attr]
    assert "-  &quot;max_turns&quot;: 12," in page and "+  &quot;max_turns&quot;: 3," in page

    response = operator.post(
        "/admin/agent_runtime/agentversion/", {"action": "restore", "_selected_action": [first.pk]}
    )
    assert response.status_code == 302
    current = AgentConfig.objects.get(pk=agent.pk).current
    assert current is not None and (current.number, current.max_turns, current.comment) == (3, 12, "restored v1")
    assert AgentVersion.objects.filter(agent=agent).count() == 3
