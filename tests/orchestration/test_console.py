"""The operator console in the admin, through the test client: the queue, a task's page, and every action as a
form that calls the services (a form error changes nothing), within bounded query counts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from orchestration.models import OperatorAction, Step, StepKind, StepState, Task, TaskState
from orchestration.services.execution import task_run
from shop.models import Order
from tests.factories import submit_task
from tools.models import ToolContract

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("queue_groups", "demo_orders")]

REFUND = {"order_number": "A-1002", "amount_cents": 2000, "currency": "USD", "reason": "damaged box"}
QUEUE = "/admin/orchestration/queuetask/"


def _run(task: Task) -> Task:
    Task.objects.filter(pk=task.pk).update(next_run_at=timezone.now())
    task_run(task_id=str(task.pk), worker="worker:test")
    task.refresh_from_db()
    return task


def _exhausted(owner: User) -> Task:
    Order.objects.filter(number="A-1002").update(settlement_locked_until=timezone.now() + timedelta(hours=1))
    task = submit_task(owner, goal="Refund order A-1002", task_input=REFUND)
    for _ in range(4):
        task = _run(task)
    assert task.state == TaskState.MANUAL_REVIEW
    return task


def _logged_in(name: str, group: str = "operators") -> Client:
    user = User.objects.create_user(name, is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client = Client()
    client.force_login(user)
    return client


def _page(task: Task) -> str:
    return reverse("admin:orchestration_task_change", args=[task.pk])


def _act(task: Task, action: str) -> str:
    return reverse("admin:orchestration_task_act", args=[task.pk, action])


@pytest.fixture
def owner() -> User:
    return User.objects.create_user("client")


def test_the_queue_lists_waiting_tasks_oldest_first_with_their_reason(owner: User) -> None:
    first, second = _exhausted(owner), _exhausted(owner)
    Task.objects.filter(pk=first.pk).update(handed_off_at=timezone.now() - timedelta(hours=3))
    page = _logged_in("alice").get(QUEUE).content.decode()
    assert page.index(str(first.pk)[:8]) < page.index(str(second.pk)[:8])
    assert "retries used up" in page and "ORDER_LOCKED" in page and "refund_order" in page
    assert "past SLA" in page, "the task waiting three hours is past the one-hour SLA"
    overdue = _logged_in("bob").get(QUEUE, {"overdue": "yes"}).content.decode()
    assert str(first.pk)[:8] in overdue and str(second.pk)[:8] not in overdue


def test_held_by_me_and_unheld_filters(owner: User) -> None:
    mine, free = _exhausted(owner), _exhausted(owner)
    alice = _logged_in("alice")
    assert alice.post(_act(mine, "claim")).status_code == 302
    held = alice.get(QUEUE, {"held": "me"}).content.decode()
    assert str(mine.pk)[:8] in held and str(free.pk)[:8] not in held
    unheld = alice.get(QUEUE, {"held": "nobody"}).content.decode()
    assert str(free.pk)[:8] in unheld and str(mine.pk)[:8] not in unheld


def test_the_task_page_tells_the_whole_story_and_offers_no_edit_or_delete(owner: User) -> None:
    task = _exhausted(owner)
    page = _logged_in("alice").get(_page(task)).content.decode()
    for part in ('id="timeline"', 'id="decisions"', 'id="transitions"', 'id="operator-actions"', task.trace_id):
        assert part in page, part
    assert "refund_order" in page and "ORDER_LOCKED" in page and "retries used up" in page
    assert "<details>" in page, "JSON is collapsed"
    for forbidden in ('name="_save"', "deletelink", "Save and continue"):
        assert forbidden not in page
    for action in ("action-retry", "action-resolve", "action-close", "action-cancel", "action-note"):
        assert action in page, action


def test_a_held_call_is_decided_on_the_task_page_and_its_pause_reads_as_a_wait(owner: User) -> None:
    big = {**REFUND, "amount_cents": 90000}
    task = _run(submit_task(owner, goal="Refund order A-1002", task_input=big))
    assert task.handoff_reason == "approval_needed"
    alice = _logged_in("alice")
    page = alice.get(_page(task)).content.decode()
    assert "action-approval" in page and "Error running tool" not in page
    assert "paused: the run waits" in page
    response = alice.post(
        _act(task, "approval"),
        {"verdict": "approve", "note": "checked with finance", "confirm": "on", "seen_handoff_at": ""},
    )
    assert response.status_code == 302
    assert Task.objects.get(pk=task.pk).state == TaskState.PLANNED
    assert OperatorAction.objects.filter(task=task, kind="approve", note="checked with finance").exists()


def test_retry_from_the_page_needs_a_confirmation_and_a_note(owner: User) -> None:
    task = _exhausted(owner)
    alice = _logged_in("alice")
    unconfirmed = alice.post(_act(task, "retry"), {"note": "go"})
    assert unconfirmed.status_code == 400 and "This field is required" in unconfirmed.content.decode()
    assert Task.objects.get(pk=task.pk).state == TaskState.MANUAL_REVIEW
    done = alice.post(_act(task, "retry"), {"note": "settlement finished", "confirm": "on"})
    assert done.status_code == 302
    assert Task.objects.get(pk=task.pk).state == TaskState.PLANNED


def test_a_result_that_breaks_the_schema_is_a_form_error_and_changes_nothing(owner: User) -> None:
    task = _exhausted(owner)
    response = _logged_in("alice").post(
        _act(task, "resolve"),
        {"note": "by phone", "confirm": "on", "result__refund_id": "7", "result__created_at": "not a date"},
    )
    assert response.status_code == 400
    assert "result schema" in response.content.decode() or "required" in response.content.decode()
    step = Step.objects.get(task=task, name="refund_order")
    assert step.state == StepState.FAILED and not step.decided_by
    assert not OperatorAction.objects.filter(task=task).exists()


def test_an_action_on_a_task_that_moved_meanwhile_is_refused_with_a_message(owner: User) -> None:
    task = _exhausted(owner)
    seen = task.handed_off_at
    Task.objects.filter(pk=task.pk).update(handed_off_at=timezone.now())
    response = _logged_in("alice").post(
        _act(task, "close"),
        {"note": "n", "output": "o", "confirm": "on", "seen_handoff_at": seen.isoformat() if seen else ""},
        follow=True,
    )
    assert "handed off again since you opened it" in response.content.decode()
    assert Task.objects.get(pk=task.pk).state == TaskState.MANUAL_REVIEW


def test_an_operator_cannot_edit_contracts_and_an_engineer_cannot_work_the_queue(owner: User) -> None:
    contract = ToolContract.objects.get(name="refund_order")
    change = reverse("admin:tools_toolcontract_change", args=[contract.pk])
    alice = _logged_in("alice")
    assert alice.post(change, {"description": "changed"}).status_code == 403
    assert 'name="_save"' not in alice.get(change).content.decode(), "a view-only page for operators"
    task = _exhausted(owner)
    engineer = _logged_in("erin", group="platform engineers")
    response = engineer.post(_act(task, "retry"), {"note": "n", "confirm": "on"}, follow=True)
    assert "Not done" in response.content.decode() and "permission" in response.content.decode()
    assert Task.objects.get(pk=task.pk).state == TaskState.MANUAL_REVIEW
    assert "action-retry" not in engineer.get(_page(task)).content.decode()


def _queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def test_the_queue_page_costs_the_same_queries_for_two_tasks_or_twenty(owner: User) -> None:
    alice = _logged_in("alice")
    for _ in range(2):
        _exhausted(owner)
    few = _queries(alice, QUEUE)
    for _ in range(18):
        copy = submit_task(owner, goal="Refund order A-1002", task_input=REFUND)
        Task.objects.filter(pk=copy.pk).update(
            state=TaskState.MANUAL_REVIEW, handoff_reason="retries_exhausted", handed_off_at=timezone.now()
        )
    assert _queries(alice, QUEUE) == few


def test_the_task_page_costs_the_same_queries_for_three_steps_or_sixty(owner: User) -> None:
    alice = _logged_in("alice")
    task = _exhausted(owner)
    few = _queries(alice, _page(task))
    start = timezone.now()
    Step.objects.bulk_create(
        Step(
            task=task, seq=100 + n, kind=StepKind.TOOL_CALL, ref=f"call:9:{n}", name="lookup_order",
            idempotency_key=f"bulk-{task.pk}-{n}", trace_id=task.trace_id, input={"n": n}, output={"ok": True},
            started_at=start, state=StepState.SUCCEEDED,
        )
        for n in range(56)
    )  # fmt: skip
    failed = Step.objects.get(task=task, name="refund_order")
    Step.objects.filter(pk=failed.pk).update(seq=1000)  # still the last step, so the page offers the same forms
    assert _queries(alice, _page(task)) == few


def test_a_bulk_retry_shows_the_count_before_it_acts(owner: User) -> None:
    tasks = [_exhausted(owner) for _ in range(2)]
    alice = _logged_in("alice")
    url = reverse("admin:orchestration_queuetask_bulk_retry")
    assert "bulk-retry" in alice.get(QUEUE).content.decode()
    since = (timezone.now() - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    form = {"reason": "retries_exhausted", "since": since, "note": "settlement fixed"}
    preview = alice.post(url, form).content.decode()
    assert "<strong>2</strong> tasks would be retried now" in preview
    assert {t.state for t in Task.objects.filter(pk__in=[t.pk for t in tasks])} == {TaskState.MANUAL_REVIEW}
    assert 'name="shown_count" value="2"' in preview
    stale = alice.post(url, {**form, "confirm": "on", "shown_count": "5"}, follow=True).content.decode()
    assert "not the count you were shown" in stale
    assert {t.state for t in Task.objects.filter(pk__in=[t.pk for t in tasks])} == {TaskState.MANUAL_REVIEW}
    done = alice.post(url, {**form, "confirm": "on", "shown_count": "2"}, follow=True).content.decode()
    assert "Retried 2 task(s)" in done
    assert {t.state for t in Task.objects.filter(pk__in=[t.pk for t in tasks])} == {TaskState.PLANNED}


def test_a_malformed_task_id_is_a_404_not_a_500(owner: User) -> None:
    alice = _logged_in("alice")
    assert alice.get("/admin/orchestration/task/not-a-uuid/change/").status_code == 404
    assert alice.post("/admin/orchestration/task/not-a-uuid/act/retry/", {"note": "n"}).status_code == 404
    assert alice.post("/admin/orchestration/task/a/b/act/retry/", {"note": "n"}).status_code == 404


def test_an_approval_held_by_another_operator_is_theirs_to_decide(owner: User) -> None:
    task = _run(submit_task(owner, goal="Refund order A-1002", task_input={**REFUND, "amount_cents": 90000}))
    bob = _logged_in("bob")
    assert bob.post(_act(task, "claim")).status_code == 302
    response = _logged_in("alice").post(
        _act(task, "approval"), {"verdict": "approve", "note": "ok", "confirm": "on"}, follow=True
    )
    assert "bob holds this task" in response.content.decode()
    assert Task.objects.get(pk=task.pk).state == TaskState.MANUAL_REVIEW


def test_a_steps_snapshots_load_when_opened(owner: User) -> None:
    task = _exhausted(owner)
    alice = _logged_in("alice")
    page = alice.get(_page(task)).content.decode()
    assert (
        'data-src="/admin/orchestration/task/' in page
        and "A-1002" not in page.split('id="timeline"')[1].split("</table>")[0]
    )
    step = Step.objects.get(task=task, name="refund_order")
    url = reverse("admin:orchestration_task_snapshot", args=[task.pk, step.seq, "input"])
    shown = alice.get(url)
    assert shown.status_code == 200 and '"order_number": "A-1002"' in shown.content.decode()
    assert (
        alice.get(reverse("admin:orchestration_task_snapshot", args=[task.pk, step.seq, "secrets"])).status_code == 404
    )
    stranger = Client()
    stranger.force_login(User.objects.create_user("nobody", is_staff=True))
    assert stranger.get(url).status_code == 403
