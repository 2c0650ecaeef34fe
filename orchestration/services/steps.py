"""Step rows: created or restarted before a step runs, closed when it ends. Keys derive from the task's."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Max
from django.utils import timezone

from agent_runtime.journal import ModelCall
from lib.strict_json import loads_strict, without_nul
from memory.vault import protect
from orchestration import metrics
from orchestration.models import Step, StepKind, StepState, Task
from orchestration.selectors import task_redaction_scope


def turn_ref(turn: int, call: ModelCall = "turn") -> str:
    """A model request's step: "turn:3" (the answer of turn 3), "summary:3" (memory's facts before it)."""
    return f"{call}:{turn}"


def ref_turn(ref: str) -> int:
    """The turn a model step's ref names."""
    return int(ref.split(":", 2)[1])


def call_ref(turn: int, call_id: str) -> str:
    # The turn is part of the identity: some OpenAI-compatible servers reuse call ids ("call_0") across turns,
    # and a step must never replay another turn's result (the SDK refuses such reuse too).
    return f"call:{turn}:{call_id}"


MODEL_STEP_KINDS: dict[ModelCall, StepKind] = {"turn": StepKind.MODEL_TURN, "summary": StepKind.SUMMARY}


def step_key(task: Task, ref: str) -> str:
    """Globally unique and stable across retries: the owner scopes the client's key, `ref` names the step."""
    return f"u{task.owner_id}:{task.idempotency_key}:{ref}"


class TaskSteps:
    """The steps of one task as its run knows them: read once when the run starts, kept current by the run itself.

    Sound because every step of a running task is written under its lease, with its row locked: a run that still
    holds the lease (checked under the lock before every write) has seen every change. Saves a run the lookups a
    replay and every new step would otherwise make (is it recorded? does its row exist? which seq is next?).
    """

    def __init__(self, task_id: str) -> None:
        # The inputs (request snapshots) stay in the database: replay needs only what steps returned.
        self.by_ref: dict[str, Step] = {s.ref: s for s in Step.objects.filter(task_id=task_id).defer("input")}
        self.last_seq = max((s.seq for s in self.by_ref.values()), default=0)

    def recorded(self, ref: str) -> Step | None:
        return self.by_ref.get(ref)

    def running(self) -> Step | None:
        """The last step still RUNNING, if any: one its worker left behind, when a run starts."""
        running = [step for step in self.by_ref.values() if step.state == StepState.RUNNING]
        return max(running, key=lambda step: step.seq, default=None)

    def any_tool_call(self) -> bool:
        """Whether the task has ever called a tool: only then can an operator have decided on a held call."""
        return any(step.kind == StepKind.TOOL_CALL for step in self.by_ref.values())

    def added(self, step: Step) -> None:
        self.by_ref[step.ref] = step
        self.last_seq = max(self.last_seq, step.seq)


def step_begin(
    *,
    task: Task,
    kind: StepKind,
    ref: str,
    name: str,
    step_input: dict[str, Any],
    deadline_seconds: float = 0,
    contract_version_id: int | None = None,
    known: TaskSteps | None = None,
) -> Step:
    """Persist that a step is about to run: a new row, or the next attempt of the same row and key.

    `deadline_seconds` (the tool's timeout, the model-call timeout) sets when this attempt must have ended. A run
    passes the steps it `known`s, so that nothing is looked up; other callers let the database say.
    """
    step = known.recorded(ref) if known is not None else Step.objects.filter(task=task, ref=ref).first()
    now = timezone.now()
    step_input = protect(step_input, scope=task_redaction_scope(str(task.pk)))
    deadline_at = now + timedelta(seconds=deadline_seconds) if deadline_seconds > 0 else None
    if step is None:
        last_seq = known.last_seq if known is not None else _last_seq(task)
        step = Step.objects.create(
            task=task,
            seq=(last_seq or 0) + 1,
            kind=kind,
            ref=ref,
            name=name,
            idempotency_key=step_key(task, ref),
            trace_id=task.trace_id,
            input=without_nul(step_input),
            started_at=now,
            deadline_at=deadline_at,
            contract_version_id=contract_version_id,
        )
    else:
        step.restart()
        step.attempt += 1
        step.input = without_nul(step_input)
        step.contract_version_id = contract_version_id
        step.output = None
        step.started_at = now
        step.deadline_at = deadline_at
        step.finished_at = None
        step.duration_ms = None
        step.save()
        metrics.step_started_count(step)
    if known is not None:
        known.added(step)
    return step


def _last_seq(task: Task) -> int:
    return Step.objects.filter(task=task).aggregate(top=Max("seq"))["top"] or 0


def step_close(
    *,
    step: Step,
    succeeded: bool,
    output: dict[str, Any],
    input_tokens: int = 0,
    output_tokens: int = 0,
    cost: Decimal = Decimal("0"),
) -> None:
    if succeeded:
        step.succeed()
    else:
        step.fail()
    step.output = without_nul(protect(output, scope=task_redaction_scope(str(step.task_id))))
    step.finished_at = timezone.now()
    step.duration_ms = int((step.finished_at - step.started_at).total_seconds() * 1000)
    step.input_tokens = input_tokens
    step.output_tokens = output_tokens
    step.cost = cost
    step.save()
    metrics.step_ended_count(step)


def step_instruction_record(*, task: Task, actor: str, text: str, before_turn: int) -> Step:
    """Journal an operator's instruction, to reach the model before turn `before_turn`, on every replay alike."""
    ref = f"instruction:{Step.objects.filter(task=task, kind=StepKind.OPERATOR_INSTRUCTION).count() + 1}"
    step = step_begin(task=task, kind=StepKind.OPERATOR_INSTRUCTION, ref=ref, name=actor, step_input={"text": text})
    step_close(step=step, succeeded=True, output={"text": text, "before_turn": before_turn, "by": actor})
    return step


def tool_arguments_snapshot(arguments: str) -> dict[str, Any]:
    """A tool call's arguments as its step records them: the JSON value, or the raw text if it is not JSON."""
    try:
        parsed = loads_strict(arguments)
    except ValueError:  # JSONDecodeError included
        return {"arguments_raw": arguments}
    return {"arguments": parsed}


def tool_arguments_object(arguments: str) -> dict[str, Any]:
    """The call's arguments as a JSON object, or empty (unparsable text, or not an object)."""
    parsed = tool_arguments_snapshot(arguments).get("arguments")
    return parsed if isinstance(parsed, dict) else {}
