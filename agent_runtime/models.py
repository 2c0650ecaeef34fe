"""The one egress point for model calls: which `Model` serves a model name."""

from __future__ import annotations

from agents.models.interface import Model
from django.conf import settings

from agent_runtime.offline_model import OfflineModel

OFFLINE = "offline"


class ModelUnavailable(Exception):
    """The agent names a model this deployment cannot reach (no key or endpoint configured)."""


def resolve_model(name: str) -> Model:
    if name == OFFLINE:
        return OfflineModel()
    if not (settings.OPENAI_API_KEY or settings.OPENAI_BASE_URL):
        raise ModelUnavailable(f"model {name!r} needs OPENAI_API_KEY or OPENAI_BASE_URL to be set")
    from agents import OpenAIResponsesModel
    from openai import AsyncOpenAI

    client = AsyncOpenAI(
        api_key=settings.OPENAI_API_KEY or "not-needed",
        base_url=settings.OPENAI_BASE_URL or None,
        timeout=settings.MODEL_CALL_TIMEOUT_SECONDS,
        max_retries=0,  # retries are the orchestrator's, recorded as step attempts
    )
    return OpenAIResponsesModel(model=name, openai_client=client)
