"""Token counts for models that report none (the offline model).

An approximation until the runtime issue brings a real offline tokenizer: one token per word or punctuation
mark, which tracks BPE counts of English and JSON closely enough for budgets and dashboards.
"""

from __future__ import annotations

import json
import re
from typing import Any

_TOKEN = re.compile(r"\w+|[^\w\s]")


def count_text_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


def count_tokens(value: Any) -> int:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return count_text_tokens(text)
