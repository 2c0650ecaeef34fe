from __future__ import annotations

import pytest
from agents.tracing import get_trace_provider
from django.contrib.auth.models import User

from agent_runtime.tracing import COLLECTOR
from orchestration.models import TaskSpan, TaskState
from orchestration.services.execution import task_run
from tests.factories import submit_task


@pytest.mark.django_db
def test_spans_are_kept_with_the_task_and_nothing_is_exported_without_a_key(demo_orders: None) -> None:
    task = submit_task(
        User.objects.create(username="c"), goal="Look up order A-1001", task_input={"order_number": "A-1001"}
    )
    task_run(task_id=str(task.pk), worker="worker:test")
    task.refresh_from_db()
    assert task.state == TaskState.COMPLETED
    kinds = list(TaskSpan.objects.filter(task=task).values_list("kind", flat=True))
    assert "agent" in kinds and kinds.count("function") == 1
    function = TaskSpan.objects.get(task=task, kind="function")
    assert function.data["name"] == "lookup_order" and function.started_at is not None
    processors = get_trace_provider()._multi_processor._processors  # type: ignore[attr-defined]
    assert list(processors) == [COLLECTOR], "with no OPENAI_API_KEY the SDK's exporter must be gone"


def test_export_to_openai_needs_a_key_and_the_switch(settings: object) -> None:
    from agents.tracing.processors import default_processor

    from agent_runtime.tracing import install_tracing

    settings.OPENAI_API_KEY, settings.OPENAI_TRACE_EXPORT = "sk-test", True  # type: ignore[attr-defined]
    try:
        install_tracing()
        assert list(get_trace_provider()._multi_processor._processors) == [default_processor(), COLLECTOR]  # type: ignore[attr-defined]
    finally:
        settings.OPENAI_API_KEY, settings.OPENAI_TRACE_EXPORT = "", False  # type: ignore[attr-defined]
        install_tracing()
    assert list(get_trace_provider()._multi_processor._processors) == [COLLECTOR]  # type: ignore[attr-defined]
