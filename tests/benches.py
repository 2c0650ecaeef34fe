"""Loading a benchmark script (scripts/ is not a package the suite imports) to run it small as a smoke check."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType


def bench_script(name: str) -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
