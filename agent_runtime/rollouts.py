"""Canary rollouts of agent versions: which version a new task gets, and the switch that ends a canary.

Assignment is a stable hash: sha256 of the rollout and the task's routing key (its session, else a key the client
chose, else the task's id), reduced to one of 10,000 buckets; buckets below the canary's share (in hundredths of a
percent) go to the canary. So one customer's tasks stay on one version, the share is exact to 0.01 %, and raising
it (10 % to 20 %) moves only keys from stable to canary, never back. Each rollout hashes with its own id, so two
rollouts of one agent do not always pick the same customers.

The choice is read from the database on every submission: a promotion or a rollback applies to the very next
task, whichever web or worker process submits it. A task keeps the version it was given to its end, replays
included (it is pinned on the task row). Every change is a django-fsm transition or a recorded edit, audited as a
`RolloutEvent` with who, when and why.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import FilteredRelation, Q
from django.utils import timezone

from agent_runtime.models import AgentConfig, AgentVersion, Rollout, RolloutEvent, RolloutEventKind, RolloutState
from agent_runtime.services import AGENT_VERSIONS

BUCKETS = 10_000
STABLE, CANARY, FORCED = "stable", "canary", "forced"
AUTO_ROLLBACK_SETTINGS = (
    "auto_rollback",
    "min_finished_tasks",
    "max_success_drop",
    "max_handoff_rise",
    "max_cost_rise",
)


class RolloutInvalid(Exception):
    """A rollout change that is not allowed (a second canary, a version of another agent, no reason given)."""


@dataclass(frozen=True)
class Assignment:
    """The version a new task gets, and how it was chosen."""

    version_id: int | None
    rollout_id: int | None = None
    arm: str = ""
    """"stable" or "canary" in a rollout, "forced" for a version the client named, "" with no rollout."""


def rollout_bucket(rollout_id: int, routing_key: str) -> int:
    """The key's bucket in [0, 10,000) for this rollout: the same on every process and every run."""
    digest = hashlib.sha256(f"rollout:{rollout_id}:{routing_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def arm_of(*, rollout_id: int, canary_percent: Decimal, routing_key: str) -> str:
    threshold = int(canary_percent * BUCKETS / 100)
    return CANARY if rollout_bucket(rollout_id, routing_key) < threshold else STABLE


def version_assign(agent: str, routing_key: str) -> Assignment:
    """The version a new task of `agent` gets: its rollout's arm for this key, else the current version. One
    query: the agent with its active rollout, if any (at most one, by constraint), joined."""
    active = FilteredRelation("rollouts", condition=Q(rollouts__state=RolloutState.ACTIVE))
    row = (
        AgentConfig.objects.filter(name=agent)
        .annotate(active=active)
        .values("current_id", "active__pk", "active__canary_percent", "active__stable_id", "active__canary_id")
        .first()
    )
    if row is None:
        return Assignment(version_id=None)
    if row["active__pk"] is None or not _still_active(row["active__pk"]):
        return Assignment(version_id=row["current_id"])
    arm = arm_of(rollout_id=row["active__pk"], canary_percent=row["active__canary_percent"], routing_key=routing_key)
    version_id = row["active__canary_id"] if arm == CANARY else row["active__stable_id"]
    return Assignment(version_id=version_id, rollout_id=row["active__pk"], arm=arm)


def _still_active(rollout_id: int) -> bool:
    """Hold the rollout as it is until the submission commits. FOR KEY SHARE conflicts only with the switch's
    FOR UPDATE, so submissions never wait for one another; a rollback or promotion committed while this one read
    is seen here (PostgreSQL re-reads a row it waited for), and one not yet begun waits for this task to be
    in, as a task submitted before the switch. SQLite runs one writing transaction at a time anyway."""
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT state FROM agent_runtime_rollout WHERE id = %s FOR KEY SHARE", [rollout_id])
        row = cursor.fetchone()
    return row is not None and row[0] == RolloutState.ACTIVE


def version_forced(agent: str, number: int) -> Assignment | None:
    """A version a permitted client named (to test it before or during its canary); None if it does not exist."""
    version_id = AgentVersion.objects.filter(agent__name=agent, number=number).values_list("pk", flat=True).first()
    if version_id is None:
        return None
    active = Rollout.objects.filter(agent__name=agent, state=RolloutState.ACTIVE).values_list("pk", flat=True)
    return Assignment(version_id=version_id, rollout_id=active.first(), arm=FORCED)


def active_rollout(agent: AgentConfig) -> Rollout | None:
    return Rollout.objects.filter(agent=agent, state=RolloutState.ACTIVE).first()


# --- the switch and its audit ---------------------------------------------------------------------------------
def rollout_actor(user: AbstractBaseUser | None) -> str:
    """How a person is named in a rollout's audit, as in the task transition log."""
    return f"user:{user.get_username()}" if user is not None else "system"


def _reason(reason: str) -> str:
    if not reason.strip():
        raise RolloutInvalid("say why: every rollout change is recorded with its reason")
    return reason.strip()


def _share(percent: Decimal) -> Decimal:
    if not Decimal(0) <= percent <= Decimal(100) or percent != percent.quantize(Decimal("0.01")):
        raise RolloutInvalid("the canary's share is a percentage from 0 to 100, at most two decimals")
    return percent


def _locked(rollout: Rollout) -> Rollout:
    locked = Rollout.objects.select_for_update().select_related("agent", "stable", "canary").get(pk=rollout.pk)
    if locked.state != RolloutState.ACTIVE:
        raise RolloutInvalid(f"this rollout has ended ({locked.state.lower().replace('_', ' ')})")
    return locked


def _validated(rollout: Rollout) -> None:
    """The model's own limits on the share and the automatic-rollback settings, as a refusal callers can show."""
    try:
        rollout.full_clean(exclude=["agent", "stable", "canary", "started_by", "state"], validate_constraints=False)
    except ValidationError as invalid:
        problems = "; ".join(f"{name}: {' '.join(errors)}" for name, errors in invalid.message_dict.items())
        raise RolloutInvalid(problems) from None


def _rollback_settings(rollout: Rollout) -> dict[str, Any]:
    return {name: getattr(rollout, name) for name in (*AUTO_ROLLBACK_SETTINGS, "alpha")}


def _ended(rollout: Rollout) -> None:
    """Save a rollout that a transition has just ended."""
    rollout.ended_at = timezone.now()
    rollout.save()


def _record(rollout: Rollout, kind: str, *, actor: str, reason: str, detail: dict[str, Any] | None = None) -> None:
    RolloutEvent.objects.create(rollout=rollout, kind=kind, actor=actor, reason=reason, detail=detail or {})


def rollout_start(
    *,
    canary: AgentVersion,
    percent: Decimal = Decimal(10),
    user: AbstractBaseUser | None,
    reason: str,
    settings: dict[str, Any] | None = None,
) -> Rollout:
    """Send `percent` of the agent's new tasks to `canary`; the agent's current version stays stable."""
    reason, percent = _reason(reason), _share(percent)
    with transaction.atomic():
        agent = AgentConfig.objects.select_for_update().get(pk=canary.agent_id)
        if agent.current_id is None or agent.current_id == canary.pk:
            raise RolloutInvalid(f"v{canary.number} is already what new tasks get: pick another version")
        unknown = sorted(set(settings or {}) - set(AUTO_ROLLBACK_SETTINGS) - {"alpha"})
        if unknown:
            raise RolloutInvalid(f"not rollout settings: {', '.join(unknown)}")
        rollout = Rollout(
            agent=agent, stable_id=agent.current_id, canary=canary, canary_percent=percent, started_by=user
        )
        for name, value in (settings or {}).items():
            setattr(rollout, name, value)
        _validated(rollout)
        try:
            with transaction.atomic():
                rollout.save()
        except IntegrityError:
            raise RolloutInvalid(f"{agent.name} already has a canary: promote it or roll it back first") from None
        detail = {"stable": agent.current.number if agent.current else None, "canary": canary.number}
        _record(
            rollout,
            RolloutEventKind.STARTED,
            actor=rollout_actor(user),
            reason=reason,
            detail={**detail, "percent": str(percent)},
        )
    return rollout


def rollout_share_change(*, rollout: Rollout, percent: Decimal, user: AbstractBaseUser | None, reason: str) -> Rollout:
    """A new share for the canary, from the next submission on (only keys in the difference change arm)."""
    reason, percent = _reason(reason), _share(percent)
    with transaction.atomic():
        locked = _locked(rollout)
        before = locked.canary_percent
        locked.canary_percent = percent
        locked.save(update_fields=["canary_percent"])
        _record(
            locked,
            RolloutEventKind.SHARE_CHANGED,
            actor=rollout_actor(user),
            reason=reason,
            detail={"percent_before": str(before), "percent_after": str(percent)},
        )
    return locked


def rollout_settings_change(
    *, rollout: Rollout, values: dict[str, Any], user: AbstractBaseUser | None, reason: str
) -> Rollout:
    """Automatic rollback on or off, and its margins; recorded with the values before and after."""
    reason = _reason(reason)
    unknown = sorted(set(values) - set(AUTO_ROLLBACK_SETTINGS))
    if unknown:
        raise RolloutInvalid(f"not rollout settings: {', '.join(unknown)}")
    with transaction.atomic():
        locked = _locked(rollout)
        before = {name: str(getattr(locked, name)) for name in values}
        for name, value in values.items():
            setattr(locked, name, value)
        _validated(locked)
        locked.save(update_fields=list(values))
        after = {name: str(getattr(locked, name)) for name in values}
        _record(
            locked,
            RolloutEventKind.SETTINGS_CHANGED,
            actor=rollout_actor(user),
            reason=reason,
            detail={"before": before, "after": after},
        )
    return locked


def rollout_promote(*, rollout: Rollout, user: AbstractBaseUser | None, reason: str) -> Rollout:
    """The canary becomes the agent's current version: every new task gets it. Never done automatically."""
    reason = _reason(reason)
    with transaction.atomic():
        locked = _locked(rollout)
        locked.promote()
        _ended(locked)
        AGENT_VERSIONS.make_current(version=locked.canary)
        _record(
            locked,
            RolloutEventKind.PROMOTED,
            actor=rollout_actor(user),
            reason=reason,
            detail={"canary": locked.canary.number},
        )
    return locked


def rollout_roll_back(
    *, rollout: Rollout, actor: str, reason: str, automatic: bool = False, figures: dict[str, Any] | None = None
) -> Rollout:
    """The rollback switch: from the next submission on, every new task gets the stable version. Tasks already
    given the canary keep it to their end, replays included.

    An automatic rollback was judged with `rollout`'s settings as they were read: it is refused if automatic
    rollback, or any margin, has been changed since (the next evaluation judges with the new ones)."""
    reason = _reason(reason)
    with transaction.atomic():
        locked = _locked(rollout)
        if automatic and _rollback_settings(locked) != _rollback_settings(rollout):
            raise RolloutInvalid("the automatic-rollback settings changed while it was judged")
        if automatic and not locked.auto_rollback:
            raise RolloutInvalid("automatic rollback is off")
        locked.roll_back()
        _ended(locked)
        kind = RolloutEventKind.AUTO_ROLLED_BACK if automatic else RolloutEventKind.ROLLED_BACK
        _record(locked, kind, actor=actor, reason=reason, detail=figures or {})
    return locked
