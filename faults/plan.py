"""The fault plan: which faults to inject where, chosen deterministically from a seed.

`FAULT_PLAN` (an environment variable holding JSON) is empty in production. Its shape:

    {
      "seed": 7,
      "tools": {"lookup_order": [rule, ...], "*": [rule, ...]},
      "model": [rule, ...],
      "broker": {"duplicate_messages": 1, "duplicate_delay_seconds": 0.5}
    }

`tools` is consulted by the tool call path for every call attempt (a tool's own list, else the `"*"` list);
`model` by the runtime for every model request; `broker` whenever a task message is sent. A rule is
`{"fault": <kind>, "probability": 0..1 (default 1), "attempts": [1, 2] (default: every attempt), ...}`, model
rules may also name `"turns"`, tool rules `"agent_versions"` (numbers: only calls of tasks on those versions of
their agent, e.g. a canary's). The kinds and their own keys:

    tool   error               code (default INTERNAL), message: the adapter returns this code instead of
                               running; the contract's error dictionary decides what follows, as for a real one
           hang                seconds, uninterruptible: sleep before the adapter runs
           hang_after_effect   seconds, uninterruptible: sleep after the adapter's effect, before its record
           crash_after_effect  raise after the effect, before its record
    model  error               status: the endpoint answers with this HTTP status (0: the connection fails)
           hang                seconds: the endpoint does not answer
           unknown_tool        tool: every answer becomes a call to this tool, which no agent has
           invalid_arguments   arguments: every tool call in the answer carries these arguments instead

`uninterruptible` blocks the timeout signal while sleeping, as a call stuck in C code would: only the step's
deadline (the lease) can then take the step back.

Each attempt draws one number u in [0, 1) from sha256(seed, where, key, attempt). The rules that apply to the
attempt take consecutive slices of [0, 1), each as wide as its probability, and the rule whose slice holds u is
injected: at most one fault per attempt, so "0.3 retryable, 0.05 fatal" are exclusive and exact, and one plan
and seed inject the same faults on every run and in every worker process.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator

logger = logging.getLogger(__name__)

TOOL_FAULTS = ("error", "hang", "hang_after_effect", "crash_after_effect")
MODEL_FAULTS = ("error", "hang", "unknown_tool", "invalid_arguments")
ANY_TOOL = "*"

_ATTEMPTS = {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1}
_PROBABILITY = {"type": "number", "minimum": 0, "maximum": 1}
_SECONDS = {"type": "number", "minimum": 0, "maximum": 3600}


def _needs(kind: str, *keys: str) -> dict[str, Any]:
    return {"if": {"properties": {"fault": {"const": kind}}}, "then": {"required": list(keys)}}


_TOOL_RULE = {
    "type": "object",
    "properties": {
        "fault": {"enum": list(TOOL_FAULTS)},
        "probability": _PROBABILITY,
        "attempts": _ATTEMPTS,
        "code": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]{0,63}$"},
        "message": {"type": "string", "maxLength": 500},
        "seconds": _SECONDS,
        "uninterruptible": {"type": "boolean"},
        "agent_versions": _ATTEMPTS,
    },
    "required": ["fault"],
    "additionalProperties": False,
    "allOf": [_needs("hang", "seconds"), _needs("hang_after_effect", "seconds")],
}
_MODEL_RULE = {
    "type": "object",
    "properties": {
        "fault": {"enum": list(MODEL_FAULTS)},
        "probability": _PROBABILITY,
        "attempts": _ATTEMPTS,
        "turns": _ATTEMPTS,
        "status": {"type": "integer", "oneOf": [{"const": 0}, {"minimum": 400, "maximum": 599}]},
        "seconds": _SECONDS,
        "tool": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,64}$"},
        "arguments": {"type": "string", "maxLength": 10000},
    },
    "required": ["fault"],
    "additionalProperties": False,
    "allOf": [_needs("hang", "seconds"), _needs("error", "status")],
}
PLAN_SCHEMA = {
    "type": "object",
    "properties": {
        "seed": {"type": "integer"},
        "tools": {"type": "object", "additionalProperties": {"type": "array", "items": _TOOL_RULE}},
        "model": {"type": "array", "items": _MODEL_RULE},
        "broker": {
            "type": "object",
            "properties": {
                "duplicate_messages": {"type": "integer", "minimum": 0, "maximum": 10},
                "duplicate_delay_seconds": {"type": "number", "minimum": 0, "maximum": 5},
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}


class FaultPlanInvalid(ValueError):
    """FAULT_PLAN is not valid JSON or breaks the plan's schema; the message names the place."""


