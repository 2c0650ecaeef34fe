"""decision_apply: the one service that carries out a decision (record, move, schedule)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import transaction

from orchestration.models import HandoffReason, RecoveryDecision, RecoveryEvent, Task, TaskState, Transition
from orchestration.policy.decision import Decision, Handoff, Move, Ruling
from orchestration.services.decisions import decision_apply
from tests.factories import submit_task
from tools.errors import RecoveryAction

pytestmark = pytest.mark.django_db


def _apply(task: Task, decision: Decision) -> Task:
    with transaction.atomic():
        locked = Task.objects.select_for_update().get(pk=task.pk)
        decision_apply(task=locked, decision=decision, actor="worker:test")
    task.refresh_from_db()
    return task


def test_a_handoff_records_its_ruling_moves_and_says_why() -> None:
    task = submit_task(User.objects.create(username="o"))
    ruling = Ruling(RecoveryEvent.TURN_LIMIT, RecoveryAction.HANDOFF, "too many turns", "at most 2 turns")
    decision = Decision(
        moves=(Move(Transition.HAND_OFF, "too many turns"),),
        rulings=(ruling,),
        handoff=Handoff(HandoffReason.TURN_LIMIT),
    )
    task = _apply(task, decision)
    assert (task.state, task.state_reason, task.handoff_reason) == (
        TaskState.MANUAL_REVIEW,
        "too many turns",
        HandoffReason.TURN_LIMIT,
    )
    assert task.handed_off_at is not None and task.lease_token is None and task.next_run_at is None
    recorded = RecoveryDecision.objects.get(task=task)
    assert (recorded.event, recorded.action, recorded.rule, recorded.actor) == (
        RecoveryEvent.TURN_LIMIT,
        RecoveryAction.HANDOFF,
        "at most 2 turns",
        "worker:test",
    )
    assert list(task.transitions.values_list("name", flat=True)) == ["submit", "hand_off"]


def test_a_handoff_that_does_not_say_why_is_refused_before_anything_is_written() -> None:
    task = submit_task(User.objects.create(username="o"))
    with pytest.raises(ValueError, match="says why"):
        _apply(task, Decision(moves=(Move(Transition.HAND_OFF, "?"),)))
    task.refresh_from_db()
    assert task.state == TaskState.RECEIVED and task.transitions.count() == 1
