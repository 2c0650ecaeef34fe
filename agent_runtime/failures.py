"""What a failed model request means for the task: try again (and when), or stop with a clear reason."""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from time import time

import openai
from agents.exceptions import ModelBehaviorError

from agent_runtime.endpoints import ModelUnavailable
from lib.exceptions import cause_of


@dataclass(frozen=True)
class ModelFailure:
    retryable: bool
    reason: str
    retry_after_seconds: float | None = None
    """The endpoint's own word on when to come back (Retry-After), if it gave one."""


def classify_model_failure(exc: BaseException) -> ModelFailure:
    cause = cause_of(exc, openai.APIError) or exc
    if isinstance(cause, openai.APIStatusError):
        status = cause.status_code
        detail = f"HTTP {status} from the model endpoint: {_message(cause)}"
        if status == 429 or status == 408 or status == 409 or status >= 500:
            return ModelFailure(True, detail, _retry_after(cause))
        if status in (401, 403):
            return ModelFailure(False, f"the model endpoint refused our credentials ({detail})")
        return ModelFailure(False, f"the model endpoint refused the request ({detail})")
    if isinstance(cause, openai.APITimeoutError):
        return ModelFailure(True, "the model endpoint did not answer in time")
    if isinstance(cause, openai.APIConnectionError):
        return ModelFailure(True, f"cannot reach the model endpoint: {cause}")
    if isinstance(exc, ModelUnavailable):
        return ModelFailure(False, str(exc))
    if isinstance(exc, ModelBehaviorError):
        return ModelFailure(False, f"the model's answer could not be used: {exc}")
    if isinstance(exc, RecursionError):
        # The SDK itself parses tool arguments; nesting this deep fails the same way on every replay.
        return ModelFailure(False, "the model's answer could not be used: tool arguments nested too deeply")
    if isinstance(exc, TimeoutError):
        return ModelFailure(True, str(exc) or "the model call timed out")
    return ModelFailure(True, f"{type(exc).__name__}: {str(exc)[:300]}")


def _message(error: openai.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
    return str(error.message)[:300]


def _retry_after(error: openai.APIStatusError) -> float | None:
    headers = error.response.headers
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(raw).timestamp() - time())
        except (TypeError, ValueError):
            return None
