"""Token counts are real tiktoken counts and need no network, even on a fresh machine (empty cache)."""

from __future__ import annotations

import gzip
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import tiktoken.registry
import tiktoken_ext.openai_public

from agent_runtime import tokens


@pytest.fixture
def offline_fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No network, an empty tiktoken cache, nothing loaded in this process yet."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network is off in this test")

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    tokens.encoding.cache_clear()
    yield
    tokens.encoding.cache_clear()
    assert not (tmp_path / "cache").exists(), "nothing is written to tiktoken's cache"


# Token ids computed once with bpe-openai 0.1.4 (which reproduces tiktoken's ids), encode(disallowed_special=()).
SAMPLES: list[str] = [
    "Hello, world! Refund 200.00 USD on order A-1002.",
    "Grüße aus Köln — 東京タワー 🚀🚀",
    "def f(x):\n\treturn x ** 2  # square\n\n\n",
    "   leading and trailing spaces   ",
    "1234567890 3.14159 -42",
    "<|endoftext|> is plain text here",
    '{"order_number": "A-1001"}',
    "",
]
EXPECTED_IDS: dict[str, list[list[int]]] = {
    "o200k_base": [
        [13225, 11, 2375, 0, 100598, 220, 1179, 13, 504, 20475, 402, 2569, 355, 12, 1353, 17, 13],
        [3193, 572, 13153, 3976, 85686, 2733, 185244, 12288, 34022, 3022, 169883, 222, 112927, 222],
        [1314, 285, 4061, 1883, 1393, 1215, 6240, 220, 17, 220, 1069, 13749, 2499],
        [256, 8117, 326, 57985, 18608, 271],
        [7633, 19354, 29338, 15, 220, 18, 13, 16926, 4621, 533, 4689],
        [27, 91, 419, 1440, 919, 91, 29, 382, 21402, 2201, 2105],
        [10848, 2143, 11733, 1243, 392, 32, 12, 1353, 16, 18583],
        [],
    ],
    "cl100k_base": [
        [9906, 11, 1917, 0, 8718, 1263, 220, 1049, 13, 410, 20121, 389, 2015, 362, 12, 1041, 17, 13],
        [6600, 2448, 24352, 9608, 65994, 2312, 2001, 61696, 109, 47653,
         47307, 2845, 107, 11972, 11410, 248, 222, 9468, 248, 222],
        [755, 282, 2120, 997, 862, 865, 3146, 220, 17, 220, 674, 9518, 1432],
        [256, 6522, 323, 28848, 12908, 262],
        [4513, 10961, 16474, 15, 220, 18, 13, 9335, 2946, 482, 2983],
        [27, 91, 8862, 728, 428, 91, 29, 374, 14733, 1495, 1618],
        [5018, 1382, 5617, 794, 330, 32, 12, 1041, 16, 9388],
        [],
    ],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(EXPECTED_IDS))
def test_official_token_ids_for_varied_text(offline_fresh_cache: None, name: str) -> None:
    encoding = tokens.encoding(name)
    assert [encoding.encode(text, disallowed_special=()) for text in SAMPLES] == EXPECTED_IDS[name]
    assert encoding.decode(EXPECTED_IDS[name][1]) == SAMPLES[1]


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


def test_a_tampered_file_is_refused(tmp_path: Path) -> None:
    data = gzip.decompress((tokens.ENCODINGS_DIR / "o200k_base.tiktoken.gz").read_bytes())
    tampered = tmp_path / "o200k_base.tiktoken.gz"
    tampered.write_bytes(gzip.compress(data.replace(b"IQ== 0", b"IQ== 1", 1)))
    with pytest.raises(ValueError, match="not the official encoding file"):
        tokens.read_verified(tampered, tokens.SPECS["o200k_base"].sha256)


@pytest.mark.parametrize("name", sorted(tokens.SPECS))
def test_patterns_and_special_tokens_are_tiktokens_own(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """tiktoken's constructor, with its download stubbed out, passes exactly what we pass."""
    monkeypatch.setattr(tiktoken_ext.openai_public, "load_tiktoken_bpe", lambda *args, **kwargs: {})
    official = getattr(tiktoken_ext.openai_public, name)()
    assert (official["pat_str"], official["special_tokens"]) == (
        tokens.SPECS[name].pat_str,
        tokens.SPECS[name].special_tokens,
    )


def test_models_pick_their_encoding(offline_fresh_cache: None) -> None:
    assert tokens.encoding_for_model("gpt-4o-mini").name == "o200k_base"
    assert tokens.encoding_for_model("gpt-4-turbo").name == "cl100k_base"
    assert tokens.encoding_for_model("some-local-llama").name == "o200k_base"
    assert tokens.count_tokens({"order_number": "A-1001"}) == len(
        tokens.encoding().encode('{"order_number": "A-1001"}')
    )
