"""Real token counts with tiktoken, offline: the encoding files ship in `encodings/` (see its README).

`tiktoken.get_encoding` downloads its files on first use, which fails without network, so it is never called
here. Each `tiktoken.Encoding` is built directly, as `tiktoken_ext/openai_public.py` builds it (same pattern,
same special tokens), from the vendored copy of the official file, which must have the official SHA-256
before it is used. Nothing global is touched: no environment variables, nothing written to tiktoken's cache
directory, nothing registered in tiktoken's registry.
"""

from __future__ import annotations

import base64
import gzip
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import tiktoken
from tiktoken.load import check_hash

ENCODINGS_DIR = Path(__file__).resolve().parent / "encodings"

ENDOFTEXT = "<|endoftext|>"
FIM_PREFIX = "<|fim_prefix|>"
FIM_MIDDLE = "<|fim_middle|>"
FIM_SUFFIX = "<|fim_suffix|>"
ENDOFPROMPT = "<|endofprompt|>"


@dataclass(frozen=True)
class EncodingSpec:
    """What tiktoken_ext/openai_public.py passes to tiktoken.Encoding, with the official file's SHA-256."""

    sha256: str
    pat_str: str
    special_tokens: dict[str, int]


SPECS: dict[str, EncodingSpec] = {
    "o200k_base": EncodingSpec(
        sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        pat_str="|".join(
            [
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""\p{N}{1,3}""",
                r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
                r"""\s*[\r\n]+""",
                r"""\s+(?!\S)""",
                r"""\s+""",
            ]
        ),
        special_tokens={ENDOFTEXT: 199999, ENDOFPROMPT: 200018},
    ),
    "cl100k_base": EncodingSpec(
        sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        pat_str=(
            r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+"""
            r"""| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
        ),
        special_tokens={
            ENDOFTEXT: 100257,
            FIM_PREFIX: 100258,
            FIM_MIDDLE: 100259,
            FIM_SUFFIX: 100260,
            ENDOFPROMPT: 100276,
        },
    ),
}

# Everything else (gpt-4o, gpt-4.1, gpt-4.5, o-series, gpt-5, unknown and local models) counts with o200k_base.
_CL100K_PREFIXES = (
    "gpt-4-",  # gpt-4-turbo, gpt-4-0613, gpt-4-32k ... (not gpt-4o, gpt-4.1, gpt-4.5)
    "gpt-4:",  # fine-tune ids: ft:gpt-4:org::id
    "gpt-3.5",
    "gpt-35-turbo",  # Azure deployment names
    "text-embedding-3-",
    "text-embedding-ada-",
    "davinci-002",
    "babbage-002",
)


def read_verified(path: Path, expected_sha256: str) -> bytes:
    """The decompressed .tiktoken file at `path` (gzip), refused unless its SHA-256 is the official one."""
    data = gzip.decompress(path.read_bytes())
    if not check_hash(data, expected_sha256):
        raise ValueError(f"{path} is not the official encoding file (expected SHA-256 {expected_sha256})")
    return data


def parse_tiktoken_bpe(data: bytes) -> dict[bytes, int]:
    """Lines `<base64 token bytes> <rank>`, read exactly as tiktoken.load.load_tiktoken_bpe reads them."""
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


@lru_cache(maxsize=len(SPECS))
def encoding(name: str = "o200k_base") -> tiktoken.Encoding:
    spec = SPECS.get(name)
    if spec is None:
        raise ValueError(f"no vendored encoding {name!r}; have {', '.join(SPECS)}")
    data = read_verified(ENCODINGS_DIR / f"{name}.tiktoken.gz", spec.sha256)
    return tiktoken.Encoding(
        name=name,
        pat_str=spec.pat_str,
        mergeable_ranks=parse_tiktoken_bpe(data),
        special_tokens=dict(spec.special_tokens),
    )


def encoding_name_for_model(model: str) -> str:
    """cl100k_base for the GPT-4 / GPT-3.5 generation (fine-tunes included), o200k_base for the rest."""
    base = model.strip().lower().removeprefix("ft:")
    if base == "gpt-4" or base.startswith(_CL100K_PREFIXES):
        return "cl100k_base"
    return "o200k_base"


def encoding_for_model(model: str) -> tiktoken.Encoding:
    return encoding(encoding_name_for_model(model))


def count_text_tokens(text: str, *, model: str = "") -> int:
    if len(text) <= COUNTS_CACHED_UP_TO:
        return _remembered_count(text, encoding_name_for_model(model))
    return _count(text, encoding_name_for_model(model))


COUNTS_CACHED_UP_TO = 16_384
"""Characters: memory's summary and a run's recurring texts are counted again on every turn."""


def _count(text: str, encoding_name: str) -> int:
    # Special-token text such as "<|endoftext|>" in user content is counted as the ordinary text it is.
    return len(encoding(encoding_name).encode(text, disallowed_special=()))


_remembered_count = lru_cache(maxsize=8_192)(_count)


def count_tokens(value: Any, *, model: str = "") -> int:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return count_text_tokens(text, model=model)
