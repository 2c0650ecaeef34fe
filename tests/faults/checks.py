"""What every fault case asserts: nothing lost, no effect applied twice, no illegal transition."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from decimal import Decimal

from django.db.models import Sum

from orchestration.models import RecoveryDecision, Step, StepKind, StepState, Task, TaskState
from shop.models import Order, OrderNote, Refund
from tests.workers import WorkerProcess

SETTLED_STATES = {TaskState.COMPLETED, TaskState.TOOL_FAILED_FATAL, TaskState.MANUAL_REVIEW, TaskState.CANCELLED}
# The demo tools whose call has a side effect, and the rows that effect writes (one per idempotency key).
EFFECTS: dict[str, type[OrderNote] | type[Refund]] = {"add_order_note": OrderNote, "refund_order": Refund}
WORKER_LOG_ALARMS = ("raised unexpected", "TransitionNotAllowed", "ConcurrentTransition")


def reloaded(tasks: Iterable[Task]) -> list[Task]:
    return list(Task.objects.filter(pk__in=[task.pk for task in tasks]).order_by("created_at"))


def all_settled(tasks: Sequence[Task]) -> bool:
    return Task.objects.filter(pk__in=[t.pk for t in tasks], state__in=SETTLED_STATES).count() == len(tasks)


def _legal_moves() -> set[tuple[str, str, str]]:
    field = Task._meta.get_field("state")
    return {(t.source, t.name, t.target) for t in field.get_all_transitions(Task)}


def transition_log_problems(task: Task) -> list[str]:
    """Every logged move is a legal edge of the state machine, and each starts where the previous one ended."""
    legal = _legal_moves()
    rows = list(task.transitions.order_by("id").values_list("name", "from_state", "to_state"))
    if not rows or rows[0] != ("submit", "", TaskState.RECEIVED):
        return [f"task {task.pk}: the log does not start with its submission: {rows[:1]}"]
    problems = []
    state: str = TaskState.RECEIVED
    for name, source, target in rows[1:]:
        if source != state:
            problems.append(f"task {task.pk}: {name} from {source}, but the task was {state}")
        if (source, name, target) not in legal:
            problems.append(f"task {task.pk}: illegal move {source} -{name}-> {target}")
        state = target
    if state != task.state:
        problems.append(f"task {task.pk}: the log ends in {state}, the task is {task.state}")
    return problems


def effect_problems(tasks: Sequence[Task]) -> tuple[int, list[str]]:
    """(effects applied more than once or without a succeeded step, other problems: effects missing, money off)."""
    duplicates = 0
    problems = []
    for tool, model in EFFECTS.items():
        applied = Counter(model.objects.values_list("idempotency_key", flat=True))
        succeeded = set(
            Step.objects.filter(task__in=tasks, name=tool, state=StepState.SUCCEEDED).values_list(
                "idempotency_key", flat=True
            )
        )
        for key, count in applied.items():
            duplicates += count - 1 if key in succeeded else count
        problems += [f"{tool} {key}: the step succeeded but its effect is missing" for key in succeeded - set(applied)]
    for order in Order.objects.all():
        refunded = Refund.objects.filter(order=order).aggregate(total=Sum("amount_cents"))["total"] or 0
        if refunded != order.refunded_cents:
            problems.append(
                f"order {order.number}: refunds add up to {refunded}, the order says {order.refunded_cents}"
            )
    return duplicates, problems


def nothing_lost_problems(tasks: Sequence[Task]) -> list[str]:
    """Every task settled, no step left running, every move legal, every effect once."""
    problems = [f"task {t.pk} is still {t.state}: {t.state_reason}" for t in tasks if t.state not in SETTLED_STATES]
    problems += [
        f"task {step.task_id}: step #{step.seq} {step.name} is still RUNNING"
        for step in Step.objects.filter(task__in=tasks, state=StepState.RUNNING)
    ]
    for task in tasks:
        problems += transition_log_problems(task) + budget_problems(task)
    duplicates, effects = effect_problems(tasks)
    if duplicates:
        problems.append(f"{duplicates} side effects applied more than once (or without a succeeded step)")
    return problems + effects


def budget_problems(task: Task) -> list[str]:
    """A task spends past its budget by at most one model request (the one whose model wrote more than allowed)."""
    turns = Step.objects.filter(task=task, kind=StepKind.MODEL_TURN)
    largest = max(((t.input_tokens + t.output_tokens, t.cost) for t in turns), default=(0, Decimal("0")))
    problems = []
    spent = task.input_tokens + task.output_tokens
    if task.token_budget is not None and spent > task.token_budget + largest[0]:
        problems.append(f"task {task.pk}: {spent} tokens spent, budget {task.token_budget}: more than one call over")
    if task.cost_budget is not None and task.cost > task.cost_budget + largest[1]:
        problems.append(f"task {task.pk}: USD {task.cost} spent, budget {task.cost_budget}: more than one call over")
    return problems


def worker_log_alarms(workers: Iterable[WorkerProcess]) -> list[str]:
    return [line for w in workers for line in w.log().splitlines() if any(alarm in line for alarm in WORKER_LOG_ALARMS)]


def outcomes(tasks: Sequence[Task]) -> Counter[str]:
    return Counter(str(task.state) for task in tasks)


def decisions_of(step: Step) -> list[RecoveryDecision]:
    return list(RecoveryDecision.objects.filter(step=step).order_by("id"))


def tool_steps(task: Task) -> list[Step]:
    return list(Step.objects.filter(task=task, kind=StepKind.TOOL_CALL).order_by("seq"))
