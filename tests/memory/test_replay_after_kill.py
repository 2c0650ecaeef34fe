"""A worker killed mid-session, while the model is answering: the turn asked again is sent byte for byte what the
first attempt sent, memory included, though the session moved on while the task was down."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from agent_runtime.models import AgentConfig
from agent_runtime.services import agent_update
from agent_runtime.tokens import count_text_tokens
from memory.composer import MEMORY_HEADER, MemorySettings
from memory.sessions import Contribution, session_merge
from memory.summary import Fact
from orchestration.models import Step, Task, TaskState
from shop.services import orders_seed_demo
from tests.agent_runtime.fake_openai import responses_call, responses_message
from tests.agent_runtime.fake_openai_server import scripted_server
from tests.memory.test_sessions import _submit
from tests.workers import StartWorker, wait_until

pytestmark = pytest.mark.worker

NOTE = {"order_number": "A-1001", "note": "refund promised on the phone"}


def _remember(owner: User, task_id: str, facts: list[str]) -> None:
    earlier: list[dict[str, Any]] = [
        {"role": "user", "content": "My parcel A-1001 is late"},
        {"role": "assistant", "content": [{"type": "output_text", "text": "I will look into A-1001."}]},
    ]
    session_merge(
        owner_id=owner.pk,
        session_id="customer-kill",
        contribution=Contribution(
            task_id=task_id, learnt=[Fact(text, 1) for text in facts], groups=[earlier[:1], earlier[1:]], turns=2
        ),
        settings=MemorySettings(),
        count=count_text_tokens,
    )


def test_the_turn_asked_again_after_a_kill_is_sent_the_same_bytes(start_worker: StartWorker) -> None:
    orders_seed_demo()
    agent_update(agent=AgentConfig.objects.get(name="default"), values={"model": "gpt-test"}, user=None)
    owner = User.objects.create_user("c")
    _remember(owner, "earlier-task", ["The customer was promised a refund for order A-1001"])
    script = [
        responses_call("lookup_order", {"order_number": "A-1001"}, "call_1", (100, 10)),
        responses_call("add_order_note", NOTE, "call_2", (150, 12)),  # answered to nobody: the worker is dead
        responses_call("add_order_note", NOTE, "call_2", (150, 12)),
        responses_message("Noted the refund promised for A-1001.", (200, 9)),
    ]
    with scripted_server(script, holds={1: 30.0}) as endpoint:
        env = {
            "OPENAI_BASE_URL": endpoint.base_url,
            "OPENAI_API_KEY": "sk-test",
            "MODEL_CALL_TIMEOUT_SECONDS": "8",
            "STEP_DEADLINE_GRACE_SECONDS": "1",
            "MODEL_RETRY_BASE_SECONDS": "0",
        }
        doomed = start_worker(**env)
        task = _submit(owner, "Note the refund promised for order A-1001", "customer-kill", {"order_number": "A-1001"})
        wait_until(lambda: len(endpoint.bodies) == 2, describe="the second turn to be asked")
        doomed.kill()
        _remember(owner, "meanwhile", ["The customer later asked for a replacement instead"])

        start_worker(**env)
        wait_until(lambda: Task.objects.get(pk=task.pk).state == TaskState.COMPLETED, sweep=True, timeout=120)

    assert len(endpoint.bodies) == 4, "turn one is replayed, not asked again"
    assert endpoint.bodies[2] == endpoint.bodies[1], "the same bytes, though the session moved on meanwhile"
    sent = endpoint.requests[1]
    assert MEMORY_HEADER in sent["instructions"] and "promised a refund" in sent["instructions"]
    assert "replacement" not in sent["instructions"], "what the session learnt after the task started is not recalled"
    assert sent["input"][0]["content"] == "My parcel A-1001 is late", "the session's last turns come first"
    assert Step.objects.get(task=task, ref="turn:2").attempt == 2
