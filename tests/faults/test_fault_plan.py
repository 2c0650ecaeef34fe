"""The fault plan: validated with the place of every mistake named, and deterministic, exact, exclusive draws."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from faults.plan import NO_FAULTS, FaultPlanInvalid, parse_plan

FLAKY = {
    "seed": 11,
    "tools": {
        "lookup_order": [
            {"fault": "error", "code": "UPSTREAM_UNAVAILABLE", "probability": 0.3},
            {"fault": "error", "code": "UPSTREAM_REJECTED", "probability": 0.05},
        ],
        "*": [{"fault": "hang", "seconds": 1, "attempts": [1]}],
    },
}


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ("[1, 2", "not valid JSON"),
        ('{"tools": {"x": [{"fault": "explode"}]}}', "tools/x/0/fault: 'explode' is not one of"),
        ('{"tools": {"x": [{"fault": "hang"}]}}', "'seconds' is a required property"),
        ('{"tools": {"x": [{"fault": "error", "probability": 1.5}]}}', "tools/x/0/probability"),
        ('{"tools": {"x": [{"fault": "error", "code": "lower"}]}}', "tools/x/0/code"),
        ('{"model": [{"fault": "error"}]}', "'status' is a required property"),
        ('{"model": [{"fault": "error", "status": 200}]}', "model/0/status"),
        ('{"broker": {"duplicate_messages": 99}}', "broker/duplicate_messages"),
        ('{"tool": {}}', "Additional properties are not allowed ('tool' was unexpected)"),
    ],
)
def test_a_bad_plan_is_refused_with_the_place_named(plan: str, message: str) -> None:
    with pytest.raises(FaultPlanInvalid, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_plan(plan)


def test_an_empty_plan_injects_nothing() -> None:
    assert parse_plan("") is NO_FAULTS and parse_plan("  ") is NO_FAULTS
    assert NO_FAULTS.tool_fault("lookup_order", key="k", attempt=1) is None
    assert NO_FAULTS.model_fault(key="k", turn=1, attempt=1) is None


def test_draws_are_exclusive_exact_and_the_same_in_every_process() -> None:
    plan = parse_plan(json.dumps(FLAKY))
    again = parse_plan(json.dumps(FLAKY, indent=2))  # another process parsing the same plan
    draws = 40_000
    seen: Counter[str | None] = Counter()
    for n in range(draws):
        fault = plan.tool_fault("lookup_order", key=f"u1:task-{n}:call:1:c", attempt=1)
        assert fault == again.tool_fault("lookup_order", key=f"u1:task-{n}:call:1:c", attempt=1)
        seen[fault.code if fault else None] += 1
    assert abs(seen["UPSTREAM_UNAVAILABLE"] / draws - 0.30) < 0.01
    assert abs(seen["UPSTREAM_REJECTED"] / draws - 0.05) < 0.005
    assert abs(seen[None] / draws - 0.65) < 0.01


def test_rules_apply_to_their_attempts_and_turns_only() -> None:
    plan = parse_plan(json.dumps({**FLAKY, "model": [{"fault": "hang", "seconds": 5, "turns": [2], "attempts": [1]}]}))
    assert plan.tool_fault("add_order_note", key="k", attempt=1).kind == "hang"  # type: ignore[union-attr]
    assert plan.tool_fault("add_order_note", key="k", attempt=2) is None
    assert plan.model_fault(key="t", turn=2, attempt=1).seconds == 5  # type: ignore[union-attr]
    assert plan.model_fault(key="t", turn=1, attempt=1) is None
    assert plan.model_fault(key="t", turn=2, attempt=2) is None
    other_seed = parse_plan(json.dumps({**FLAKY, "seed": 12}))
    keys = [f"k{n}" for n in range(200)]
    assert [plan.tool_fault("lookup_order", key=k, attempt=1) for k in keys] != [
        other_seed.tool_fault("lookup_order", key=k, attempt=1) for k in keys
    ], "the seed changes which calls fail"
