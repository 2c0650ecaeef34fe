"""The one egress point for model calls: which `Model` serves a model name, over which HTTP client.

`offline` is the built-in deterministic model. Any other name goes to the configured endpoint: OpenAI's
Responses API with OPENAI_API_KEY, or any OpenAI-compatible server at OPENAI_BASE_URL; servers that only
speak Chat Completions (vLLM, Ollama, llama.cpp) need OPENAI_API_STYLE=chat_completions.
"""

from __future__ import annotations

import functools
import ssl

import httpx2
from agents import OpenAIChatCompletionsModel, OpenAIResponsesModel
from agents.models.interface import Model
from django.conf import settings
from openai import AsyncOpenAI

from agent_runtime.offline_model import OfflineModel

OFFLINE = "offline"
CHAT_COMPLETIONS = "chat_completions"


class ModelUnavailable(Exception):
    """The agent names a model this deployment cannot reach (no key or endpoint configured)."""


def http_client() -> httpx2.AsyncClient:
    """The HTTP client for model requests (tests replace this function to fake the transport)."""
    return httpx2.AsyncClient(timeout=settings.MODEL_CALL_TIMEOUT_SECONDS, verify=_tls())


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context per process, as a client would build it (SSL_CERT_FILE honoured): loading the CA bundle
    costs about 30 ms of CPU, which every run paid when each built its own."""
    return httpx2.create_ssl_context()


def resolve_model(name: str) -> Model:
    if name == OFFLINE:
        return OfflineModel()
    if not (settings.OPENAI_API_KEY or settings.OPENAI_BASE_URL):
        raise ModelUnavailable(f"model {name!r} needs OPENAI_API_KEY or OPENAI_BASE_URL to be set")
    client = AsyncOpenAI(
        # Local OpenAI-compatible servers accept any key; the client insists on one.
        api_key=settings.OPENAI_API_KEY or "unused",
        base_url=settings.OPENAI_BASE_URL or None,
        timeout=settings.MODEL_CALL_TIMEOUT_SECONDS,
        max_retries=0,  # retries are the orchestrator's: each is a recorded attempt with its backoff
        http_client=http_client(),
    )
    if settings.OPENAI_API_STYLE == CHAT_COMPLETIONS:
        return OpenAIChatCompletionsModel(model=name, openai_client=client)
    return OpenAIResponsesModel(model=name, openai_client=client)