@dataclass(frozen=True)
class Fault:
    kind: str
    probability: float = 1.0
    attempts: frozenset[int] | None = None
    """The attempts this rule applies to; None for every attempt."""
    turns: frozenset[int] | None = None
    """Model rules only: the turns this rule applies to; None for every turn."""
    agent_versions: frozenset[int] | None = None
    """Tool rules only: the agent version numbers whose calls this rule applies to; None for every version."""
    code: str = "INTERNAL"
    message: str = "injected fault"
    seconds: float = 0.0
    uninterruptible: bool = False
    status: int = 503
    tool: str = "delete_everything"
    arguments: str = "{}"

    @classmethod
    def from_rule(cls, rule: dict[str, Any]) -> Fault:
        values = {key: value for key, value in rule.items() if key != "fault"}
        for key in ("attempts", "turns", "agent_versions"):
            if key in values:
                values[key] = frozenset(values[key])
        return cls(kind=rule["fault"], **values)

    def applies(self, *, attempt: int, turn: int | None = None, agent_version: int | None = None) -> bool:
        if self.attempts is not None and attempt not in self.attempts:
            return False
        if self.agent_versions is not None and agent_version not in self.agent_versions:
            return False
        return self.turns is None or turn is None or turn in self.turns


@dataclass(frozen=True)
class FaultPlan:
    seed: int = 0
    tools: dict[str, tuple[Fault, ...]] = field(default_factory=dict)
    model: tuple[Fault, ...] = ()
    duplicate_messages: int = 0
    duplicate_delay_seconds: float = 0.0

    def tool_fault(self, tool: str, *, key: str, attempt: int, agent_version: int | None = None) -> Fault | None:
        """The fault to inject into this attempt of the call with idempotency key `key`, if any."""
        rules = self.tools.get(tool, self.tools.get(ANY_TOOL, ()))
        chosen = tuple(rule for rule in rules if rule.applies(attempt=attempt, agent_version=agent_version))
        return self._choose(chosen, where=f"tool:{tool}", key=key, attempt=attempt)

    def model_fault(self, *, key: str, turn: int, attempt: int) -> Fault | None:
        """The fault to inject into this attempt of model turn `turn` of the run `key`, if any."""
        rules = tuple(rule for rule in self.model if rule.applies(attempt=attempt, turn=turn))
        return self._choose(rules, where=f"model:turn:{turn}", key=key, attempt=attempt)

    def draw(self, *, where: str, key: str, attempt: int) -> float:
        """The attempt's number in [0, 1): the same for the same seed, place, key and attempt, everywhere."""
        digest = hashlib.sha256(f"{self.seed}|{where}|{key}|{attempt}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def _choose(self, applicable: tuple[Fault, ...], *, where: str, key: str, attempt: int) -> Fault | None:
        """One of the rules that apply to this attempt (the callers filter them), or none, by the attempt's draw."""
        if not applicable:
            return None
        drawn = self.draw(where=where, key=key, attempt=attempt)
        upper = 0.0
        for rule in applicable:
            upper += rule.probability
            if drawn < upper:
                logger.warning(
                    "fault injected", extra={"fault": rule.kind, "where": where, "key": key, "attempt": attempt}
                )
                return rule
        return None


NO_FAULTS = FaultPlan()


@lru_cache(maxsize=8)
def parse_plan(raw: str) -> FaultPlan:
    """The plan in `raw` (JSON; empty means no faults). Raises FaultPlanInvalid naming what is wrong."""
    if not raw.strip():
        return NO_FAULTS
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise FaultPlanInvalid(f"not valid JSON: {exc.msg} at position {exc.pos}") from None
    errors = sorted(Draft202012Validator(PLAN_SCHEMA).iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        where = "/".join(str(part) for part in errors[0].absolute_path) or "(root)"
        raise FaultPlanInvalid(f"{where}: {errors[0].message}")
    broker = document.get("broker", {})
    return FaultPlan(
        seed=document.get("seed", 0),
        tools={
            name: tuple(Fault.from_rule(rule) for rule in rules) for name, rules in document.get("tools", {}).items()
        },
        model=tuple(Fault.from_rule(rule) for rule in document.get("model", [])),
        duplicate_messages=broker.get("duplicate_messages", 0),
        duplicate_delay_seconds=broker.get("duplicate_delay_seconds", 0.0),
    )


def active_plan() -> FaultPlan:
    """The plan in the FAULT_PLAN setting (checked at start-up, so it parses here)."""
    from django.conf import settings

    return parse_plan(settings.FAULT_PLAN)
