"""Token counts with tiktoken, offline: the encoding files ship in `encodings/` (see its README).

tiktoken downloads encodings on first use, which fails without network. Here each vendored file is put,
decompressed, where tiktoken's cache looks for it; tiktoken then verifies it against the official SHA-256
it ships and never goes to the network.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import tiktoken

_ENCODINGS = Path(__file__).resolve().parent / "encodings"
_OFFICIAL_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
VENDORED = ("o200k_base", "cl100k_base")
_CL100K_MODELS = ("gpt-4-", "gpt-3.5", "text-embedding-3", "text-embedding-ada")


def _cache_dir() -> Path:
    """The directory tiktoken's read_file_cached uses (same precedence as tiktoken.load)."""
    for variable in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if os.environ.get(variable):
            return Path(os.environ[variable])
    if os.environ.get("TIKTOKEN_CACHE_DIR") == "":  # caching switched off would mean a download: use ours
        os.environ["TIKTOKEN_CACHE_DIR"] = str(Path(tempfile.gettempdir()) / "agent-ops-tiktoken")
        return Path(os.environ["TIKTOKEN_CACHE_DIR"])
    return Path(tempfile.gettempdir()) / "data-gym-cache"


def _install(name: str) -> None:
    cache = _cache_dir()
    target = cache / hashlib.sha1(_OFFICIAL_URL.format(name=name).encode()).hexdigest()
    if target.exists():
        return  # tiktoken re-checks the hash when it reads it
    cache.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    partial.write_bytes(gzip.decompress((_ENCODINGS / f"{name}.tiktoken.gz").read_bytes()))
    partial.replace(target)  # atomic: a concurrent worker never reads half a file


@lru_cache(maxsize=4)
def encoding(name: str = "o200k_base") -> tiktoken.Encoding:
    if name not in VENDORED:
        raise ValueError(f"no vendored encoding {name!r}; have {', '.join(VENDORED)}")
    _install(name)
    return tiktoken.get_encoding(name)


def encoding_for_model(model: str) -> tiktoken.Encoding:
    """cl100k_base for the GPT-4 and GPT-3.5 generation, o200k_base for everything newer (and unknown)."""
    return encoding("cl100k_base" if model.startswith(_CL100K_MODELS) or model == "gpt-4" else "o200k_base")


def count_text_tokens(text: str, *, model: str = "") -> int:
    return len(encoding_for_model(model).encode(text, disallowed_special=()))


def count_tokens(value: Any, *, model: str = "") -> int:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return count_text_tokens(text, model=model)
