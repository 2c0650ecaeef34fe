"""make run's demonstration of the API's guards, against the running server: a token without the scope, a token
past its rate, a body past the limit. Each line is what the server really answered."""

from __future__ import annotations

import json
import urllib.error
import urllib.request


def _call(url: str, key: str, *, body: bytes | None = None) -> tuple[int, str, str]:
    """Status, the error message (if any) and Retry-After of one request."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), "", ""
    except urllib.error.HTTPError as refused:
        message = json.loads(refused.read() or b"{}").get("error", {}).get("message", "")
        return int(refused.code), message, refused.headers.get("Retry-After", "")


def security_checks(base_url: str, *, client_key: str, read_only_key: str) -> list[str]:
    tasks = f"{base_url}/api/v1/tasks/"
    submission = json.dumps({"goal": "Look up order A-1002", "input": {"order_number": "A-1002"}}).encode()
    status, message, _ = _call(tasks, read_only_key, body=submission)
    lines = [f"a read-only token submits:            {status} {message}"]
    answers = [_call(tasks, read_only_key) for _ in range(4)]
    codes = ", ".join(str(code) for code, _, _ in answers)
    lines.append(f"it reads 4 times (its rate: 3/minute): {codes}; Retry-After: {answers[-1][2]} s")
    oversize = json.dumps({"goal": "x", "input": {"blob": "a" * 300_000}}).encode()
    status, message, _ = _call(tasks, client_key, body=oversize)
    lines.append(f"the client token sends 300 KB:        {status} {message}")
    return lines
