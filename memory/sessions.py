"""Sessions: what a task recalls when it starts, and how what it learnt is merged back when it settles."""

from __future__ import annotations

import hashlib
import json
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
    turns: int
    """The task's own model turns."""

    def digest(self) -> str:
        facts = [[fact.text, fact.turn] for fact in self.learnt]
        content = json.dumps([facts, list(self.groups), self.turns], sort_keys=True, default=str)
        return hashlib.sha256(content.encode()).hexdigest()


def session_merge(
    *, owner_id: int, session_id: str, contribution: Contribution, settings: MemorySettings, count: Count
) -> SessionWrite | None:
    """Merge a settled task's facts and turns into the session, under its row lock: a concurrent task's merge
    waits and then merges onto this one, so neither's facts are lost. A task that settles again unchanged (handed
    off, then closed) merges nothing; one that did more since (sent back, settled again) replaces its turns and
    restates its facts, counting nothing twice. Returns the merge, or None when there was nothing to merge."""
    digest = contribution.digest()
    with transaction.atomic():
        Session.objects.get_or_create(owner_id=owner_id, session_id=session_id)
        session = Session.objects.select_for_update().get(owner_id=owner_id, session_id=session_id)
        before = session.writes.filter(task_id=contribution.task_id).order_by("-version").first()
        if before is not None and before.digest == digest:
            return None
        known = Summary(tuple(Fact.from_json(fact) for fact in session.facts))
        update = summary_update(known, contribution.learnt, cap_tokens=settings.summary_tokens, count=count)
        session.facts = [fact.to_json() for fact in update.summary.facts]
        task = contribution.task_id.replace("-", "")[:8]
        theirs = [entry for entry in session.window if entry.get("task") != contribution.task_id]
        ours = [
            {"task": contribution.task_id, "items": portable(group, prefix=f"t{task}g{index}_")}
            for index, group in enumerate(contribution.groups)
        ]
        entries = [entry for entry in (*theirs, *ours) if complete(entry["items"])]
        session.window = entries[-settings.window_turns :] if settings.window_turns > 0 else []
        session.turns += max(contribution.turns - (before.turns if before else 0), 0)
        session.version += 1
        session.save()
        return SessionWrite.objects.create(
            session=session,
            task_id=contribution.task_id,
            version=session.version,
            learnt=[fact.to_json() for fact in contribution.learnt],
            dropped=[fact.to_json() for fact in update.dropped],
            turns=contribution.turns,
            digest=digest,
        )
