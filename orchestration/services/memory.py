"""A task's session memory: recalled once when the task first runs (a journalled step), merged back when it settles.

Both ends read only what the journal holds, so a crash anywhere loses nothing: a replay gets the recorded recall,
and the merge (in the transaction that settles the task) rebuilds what the task learnt from its turns' snapshots.
"""

from __future__ import annotations

import json
from typing import Any

from agent_runtime.catalog import agent_version
from agent_runtime.tokens import count_text_tokens
from memory.composer import Recalled
from memory.sessions import Contribution, session_merge, session_recall
from memory.summary import Fact, extract_facts
from memory.window import Item, complete, turn_groups
from orchestration.models import Step, StepKind, StepState, Task
from orchestration.services.steps import TaskSteps, call_ref, ref_turn, step_begin, step_close

RECALL_REF = "memory:recall"


def task_memory_recall(task: Task, known: TaskSteps | None = None) -> Recalled:
    """What the locked task's session held when the task started: read and journalled on its first run, the
    recorded snapshot on every run after (even if the session has moved on since). Nothing for a task without a
    session."""
    if not task.session_id:
        return Recalled()
    recorded = _recorded_recall(task)
    if recorded is None:
        recalled = session_recall(owner_id=task.owner_id, session_id=task.session_id)
        step = step_begin(
            task=task,
            kind=StepKind.MEMORY_RECALL,
            ref=RECALL_REF,
            name="session memory",
            step_input={"session_id": task.session_id},
            known=known,
        )
        step_close(step=step, succeeded=True, output=recalled.to_json())
        recorded = step.output
    return Recalled.from_json(recorded or {})


def task_memory_settle(task: Task) -> None:
    """Merge what the locked task learnt into its session (the caller's transaction settles the task)."""
    if not task.session_id or task.agent_version_id is None:
        return
    profile = agent_version(task.agent_version_id)
    if profile is None:
        return
    contribution = _contribution(task)
    if contribution is None:
        return
    session_merge(
        owner_id=task.owner_id,
        session_id=task.session_id,
        contribution=contribution,
        settings=profile.memory,
        count=lambda text: count_text_tokens(text, model=profile.model),
    )


def _contribution(task: Task) -> Contribution | None:
    """The task's facts (each turn's record of what it learnt, and what its last answer and tools said) and its
    last turns, from its steps."""
    turns = sorted(
        Step.objects.filter(task=task, kind=StepKind.MODEL_TURN).only("ref", "state", "input", "output"),
        key=lambda step: ref_turn(step.ref),
    )
    if not turns:
        return None
    recalled_turns = int((_recorded_recall(task) or {}).get("turns", 0))
    learnt = [Fact.from_json(fact) for step in turns for fact in _memory_of(step).get("learnt", ())]
    last = turns[-1]
    sent = (last.input or {}).get("input") or []
    own: list[Item] = list(sent[int(_memory_of(last).get("own_from", 0)) :])
    if last.state == StepState.SUCCEEDED and last.output:
        tail = _answer_with_outputs(task, last)
        learnt += extract_facts(tail, turn=recalled_turns + ref_turn(last.ref))
        own += tail
    groups = [group for group in turn_groups(own) if complete(group)]
    return Contribution(task_id=str(task.pk), learnt=learnt, groups=groups, turns=ref_turn(last.ref))


def _answer_with_outputs(task: Task, turn: Step) -> list[Item]:
    """The last turn's answer, and the results of the tool calls it made (as the model would have read them)."""
    answer: list[Item] = [dict(item) for item in (turn.output or {}).get("output", ())]
    refs = {
        call_ref(ref_turn(turn.ref), item["call_id"]): item["call_id"]
        for item in answer
        if item.get("type") == "function_call"
    }
    results = dict(Step.objects.filter(task=task, ref__in=refs, output__isnull=False).values_list("ref", "output"))
    outputs = [  # in the order the model made the calls
        {"type": "function_call_output", "call_id": call_id, "output": json.dumps(results[ref], sort_keys=True)}
        for ref, call_id in refs.items()
        if ref in results
    ]
    return answer + outputs


def _memory_of(step: Step) -> dict[str, Any]:
    memory = (step.input or {}).get("memory")
    return memory if isinstance(memory, dict) else {}


def _recorded_recall(task: Task) -> dict[str, Any] | None:
    recorded = Step.objects.filter(task=task, ref=RECALL_REF, state=StepState.SUCCEEDED)
    return recorded.values_list("output", flat=True).first()
