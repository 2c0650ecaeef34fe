"""The task page's memory section: the session's summary now, what this task added to it, and each turn's record
of what memory sent the model (facts injected with their scores, facts learnt, facts the cap dropped, the window)."""

from __future__ import annotations

from typing import Any

from memory.models import Session, SessionWrite
from orchestration.models import Step, StepKind, Task
from orchestration.services.memory import RECALL_REF


def memory_figures(task: Task) -> dict[str, Any]:
    records = (
        Step.objects.filter(task=task, kind=StepKind.MODEL_TURN)
        .order_by("seq")
        .values_list("seq", "ref", "input__memory")
    )
    turns = [{"seq": seq, "ref": ref, **record} for seq, ref, record in records if isinstance(record, dict)]
    session = (
        Session.objects.filter(owner_id=task.owner_id, session_id=task.session_id).first() if task.session_id else None
    )
    recalled = Step.objects.filter(task=task, ref=RECALL_REF).values_list("output__version", flat=True).first()
    return {
        "session": session,
        "recalled_version": recalled,
        "writes": list(SessionWrite.objects.filter(task_id=str(task.pk)).order_by("version")),
        "turns": turns,
    }
