"""One module per adapter; importing them registers them."""

import importlib

ADAPTER_MODULES = ("tools.adapters.handoff", "tools.adapters.orders")


def load_adapters() -> None:
    for module in ADAPTER_MODULES:
        importlib.import_module(module)
