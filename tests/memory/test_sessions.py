"""Tasks of one session share memory: each recalls the session once (journalled), is sent the window and the
relevant facts, and merges what it learnt when it settles, without losing a concurrent task's facts."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.test import Client
from rest_framework.test import APIClient

from agent_runtime.tokens import count_text_tokens
from memory.composer import MEMORY_HEADER, MemorySettings, Recalled
from memory.models import Session, SessionWrite
from memory.sessions import Contribution, session_merge
from memory.summary import Fact
from orchestration.models import Step, StepKind, Task, TaskState
from orchestration.services.execution import task_run
from orchestration.services.memory import RECALL_REF, task_memory_recall
from orchestration.services.submission import task_submit
from orchestration.tracing import new_trace_id

pytestmark = pytest.mark.django_db


def _submit(owner: User, goal: str, session_id: str, task_input: dict[str, Any] | None = None) -> Task:
    return task_submit(
        owner=owner,
        goal=goal,
        task_input=task_input or {},
        session_id=session_id,
        agent="default",
        metadata={},
        idempotency_key=f"memory-{uuid.uuid4().hex}",
        trace_id=new_trace_id(),
    ).task


def _settled(task: Task) -> Task:
    task_run(task_id=str(task.pk), worker="worker:test")
    task.refresh_from_db()
    assert task.state == TaskState.COMPLETED, task.state_reason
    return task


def _first_turn(task: Task) -> dict[str, Any]:
    return dict(Step.objects.get(task=task, ref="turn:1").input)


def test_a_later_task_of_the_session_is_sent_what_an_earlier_one_learnt(
    api: APIClient, client_user: User, demo_orders: None, operator: Client
) -> None:
    body = {"goal": "Look up order A-1001", "input": {"order_number": "A-1001"}, "session_id": "customer-7"}
    first = api.post("/api/v1/tasks/", body, format="json", HTTP_IDEMPOTENCY_KEY="first")
    assert first.status_code == 201, first.json()
    _settled(Task.objects.get(pk=first.json()["id"]))
    session = Session.objects.get(owner=client_user, session_id="customer-7")
    assert session.version == 1 and any("A-1001" in fact["text"] for fact in session.facts)

    later = {"goal": "Has order A-1001 shipped yet?", "input": {}, "session_id": "customer-7"}
    second = Task.objects.get(
        pk=api.post("/api/v1/tasks/", later, format="json", HTTP_IDEMPOTENCY_KEY="second").json()["id"]
    )
    _settled(second)
    sent = _first_turn(second)
    assert sent["memory"]["session_version"] == 1, "it recalled the session as the first task left it"
    injected = [fact["text"] for fact in sent["memory"]["injected"]]
    assert any("lookup_order succeeded" in text and "A-1001" in text for text in injected), injected
    assert MEMORY_HEADER in sent["instructions"], "the facts go to the model with the instructions"
    assert sent["memory"]["window"]["prior_turns"] > 0, "and the first task's last turns come before the new one"
    assert sent["input"][0]["content"].startswith("Look up order A-1001")
    assert Session.objects.get(pk=session.pk).version == 2
    assert "From earlier in this conversation" in str(second.result), "the offline model answers from memory"
    page = operator.get(f"/admin/orchestration/task/{second.pk}/change/").content.decode()
    assert "this task recalled version 1" in page and "Merged as version 2" in page
    assert "lookup_order succeeded" in page, "the operator sees the facts each turn was sent"

    stranger = _submit(User.objects.create(username="other"), "Has order A-1001 shipped yet?", "customer-7")
    _settled(stranger)
    assert _first_turn(stranger)["memory"]["injected"] == [], "a session is one client's: another's is apart"
    assert Step.objects.get(task=stranger, ref=RECALL_REF).output["facts"] == []


def test_a_replay_recalls_what_the_first_run_recalled_though_the_session_moved_on(client_user: User) -> None:
    task = _submit(client_user, "What did we say about order A-1002?", "customer-8")
    _merge(client_user, "customer-8", "earlier", ["Order A-1002 was promised a refund"])
    recalled = _recall(task)
    _merge(client_user, "customer-8", "meanwhile", ["Order A-1002 was cancelled by the customer"])
    again = _recall(task)
    assert again == recalled and [fact.text for fact in again.facts] == ["Order A-1002 was promised a refund"]
    assert Step.objects.filter(task=task, kind=StepKind.MEMORY_RECALL).count() == 1


def test_two_tasks_of_one_session_running_at_once_keep_both_their_facts(client_user: User, demo_orders: None) -> None:
    one = _submit(client_user, "Look up order A-1001", "customer-9", {"order_number": "A-1001"})
    two = _submit(client_user, "Look up order A-1003", "customer-9", {"order_number": "A-1003"})
    for task in (one, two):  # both start before either settles: both recall the empty session
        _recall(task)
    _settled(one)
    _settled(two)
    session = Session.objects.get(owner=client_user, session_id="customer-9")
    texts = " ".join(fact["text"] for fact in session.facts)
    assert "A-1001" in texts and "A-1003" in texts
    assert session.version == 2
    assert sorted(w.task_id for w in SessionWrite.objects.filter(session=session)) == sorted([str(one.pk), str(two.pk)])


@pytest.mark.django_db(transaction=True)
def test_concurrent_merges_into_one_session_lose_nothing() -> None:
    owner = User.objects.create(username="racer")
    start = threading.Barrier(2)

    def writer(name: str) -> None:
        try:
            start.wait()
            for number in range(15):
                _merge(owner, "raced", f"{name}-{number}", [f"Fact {number} of writer {name}"])
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    session = Session.objects.get(owner=owner, session_id="raced")
    assert session.version == 30
    assert len(session.facts) == 30, "every merge kept the other writer's facts"


def test_a_fact_from_turn_3_of_a_50_turn_conversation_reaches_turn_45(client_user: User) -> None:
    small_talk = ["Thanks, that helps.", "Okay, I see.", "Sure, go on.", "Hmm, let me think.", "Right, fine."]
    cap = MemorySettings().summary_tokens
    for turn in range(1, 51):
        if turn == 3:
            said = "Your colleague promised a refund of 20 USD to my card for A-1234."  # no tool's name: no call
        elif turn == 45:
            said = "Where is the refund I was promised for A-1234?"
        else:
            said = f"{small_talk[turn % len(small_talk)]} Item {turn} of my list."
        task = _settled(_submit(client_user, said, "long-chat"))
        session = Session.objects.get(owner=client_user, session_id="long-chat")
        assert count_text_tokens("\n".join(f"- {fact['text']}" for fact in session.facts)) <= cap
        if turn == 45:
            sent = _first_turn(task)
            injected = " ".join(fact["text"] for fact in sent["memory"]["injected"])
            assert "A-1234" in injected and "promised a refund" in injected, sent["memory"]
            assert "promised a refund of 20 USD to my card for A-1234" in sent["instructions"]
    turns = Step.objects.filter(task__session_id="long-chat", kind=StepKind.MODEL_TURN)
    sizes = [len(str(step.input)) for step in turns.order_by("task__created_at", "seq")]
    assert max(sizes[-10:]) < 3 * max(sizes[:10]), "what a turn stores stays flat as the session grows"


def test_a_task_that_settles_again_unchanged_merges_nothing_and_one_that_did_more_counts_once(
    client_user: User,
) -> None:
    group = [{"role": "user", "content": "Refund order A-1002"}]
    first = Contribution(task_id="t-1", learnt=[Fact("Order A-1002 was refunded", 1)], groups=[group], turns=2)

    def merge(contribution: Contribution) -> SessionWrite | None:
        return session_merge(
            owner_id=client_user.pk,
            session_id="again",
            contribution=contribution,
            settings=MemorySettings(),
            count=count_text_tokens,
        )

    assert merge(first) is not None
    assert merge(first) is None, "handed off, then closed: the same contribution"
    more = Contribution(task_id="t-1", learnt=[*first.learnt, Fact("The refund was sent", 3)], groups=[group], turns=3)
    assert merge(more) is not None
    session = Session.objects.get(owner=client_user, session_id="again")
    assert (session.version, session.turns, len(session.window), len(session.facts)) == (2, 3, 1, 2)


def _recall(task: Task) -> Recalled:
    with transaction.atomic():
        return task_memory_recall(Task.objects.select_for_update().get(pk=task.pk))


def _merge(owner: User, session_id: str, task_id: str, facts: list[str]) -> None:
    session_merge(
        owner_id=owner.pk,
        session_id=session_id,
        contribution=Contribution(task_id=task_id, learnt=[Fact(text, 1) for text in facts], groups=[], turns=1),
        settings=MemorySettings(),
        count=count_text_tokens,
    )
