"""Token counts are real tiktoken counts and need no network, even on a fresh machine (empty cache)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import tiktoken.registry

from agent_runtime import tokens


@pytest.fixture
def offline_fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network is off in this test")

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})  # tiktoken's own in-process cache
    tokens.encoding.cache_clear()
    yield
    tokens.encoding.cache_clear()


@pytest.mark.parametrize(
    ("name", "text", "ids"),
    [
        ("o200k_base", "Hello, world! Refund 200.00 USD on order A-1002.",
         [13225, 11, 2375, 0, 100598, 220, 1179, 13, 504, 20475, 402, 2569, 355, 12, 1353, 17, 13]),
        ("cl100k_base", "Hello, world!", [9906, 11, 1917, 0]),
    ],
)  # fmt: skip
def test_official_token_ids_offline(offline_fresh_cache: None, name: str, text: str, ids: list[int]) -> None:
    assert tokens.encoding(name).encode(text) == ids


def test_a_tampered_file_is_refused(offline_fresh_cache: None, tmp_path: Path) -> None:
    tokens._install("o200k_base")
    cached = next((tmp_path / "cache").iterdir())
    cached.write_bytes(cached.read_bytes().replace(b"IQ== 0", b"IQ== 1", 1))
    with pytest.raises(OSError):  # tiktoken drops the bad file and tries to download: refused here
        tokens.encoding("o200k_base")


def test_models_pick_their_encoding(offline_fresh_cache: None) -> None:
    assert tokens.encoding_for_model("gpt-4o-mini").name == "o200k_base"
    assert tokens.encoding_for_model("gpt-4-turbo").name == "cl100k_base"
    assert tokens.encoding_for_model("some-local-llama").name == "o200k_base"
    assert tokens.count_tokens({"order_number": "A-1001"}) == len(
        tokens.encoding().encode('{"order_number": "A-1001"}')
    )
