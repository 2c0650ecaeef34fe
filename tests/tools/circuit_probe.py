"""A separate worker-like process acting on the shared circuit breaker (run by test_circuit_breaker.py).

python -m tests.tools.circuit_probe <tool> <action> [--wait]   action: fail | allow | succeed
Prints one JSON line: {"allowed": bool} for allow, {"ok": true} otherwise. With --wait it first prints "ready"
(once Django is set up) and acts only when a line arrives on stdin, so two probes can be lined up exactly.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.test_settings")

import django

django.setup()

from tools.contract import Contract  # noqa: E402
from tools.policy import DEFAULT_RETRY, CircuitPolicy  # noqa: E402
from tools.services.circuits import circuit_allow, circuit_record  # noqa: E402

# Open far longer than any process start: the test ends the open period itself, by rewriting the stored state.
THRESHOLD, WINDOW, OPEN_SECONDS = 3, 120, 600


def contract(tool: str) -> Contract:
    return Contract(
        name=tool,
        adapter=tool,
        version_id=0,
        version=1,
        description="probe",
        parameters_schema={"type": "object", "properties": {}, "required": []},
        result_schema={"type": "object"},
        error_codes={},
        timeout_seconds=5,
        retry=DEFAULT_RETRY,
        circuit=CircuitPolicy(THRESHOLD, WINDOW, OPEN_SECONDS),
        approval_mode="never",
        approval_rule=None,
    )


def main() -> None:
    tool, action = sys.argv[1], sys.argv[2]
    if "--wait" in sys.argv[3:]:  # line up with the other process
        print("ready", flush=True)
        sys.stdin.readline()
    if action == "allow":
        print(json.dumps({"allowed": circuit_allow(contract(tool))}))
        return
    circuit_record(contract(tool), failed=action == "fail", code="TIMEOUT" if action == "fail" else None)
    print(json.dumps({"ok": True}))


if __name__ == "__main__":
    main()
