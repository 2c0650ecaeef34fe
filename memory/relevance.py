"""Which remembered facts a turn gets: the ones BM25 scores relevant to the current goal, within a token budget.

BM25 (Robertson and Spärck Jones; k1 = 1.5, b = 0.75) scores a fact by the query's terms it contains, each
weighted by how rare the term is among all facts (idf) and damped for repeats and for long facts. It needs no
model and no network, is deterministic, and a score can be explained term by term (`explain`). Hand-written:
the Python packages for it are unmaintained and bring numpy for twenty lines of arithmetic.

Facts that share no term with the query score 0 and are never injected; ties go to the newer fact.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

K1, B = 1.5, 0.75
_TERM = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")  # refund_order is two terms, order a-1001 one
# Words that carry no meaning for matching facts to goals.
_STOP = frozenset(
    ("a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "i", "in", "is", "it", "its",
     "of", "on", "or", "that", "the", "this", "to", "was", "were", "will", "with", "please", "can", "you", "me",
     "my", "we", "our")
)  # fmt: skip


def terms(text: str) -> list[str]:
    """Lower-case words and numbers; order numbers like a-1001 stay one term."""
    return [term for term in _TERM.findall(text.lower()) if term not in _STOP]


@dataclass(frozen=True)
class Scored:
    index: int
    score: float


def bm25(documents: Sequence[str], query: str) -> list[float]:
    """The BM25 score of each document for `query`."""
    bags = [Counter(terms(document)) for document in documents]
    if not bags:
        return []
    average = sum(sum(bag.values()) for bag in bags) / len(bags) or 1.0
    wanted = sorted(set(terms(query)))  # a fixed order: float sums, hence ties, are the same in every process
    containing = {term: sum(1 for bag in bags if term in bag) for term in wanted}
    scores = []
    for bag in bags:
        length = sum(bag.values())
        score = 0.0
        for term in wanted:
            frequency = bag.get(term, 0)
            if frequency:
                idf = math.log(1 + (len(bags) - containing[term] + 0.5) / (containing[term] + 0.5))
                score += idf * frequency * (K1 + 1) / (frequency + K1 * (1 - B + B * length / average))
        scores.append(score)
    return scores


def relevant(documents: Sequence[str], query: str, *, budget_tokens: int, count: Callable[[str], int]) -> list[int]:
    """Indexes of the documents to inject, best first (newer first among equals), within `budget_tokens`;
    documents sharing no term with the query are left out."""
    scored = [Scored(index, score) for index, score in enumerate(bm25(documents, query)) if score > 0]
    chosen, used = [], 0
    for item in sorted(scored, key=lambda s: (-s.score, -s.index)):
        cost = count(documents[item.index])
        if used + cost <= budget_tokens:
            chosen.append(item.index)
            used += cost
    return chosen


def explain(document: str, documents: Sequence[str], query: str) -> dict[str, float]:
    """Each query term's share of `document`'s score among `documents` (for operators and tests)."""
    return {term: bm25(documents, term)[list(documents).index(document)] for term in sorted(set(terms(query)))}
