"""What the counters must say, read from the journal: each figure as a sum over steps, tasks and transitions.

A step row keeps only its latest attempt, but every attempt before it ended (failed, or closed as lost) before
the next began, and only a step's last attempt can succeed; so the attempts that ended are `attempt` per step,
less one for a step still running.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import Metric
from prometheus_client.parser import text_string_to_metric_families

from orchestration.metrics import FINISH_OUTCOMES
from orchestration.models import Step, StepKind, StepState, Task, TaskState, TaskTransition

Key = tuple[str, frozenset[tuple[str, str]]]


@dataclass(frozen=True)
class Samples:
    """Sample values summed over every label not named in a query (instances, agents, versions)."""

    values: dict[Key, float]

    @classmethod
    def of(cls, families: Iterable[Metric]) -> Samples:
        values: dict[Key, float] = {}
        for family in families:
            for sample in family.samples:
                key = (sample.name, frozenset(sample.labels.items()))
                values[key] = values.get(key, 0.0) + sample.value
        return cls(values)

    @classmethod
    def parse(cls, text: str) -> Samples:
        return cls.of(text_string_to_metric_families(text))

    def sum(self, name: str, **labels: str) -> float:
        wanted = set(labels.items())
        return sum(value for (sample, have), value in self.values.items() if sample == name and wanted <= have)

    def plus(self, other: Samples) -> Samples:
        keys = set(self.values) | set(other.values)
        return Samples({key: self.values.get(key, 0.0) + other.values.get(key, 0.0) for key in keys})

    def minus(self, before: Samples) -> Samples:
        keys = set(self.values) | set(before.values)
        return Samples({key: self.values.get(key, 0.0) - before.values.get(key, 0.0) for key in keys})


def _ended(step: Step) -> int:
    return step.attempt - (1 if step.state == StepState.RUNNING else 0)


def journal_expectations(tasks: Iterable[Task]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, labels) -> the value the journal of `tasks` implies."""
    task_ids = [task.pk for task in tasks]
    steps = list(Step.objects.filter(task_id__in=task_ids))
    expected: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
    for step in steps:
        kind = (("kind", str(step.kind)),)
        succeeded = 1 if step.state == StepState.SUCCEEDED and not step.decided_by else 0
        expected[("agent_steps_total", (*kind, ("outcome", "succeeded")))] += succeeded
        expected[("agent_steps_total", (*kind, ("outcome", "failed")))] += _ended(step) - succeeded
        expected[("agent_step_retries_total", kind)] += step.attempt - 1
        if step.kind == StepKind.TOOL_CALL:
            tool = (("tool", step.name),)
            expected[("agent_tool_calls_total", (*tool, ("outcome", "ok")))] += succeeded
            expected[("agent_tool_calls_total", tool)] += _ended(step)
            expected[("agent_tool_call_duration_seconds_count", tool)] += _ended(step)
        if step.kind == StepKind.MODEL_TURN:
            expected[("gen_ai_client_operation_duration_seconds_count", ())] += _ended(step)
            if step.state == StepState.SUCCEEDED:
                expected[("gen_ai_client_token_usage_count", (("gen_ai_token_type", "input"),))] += 1
    rows = list(Task.objects.filter(pk__in=task_ids))
    expected[("gen_ai_client_token_usage_sum", (("gen_ai_token_type", "input"),))] += sum(t.input_tokens for t in rows)
    expected[("gen_ai_client_token_usage_sum", (("gen_ai_token_type", "output"),))] += sum(
        t.output_tokens for t in rows
    )
    expected[("agent_cost_usd_total", ())] += float(sum(t.cost for t in rows))
    expected[("agent_tasks_submitted_total", ())] += len(rows)
    for task in rows:
        if task.state in FINISH_OUTCOMES:
            expected[("agent_tasks_finished_total", (("outcome", FINISH_OUTCOMES[TaskState(task.state)]),))] += 1
    handoffs = TaskTransition.objects.filter(task_id__in=task_ids, to_state=TaskState.MANUAL_REVIEW)
    expected[("agent_handoffs_total", ())] += handoffs.exclude(from_state=TaskState.MANUAL_REVIEW).count()
    return dict(expected)


def reconciliation_problems(samples: Samples, tasks: Iterable[Task]) -> list[str]:
    """Every figure where the counters and the journal disagree, as readable lines (empty when all agree)."""
    problems = []
    for (name, labels), want in sorted(journal_expectations(tasks).items()):
        have = samples.sum(name, **dict(labels))
        if abs(have - want) > 1e-6 * max(1.0, abs(want)):
            problems.append(f"{name}{dict(labels)}: counters say {have:g}, the journal says {want:g}")
    return problems
