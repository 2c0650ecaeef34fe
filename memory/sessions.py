"""Sessions: what a task recalls when it starts, and how what it learnt is merged back when it settles."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction

from memory.composer import MemorySettings, Recalled
from memory.models import Session, SessionWrite
from memory.summary import Count, Fact, Summary, summary_update
from memory.window import Group, complete, portable


def session_recall(*, owner_id: int, session_id: str) -> Recalled:
    """The session as it is now (empty if it has no task yet). The caller journals it."""
    session = Session.objects.filter(owner_id=owner_id, session_id=session_id).first()
    if session is None:
        return Recalled()
    return Recalled.from_json(
        {
            "version": session.version,
            "turns": session.turns,
            "facts": session.facts,
            "window": [entry["items"] for entry in session.window],
        }
    )


@dataclass(frozen=True)
class Contribution:
    """What one task adds to its session."""

    task_id: str
    learnt: Sequence[Fact]
    groups: Sequence[Group]
    """The task's own last turns (its message first)."""
    turns_until: int
    """The session turn the task reached (its recalled turns plus its own)."""


def session_merge(
    *, owner_id: int, session_id: str, contribution: Contribution, settings: MemorySettings, count: Count
) -> SessionWrite:
    """Merge a settled task's facts and turns into the session, under its row lock: a concurrent task's merge
    waits and then merges onto this one, so neither's facts are lost. Merging the same task again (it settled,
    was sent back and settled again) replaces its turns and restates its facts, adding nothing twice."""
    with transaction.atomic():
        Session.objects.get_or_create(owner_id=owner_id, session_id=session_id)
        session = Session.objects.select_for_update().get(owner_id=owner_id, session_id=session_id)
        known = Summary(tuple(Fact(str(fact["text"]), int(fact["turn"])) for fact in session.facts))
        update = summary_update(known, contribution.learnt, cap_tokens=settings.summary_tokens, count=count)
        session.facts = [{"text": fact.text, "turn": fact.turn} for fact in update.summary.facts]
        prefix = f"t{contribution.task_id.replace('-', '')[:8]}_"
        theirs = [entry for entry in session.window if entry.get("task") != contribution.task_id]
        ours = [
            {"task": contribution.task_id, "items": portable(group, prefix=prefix)} for group in contribution.groups
        ]
        entries = [entry for entry in (*theirs, *ours) if complete(entry["items"])]
        session.window = entries[-settings.window_turns :] if settings.window_turns > 0 else []
        session.turns = max(session.turns, contribution.turns_until)
        session.version += 1
        session.save()
        return SessionWrite.objects.create(
            session=session,
            task_id=contribution.task_id,
            version=session.version,
            learnt=[{"text": fact.text, "turn": fact.turn} for fact in contribution.learnt],
            dropped=[{"text": fact.text, "turn": fact.turn} for fact in update.dropped],
        )
