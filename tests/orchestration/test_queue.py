"""The manual queue's services: claims, retry now, resolve with a result, close, cancel, notes; each checked,
applied as a decision, audited, and refused without changing anything when it does not fit."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.db import connection
from django.utils import timezone

from agent_runtime.prompt import OPERATOR_INSTRUCTION
from orchestration.models import (
    HandoffReason,
    OperatorAction,
    OperatorActionKind,
    RecoveryDecision,
    RecoveryEvent,
    Step,
    StepKind,
    StepState,
    Task,
    TaskState,
)
from orchestration.services.bulk_retry import tasks_for_bulk_retry, tasks_retry_bulk
from orchestration.services.execution import task_run
from orchestration.services.queue import (
    QueueActionRefused,
    task_assign,
    task_claim,
    task_close,
    task_note_add,
    task_queue_cancel,
    task_release,
    task_resolve,
    task_retry_now,
    task_send_back,
)
from shop.models import Order, Refund
from tests.factories import submit_task
from tools.errors import RecoveryAction

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("queue_groups")]

REFUND = {"order_number": "A-1002", "amount_cents": 2000, "currency": "USD", "reason": "damaged box"}


def _operator(name: str, *extra: str) -> User:
    user = User.objects.create_user(name, is_staff=True)
    user.groups.add(Group.objects.get(name="operators"))
    for codename in extra:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return User.objects.get(pk=user.pk)  # a fresh instance: permissions are cached per instance


def _run(task: Task) -> Task:
    Task.objects.filter(pk=task.pk).update(next_run_at=timezone.now())
    task_run(task_id=str(task.pk), worker="worker:test")
    task.refresh_from_db()
    return task


@pytest.fixture
def exhausted(demo_orders: None) -> Task:
    """A refund whose retries were used up: the order stayed locked by its settlement."""
    Order.objects.filter(number="A-1002").update(settlement_locked_until=timezone.now() + timedelta(hours=1))
    task = submit_task(User.objects.create(username="client"), goal="Refund order A-1002", task_input=REFUND)
    for _ in range(4):
        task = _run(task)
    assert (task.state, task.handoff_reason) == (TaskState.MANUAL_REVIEW, HandoffReason.RETRIES_EXHAUSTED)
    return task


def _refused(code: str, action: Any, **kwargs: Any) -> QueueActionRefused:
    with pytest.raises(QueueActionRefused) as refused:
        action(**kwargs)
    assert refused.value.code == code, str(refused.value)
    return refused.value


def _audit(task: Task) -> list[tuple[str, str, str]]:
    return list(OperatorAction.objects.filter(task=task).values_list("kind", "actor__username", "note"))


# --- claims -------------------------------------------------------------------------------------------
def test_one_operator_holds_a_task_until_release_or_expiry(exhausted: Task, settings: Any) -> None:
    alice, bob = _operator("alice"), _operator("bob")
    claimed = task_claim(task_id=exhausted.pk, user=alice)
    assert claimed.claimed_by == alice and claimed.claim_expires_at is not None
    refusal = _refused("held_elsewhere", task_claim, task_id=exhausted.pk, user=bob)
    assert "alice holds this task" in str(refusal)
    _refused("held_elsewhere", task_retry_now, task_id=exhausted.pk, user=bob, note="mine", seen_handoff_at=None)

    Task.objects.filter(pk=exhausted.pk).update(claim_expires_at=timezone.now() - timedelta(seconds=1))
    assert task_claim(task_id=exhausted.pk, user=bob).claimed_by == bob, "an expired claim is free"
    task_release(task_id=exhausted.pk, user=bob)
    assert Task.objects.get(pk=exhausted.pk).claimed_by is None
    assert [kind for kind, _, _ in _audit(exhausted)] == ["claim", "claim", "release"]


@pytest.mark.django_db(transaction=True)
def test_two_operators_racing_to_claim_one_wins(demo_orders: None) -> None:
    Order.objects.filter(number="A-1002").update(settlement_locked_until=timezone.now() + timedelta(hours=1))
    task = submit_task(User.objects.create(username="client"), goal="Refund order A-1002", task_input=REFUND)
    for _ in range(4):
        task = _run(task)
    racers = [_operator(f"op{n}") for n in range(6)]
    outcomes: list[str] = []
    barrier = threading.Barrier(len(racers))

    def claim(user: User) -> None:
        barrier.wait()
        try:
            task_claim(task_id=task.pk, user=user)
            outcomes.append("won")
        except QueueActionRefused as refused:
            outcomes.append(refused.code)
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=claim, args=(user,)) for user in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["held_elsewhere"] * 5 + ["won"]
    assert OperatorAction.objects.filter(task=task, kind=OperatorActionKind.CLAIM).count() == 1


def test_assigning_needs_its_permission_and_a_colleague_who_works_the_queue(exhausted: Task) -> None:
    alice, bob, lead = _operator("alice"), _operator("bob"), _operator("lead", "assign_task")
    _refused("not_permitted", task_assign, task_id=exhausted.pk, user=alice, assignee=bob, note="yours")
    outsider = User.objects.create_user("outsider")
    _refused("invalid", task_assign, task_id=exhausted.pk, user=lead, assignee=outsider, note="yours")
    assert task_assign(task_id=exhausted.pk, user=lead, assignee=bob, note="refunds are yours").claimed_by == bob
    assert _audit(exhausted)[-1] == ("assign", "lead", "refunds are yours")


def test_acting_needs_the_queue_permission(exhausted: Task) -> None:
    stranger = User.objects.create_user("stranger", is_staff=True)
    for action in (task_claim, task_note_add):
        kwargs: dict[str, Any] = {"task_id": exhausted.pk, "user": stranger}
        _refused("not_permitted", action, **({"note": "hi"} if action is task_note_add else {}), **kwargs)
    _refused("not_permitted", task_retry_now, task_id=exhausted.pk, user=stranger, note="go", seen_handoff_at=None)
    assert Task.objects.get(pk=exhausted.pk).state == TaskState.MANUAL_REVIEW and not _audit(exhausted)


def test_an_override_acts_on_a_task_someone_else_holds(exhausted: Task, demo_orders: None) -> None:
    alice, lead = _operator("alice"), _operator("lead", "override_claim")
    task_claim(task_id=exhausted.pk, user=alice)
    note = task_note_add(task_id=exhausted.pk, user=lead, note="alice is away")
    assert note.kind == OperatorActionKind.NOTE
    task_release(task_id=exhausted.pk, user=lead)
    assert Task.objects.get(pk=exhausted.pk).claimed_by is None


# --- decisions --------------------------------------------------------------------------------------
def test_retry_now_grants_a_fresh_budget_and_the_task_completes_under_the_same_key(exhausted: Task) -> None:
    alice = _operator("alice")
    task_claim(task_id=exhausted.pk, user=alice)
    refund_step = Step.objects.get(task=exhausted, name="refund_order")
    key = refund_step.idempotency_key
    Order.objects.filter(number="A-1002").update(settlement_locked_until=None)  # the settlement finished

    task = task_retry_now(
        task_id=exhausted.pk, user=alice, note="settlement done", seen_handoff_at=exhausted.handed_off_at
    )
    assert (task.state, task.claimed_by) == (TaskState.PLANNED, None)
    assert Step.objects.get(pk=refund_step.pk).retries_forgiven == 4
    decision = RecoveryDecision.objects.filter(task=task).last()
    assert decision is not None and (decision.event, decision.action, decision.actor) == (
        RecoveryEvent.OPERATOR,
        RecoveryAction.RETRY,
        "user:alice",
    )
    assert "fresh retry budget for refund_order (its 4 attempts no longer count)" in decision.rule

    task = _run(task)
    assert task.state == TaskState.COMPLETED
    step = Step.objects.get(pk=refund_step.pk)
    assert (step.attempt, step.state, step.idempotency_key) == (5, StepState.SUCCEEDED, key)
    assert Refund.objects.filter(idempotency_key=key).count() == 1
    assert _audit(task)[-1] == ("retry", "alice", "settlement done")


def test_after_retry_now_a_still_failing_call_has_its_whole_budget_again(exhausted: Task) -> None:
    task = task_retry_now(task_id=exhausted.pk, user=_operator("alice"), note="try again", seen_handoff_at=None)
    task = _run(task)  # still locked: the first retry of the new budget
    assert task.state == TaskState.TOOL_FAILED_RETRYABLE
    retry = RecoveryDecision.objects.filter(task=task).last()
    assert retry is not None and retry.rule.endswith("retry 1 of 3")


def test_resolve_enters_the_result_the_tool_never_ran(exhausted: Task) -> None:
    alice = _operator("alice")
    order = Order.objects.get(number="A-1002")
    money = {"amount_cents": 2000, "currency": "USD"}
    address = {"line1": "1 Main St", "line2": None, "city": "Springfield", "postal_code": "12345", "country": "US"}
    data = {
        "refund_id": 99,
        "refunded": money,
        "order": {
            "order_number": "A-1002",
            "status": order.status,
            "total": money,
            "refunded": money,
            "shipping_address": address,
            "created_at": order.created_at.isoformat(),
            "updated_at": order.updated_at.isoformat(),
        },
        "created_at": timezone.now().isoformat(),
    }
    refusal = _refused(
        "invalid", task_resolve, task_id=exhausted.pk, user=alice, note="done by hand", data={"refund_id": "x"},
        seen_handoff_at=None,
    )  # fmt: skip
    assert "result" in refusal.field_errors and Task.objects.get(pk=exhausted.pk).state == TaskState.MANUAL_REVIEW

    task = task_resolve(task_id=exhausted.pk, user=alice, note="refunded by phone", data=data, seen_handoff_at=None)
    step = Step.objects.get(task=task, name="refund_order")
    assert (step.state, step.decided_by, step.output["data"]) == (StepState.SUCCEEDED, "user:alice", data)
    task = _run(task)
    assert task.state == TaskState.COMPLETED and task.result is not None and "99" in task.result["output"]
    assert not Refund.objects.exists(), "the tool did not run"
    assert Step.objects.get(pk=step.pk).attempt == 4


def test_close_ends_the_task_with_the_operators_result(exhausted: Task) -> None:
    task = task_close(
        task_id=exhausted.pk, user=_operator("alice"), note="customer called", output="Refunded by bank transfer.",
        seen_handoff_at=exhausted.handed_off_at,
    )  # fmt: skip
    assert task.state == TaskState.COMPLETED and task.finished_at is not None
    assert task.result == {"output": "Refunded by bank transfer.", "written_by": "user:alice"}
    assert _audit(task) == [("close", "alice", "customer called")]


def test_a_queue_cancel_is_audited(exhausted: Task) -> None:
    task = task_queue_cancel(task_id=exhausted.pk, user=_operator("alice"), note="duplicate", seen_handoff_at=None)
    assert task.state == TaskState.CANCELLED and "cancelled by user:alice: duplicate" in task.state_reason
    assert _audit(task) == [("cancel", "alice", "duplicate")]


def test_every_decision_needs_a_note(exhausted: Task) -> None:
    refusal = _refused(
        "invalid", task_retry_now, task_id=exhausted.pk, user=_operator("a"), note=" ", seen_handoff_at=None
    )
    assert refusal.field_errors == {"note": ["required"]}


def test_an_action_on_a_task_that_moved_meanwhile_is_refused_and_changes_nothing(exhausted: Task) -> None:
    alice = _operator("alice")
    seen = exhausted.handed_off_at
    assert seen is not None
    Task.objects.filter(pk=exhausted.pk).update(handed_off_at=seen + timedelta(seconds=5))  # handed off again
    refusal = _refused(
        "task_moved", task_close, task_id=exhausted.pk, user=alice, note="n", output="o", seen_handoff_at=seen
    )
    assert "handed off again since you opened it" in str(refusal)

    task_queue_cancel(task_id=exhausted.pk, user=alice, note="gone", seen_handoff_at=None)
    before = list(RecoveryDecision.objects.filter(task=exhausted).values_list("id", flat=True))
    refusal = _refused("task_moved", task_retry_now, task_id=exhausted.pk, user=alice, note="n", seen_handoff_at=None)
    assert "no longer waiting for a human: it is CANCELLED" in str(refusal)
    assert list(RecoveryDecision.objects.filter(task=exhausted).values_list("id", flat=True)) == before


def test_retry_does_not_fit_a_task_the_agent_handed_off(demo_orders: None) -> None:
    task = submit_task(User.objects.create(username="c"), goal="Escalate to a human", task_input={"reason": "VIP"})
    task = _run(task)
    assert (task.state, task.handoff_reason) == (TaskState.MANUAL_REVIEW, HandoffReason.AGENT_ASKED)
    refusal = _refused(
        "not_applicable", task_retry_now, task_id=task.pk, user=_operator("a"), note="n", seen_handoff_at=None
    )
    assert "the agent asked for a human: close the task with a final result" in str(refusal)
    refusal = _refused(
        "not_applicable", task_resolve, task_id=task.pk, user=_operator("b"), note="n", data={}, seen_handoff_at=None
    )
    assert "only a failed tool call can be resolved" in str(refusal)


def test_the_groups_hold_what_each_role_needs() -> None:
    operators = set(Group.objects.get(name="operators").permissions.values_list("codename", flat=True))
    engineers = set(Group.objects.get(name="platform engineers").permissions.values_list("codename", flat=True))
    assert {"work_queue", "decide_approval", "view_task"} <= operators
    assert not {"change_toolcontract", "change_agentconfig", "delete_task", "change_task"} & operators
    assert {"change_toolcontract", "change_agentconfig", "view_task"} <= engineers
    assert "work_queue" not in engineers


# --- send back ----------------------------------------------------------------------------------------
def _handed_off_by_the_agent() -> Task:
    task = submit_task(
        User.objects.create(username="c"), goal="Escalate to a human", task_input={"order_number": "A-1001"}
    )
    task = _run(task)
    assert (task.state, task.handoff_reason) == (TaskState.MANUAL_REVIEW, HandoffReason.AGENT_ASKED)
    return task


def test_send_back_gives_the_model_the_instruction_before_its_next_turn(demo_orders: None) -> None:
    task = _handed_off_by_the_agent()
    task = task_send_back(
        task_id=task.pk, user=_operator("alice"), note="the customer only wants the status",
        instruction="Look up order A-1001 and tell the customer its status", seen_handoff_at=task.handed_off_at,
    )  # fmt: skip
    assert task.state == TaskState.PLANNED
    instruction = Step.objects.get(task=task, kind=StepKind.OPERATOR_INSTRUCTION)
    assert instruction.output == {
        "text": "Look up order A-1001 and tell the customer its status",
        "before_turn": 2,
        "by": "user:alice",
    }
    task = _run(task)
    assert task.state == TaskState.COMPLETED and task.result is not None and "A-1001" in task.result["output"]
    turn_2 = Step.objects.get(task=task, ref="turn:2")
    last_item = turn_2.input["input"][-1]
    assert last_item == {"role": "user", "content": f"{OPERATOR_INSTRUCTION}{instruction.output['text']}"}
    lookup = Step.objects.get(task=task, name="lookup_order")
    assert lookup.state == StepState.SUCCEEDED
    turn_3 = Step.objects.get(task=task, ref="turn:3")
    assert turn_3.input["input"][: len(turn_2.input["input"])] == turn_2.input["input"], "the same place, later too"
    assert _audit(task) == [("send_back", "alice", "the customer only wants the status")]


def test_send_back_after_retries_gives_the_failure_to_the_model_as_final(exhausted: Task) -> None:
    task = task_send_back(
        task_id=exhausted.pk, user=_operator("alice"), note="settlement will take days",
        instruction="Look up order A-1002 instead and report its refunded amount", seen_handoff_at=None,
    )  # fmt: skip
    refund = Step.objects.get(task=task, name="refund_order")
    assert refund.decided_by == "user:alice" and refund.state == StepState.FAILED
    task = _run(task)
    assert task.state == TaskState.COMPLETED
    assert Step.objects.get(pk=refund.pk).attempt == 4, "the failed call is not run again"
    assert not Refund.objects.exists()


def test_send_back_does_not_fit_a_task_that_ran_out_of_turns_or_of_model(exhausted: Task) -> None:
    Task.objects.filter(pk=exhausted.pk).update(handoff_reason=HandoffReason.TURN_LIMIT)
    refusal = _refused(
        "not_applicable", task_send_back, task_id=exhausted.pk, user=_operator("a"), note="n", instruction="i",
        seen_handoff_at=None,
    )  # fmt: skip
    assert "used all its turns" in str(refusal)
    blank = _refused(
        "invalid", task_send_back, task_id=exhausted.pk, user=_operator("b"), note="n", instruction=" ",
        seen_handoff_at=None,
    )  # fmt: skip
    assert blank.field_errors == {"instruction": ["required"]}


# --- bulk retry ---------------------------------------------------------------------------------------
def test_a_bulk_retry_takes_every_task_of_one_reason_since_a_time(demo_orders: None) -> None:
    Order.objects.filter(number="A-1002").update(settlement_locked_until=timezone.now() + timedelta(hours=1))
    owner = User.objects.create(username="client")
    tasks = [submit_task(owner, goal="Refund order A-1002", task_input=REFUND) for _ in range(4)]
    for task in tasks:
        for _ in range(4):
            _run(task)
    before, held, *fresh = tasks
    Task.objects.filter(pk=before.pk).update(handed_off_at=timezone.now() - timedelta(days=1))
    task_claim(task_id=held.pk, user=_operator("bob"))
    since = timezone.now() - timedelta(hours=1)
    assert tasks_for_bulk_retry(reason=HandoffReason.RETRIES_EXHAUSTED, since=since).count() == 3

    lead = _operator("lead", "override_claim")  # even a lead's bulk retry leaves a held task to its holder
    outcome = tasks_retry_bulk(user=lead, reason=HandoffReason.RETRIES_EXHAUSTED, since=since, note="settlement fixed")
    assert sorted(outcome.retried) == sorted(str(t.pk) for t in fresh)
    assert [task_id for task_id, _ in outcome.refused] == [str(held.pk)] and "bob holds" in outcome.refused[0][1]
    states = dict(Task.objects.filter(pk__in=[t.pk for t in tasks]).values_list("pk", "state"))
    assert [states[t.pk] for t in tasks] == [TaskState.MANUAL_REVIEW, TaskState.MANUAL_REVIEW] + [TaskState.PLANNED] * 2
    assert (
        OperatorAction.objects.filter(kind=OperatorActionKind.RETRY, note="bulk retry: settlement fixed").count() == 2
    )


def test_a_bulk_retry_of_a_reason_no_retry_mends_is_refused(demo_orders: None) -> None:
    refusal = _refused(
        "invalid", tasks_retry_bulk, user=_operator("alice"), reason=HandoffReason.AGENT_ASKED,
        since=timezone.now(), note="n",
    )  # fmt: skip
    assert "reason" in refusal.field_errors
