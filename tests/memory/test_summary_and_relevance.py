"""The summary's cap holds however long a session runs, what pins a fact down outlives small talk, and BM25
re-injects what the current goal needs within its budget."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent_runtime.tokens import count_text_tokens
from memory.relevance import bm25, explain, relevant, terms
from memory.summary import Fact, Summary, extract_facts, information, summary_update

SMALL_TALK = ["Thanks, that is helpful", "Okay, let me think about it", "Sure, go ahead", "Hmm, I see", "Right"]
FILLER = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett", "kilo", "lima",
          "mike", "november", "oscar", "papa")  # fmt: skip


def _session(turns: int) -> list[list[Fact]]:
    """A scripted conversation: the order and the promise at turn 3, then mostly small talk, some tool calls."""
    conversation = []
    for turn in range(1, turns + 1):
        if turn == 3:
            said = "My order is A-1234 and your colleague promised a refund of 20 USD to my card."
        elif turn % 7 == 0:
            said = f"Can you check order B-{2000 + turn} too?"
        else:
            said = f"{SMALL_TALK[turn % len(SMALL_TALK)]}, {FILLER[turn % len(FILLER)]} {FILLER[turn // 16 % 16]}."
        items = [{"role": "user", "content": said}]
        if turn % 7 == 0:
            output = {"ok": True, "data": {"order_number": f"B-{2000 + turn}", "status": "SHIPPED"}}
            items += [
                {"type": "function_call", "call_id": f"c{turn}", "name": "lookup_order", "arguments": "{}"},
                {"type": "function_call_output", "call_id": f"c{turn}", "output": json.dumps(output)},
            ]
        conversation.append(extract_facts(items, turn=turn))
    return conversation


@pytest.mark.parametrize("cap", [300, 400, 500])
def test_the_cap_holds_and_what_it_pushes_out_is_reported(cap: int) -> None:
    summary, dropped = Summary(), list[Fact]()
    for facts in _session(200):
        update = summary_update(summary, facts, cap_tokens=cap, count=count_text_tokens)
        assert update.summary.tokens(count_text_tokens) <= cap
        summary, dropped = update.summary, dropped + list(update.dropped)
    assert dropped, "200 turns do not fit: facts were dropped, and the caller is told which"
    assert all(information(fact.text) == 0 for fact in dropped[:20]), "small talk goes first"


def test_a_fact_from_turn_3_is_there_when_turn_45_needs_it() -> None:
    summary = Summary()
    for facts in _session(44):
        summary = summary_update(summary, facts, cap_tokens=400, count=count_text_tokens).summary
    texts = [fact.text for fact in summary.facts]
    chosen = relevant(
        texts, "Where is the refund I was promised for order A-1234?", budget_tokens=80, count=count_text_tokens
    )
    assert chosen, "something relevant is injected"
    assert "A-1234" in texts[chosen[0]] and "promised a refund" in texts[chosen[0]]
    assert sum(count_text_tokens(texts[i]) for i in chosen) <= 80


def test_relevance_leaves_out_what_shares_nothing_with_the_goal_and_explains_its_scores() -> None:
    facts = [
        "lookup_order succeeded: order_number A-1001, status SHIPPED",
        "The customer asked: Thanks, that is helpful.",
        "refund_order failed with ORDER_LOCKED: order is locked by settlement",
    ]
    assert sorted(relevant(facts, "refund order A-1001", budget_tokens=1000, count=count_text_tokens)) == [0, 2]
    assert relevant(facts, "weather in Paris", budget_tokens=1000, count=count_text_tokens) == []
    scores = bm25(facts, "refund a-1001")
    assert scores[1] == 0 and scores[0] > 0 and scores[2] > 0
    assert explain(facts[0], facts, "refund a-1001") == {"a-1001": pytest.approx(scores[0]), "refund": 0.0}
    assert terms("Order A-1001, please!") == ["order", "a-1001"]


def test_newer_wording_of_one_fact_replaces_the_older() -> None:
    first = summary_update(Summary(), [Fact("Order A-1 is late", 1)], cap_tokens=300, count=count_text_tokens)
    again = summary_update(first.summary, [Fact("order a-1 is  LATE", 5)], cap_tokens=300, count=count_text_tokens)
    assert [(fact.text, fact.turn) for fact in again.summary.facts] == [("order a-1 is  LATE", 5)]
    with pytest.raises(ValueError):
        summary_update(Summary(), [], cap_tokens=1000, count=count_text_tokens)


def test_facts_are_extracted_from_requests_tool_outcomes_and_answers() -> None:
    items: list[dict[str, Any]] = [
        {"role": "user", "content": "Refund order A-1002. It arrived broken."},
        {"type": "function_call", "call_id": "c1", "name": "refund_order", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1",
         "output": json.dumps({"ok": False, "error_code": "ORDER_LOCKED", "error_message": "locked"})},
        {"role": "assistant", "content": [{"type": "output_text", "text": "I will retry soon. Sorry."}]},
    ]  # fmt: skip
    assert [fact.text for fact in extract_facts(items, turn=2)] == [
        "The customer said: Refund order A-1002.",
        "The customer said: It arrived broken.",
        "refund_order failed with ORDER_LOCKED: locked",
        "The agent said: I will retry soon.",
    ]
