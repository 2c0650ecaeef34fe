"""What tests/security_canaries.py looks for, and how: canaries and card numbers in text, model requests as the
model reads them, and the findings of one test."""

from __future__ import annotations

import dataclasses
import json
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from stdnum import luhn

CANARY_PREFIX = "canary-secret-"
"""Every planted plaintext starts so: a truncated or derived copy of one is still found."""

_CARD_CANDIDATE = re.compile(r"(?<![\w.-])[2-6]\d(?:[ -]?\d){11,17}(?![\w-])")
"""13 to 19 digits, single spaces or dashes between them, starting as card networks' numbers do (2 to 6), not part
of a longer word, number, decimal or dashed id."""
FAILURES_SHOWN = 10
Kind = Literal["model", "body", "log", "worker-log"]


@dataclass(frozen=True)
class Finding:
    what: str
    """`secret canary SECRET_KEY`, `card number ****1111`."""
    where: str
    """`a log record (logger 'orchestration.x', WARNING)`, `the model request to OfflineModel ('offline')`."""
    excerpt: str
    """The text around it, every canary and card in it masked."""
    test: str | None
    """The test running when it appeared (None: outside any test)."""

    def __str__(self) -> str:
        return f"{self.what} appeared in {self.where}: …{self.excerpt}…"


def card_numbers(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, digits) of every card-like number in `text`: 13-19 digits (single spaces or dashes between them)
    starting 2-6, Luhn-valid; a run that goes on into the next number is cut back at a separator until it is one."""
    for match in _CARD_CANDIDATE.finditer(text):
        candidate = match.group()
        while candidate:
            digits = re.sub(r"\D", "", candidate)
            if 13 <= len(digits) <= 19 and luhn.is_valid(digits):
                yield match.start(), match.start() + len(candidate), digits
                break
            cut = max(candidate.rfind(" "), candidate.rfind("-"))
            candidate = candidate[:cut].rstrip(" -") if cut > 0 else ""


def leaks(text: str, canaries: Mapping[str, str]) -> list[tuple[str, int, int]]:
    """(what, start, end) of every canary (by its setting's name), stray canary prefix and card number in `text`."""
    found = []
    for name, value in canaries.items():
        start = text.find(value)
        while start != -1:
            found.append((f"secret canary {name}", start, start + len(value)))
            start = text.find(value, start + 1)
    covered = [(start, end) for _, start, end in found]
    start = text.find(CANARY_PREFIX)
    while start != -1:
        if not any(a <= start < b for a, b in covered):
            found.append(("part of a secret canary", start, start + len(CANARY_PREFIX)))
        start = text.find(CANARY_PREFIX, start + 1)
    found += [(f"card number ****{digits[-4:]}", start, end) for start, end, digits in card_numbers(text)]
    return sorted(found, key=lambda leak: leak[1])


def masked(text: str, canaries: Mapping[str, str]) -> str:
    """`text` with every canary shown by its name and every card number but its last four digits hidden."""
    for name, value in canaries.items():
        text = text.replace(value, f"<{name}>")
    cards = list(card_numbers(text))
    for start, end, digits in reversed(cards):
        text = f"{text[:start]}<card ****{digits[-4:]}>{text[end:]}"
    return text


@dataclass
class Observation:
    """What was scanned inside `observed()`, and found."""

    model_requests: list[str] = field(default_factory=list)
    """Each model request as scanned (serialized), and each fake endpoint's request body."""
    log_records: list[str] = field(default_factory=list)
    """Each log record as formatted, and each worker log line."""
    findings: list[Finding] = field(default_factory=list)


class Scanner:
    """Counts what it scanned and keeps what it found, per test."""

    def __init__(self, canaries: Mapping[str, str]) -> None:
        self.canaries = dict(canaries)
        self.model_requests = 0
        self.endpoint_bodies = 0
        self.log_records = 0
        self.worker_log_lines = 0
        self.test: str | None = None
        self.findings: list[Finding] = []
        """Findings not yet reported: a checkpoint of the test they belong to fails it with them."""
        self.failed = 0
        """Findings that failed their test."""
        self.observations: list[Observation] = []
        self.worker_logs: list[Path] = []
        """Log files of the worker processes the running test started: scanned when it ends."""
        self.servers: list[Any] = []
        """The scripted HTTP servers the running test made: their bodies are scanned at each checkpoint."""
        self._servers_scanned: dict[int, int] = {}
        """id(server) -> how many of its bodies were scanned."""
        self._lock = threading.Lock()

    def scan(self, text: str, *, where: str, kind: Kind) -> list[Finding]:
        """Scan one text, and count it by its kind: a model request, a fake endpoint's request body, a log record of
        this process, a line of a worker's log."""
        with self._lock:
            if kind == "model":
                self.model_requests += 1
            elif kind == "body":
                self.endpoint_bodies += 1
            elif kind == "log":
                self.log_records += 1
            else:
                self.worker_log_lines += 1
            for observation in self.observations:
                (observation.model_requests if kind in ("model", "body") else observation.log_records).append(text)
        found = [
            Finding(what, where, masked(text[max(0, start - 80) : end + 80], self.canaries), self.test)
            for what, start, end in leaks(text, self.canaries)
        ]
        if found:
            with self._lock:
                if self.observations:
                    self.observations[-1].findings.extend(found)
                else:
                    self.findings.extend(found)
        return found

    def scan_model_request(self, model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        where = f"the model request to {type(model.inner).__name__} ({model.model_name!r})"
        self.scan(request_as_sent(args, kwargs), where=where, kind="model")

    def scan_servers(self) -> None:
        """The bodies the scripted HTTP servers received since the last look (worker processes' model requests)."""
        for server in list(self.servers):
            done = self._servers_scanned.get(id(server), 0)
            bodies = list(server.bodies)
            for number, body in enumerate(bodies[done:], start=done + 1):
                where = f"request body #{number} to the scripted OpenAI server at {server.base_url}"
                self.scan(body.decode(errors="replace"), where=where, kind="body")
            self._servers_scanned[id(server)] = len(bodies)

    def scan_worker_logs(self) -> None:
        for path in self.worker_logs:
            if not path.exists():
                continue
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
                self.scan(line, where=f"worker log {path.name}, line {number}", kind="worker-log")
        self.worker_logs = []

    def begin(self, test: str) -> None:
        self.test = test

    def end(self) -> None:
        self.test = None
        self.servers, self._servers_scanned = [], {}

    def take(self) -> list[Finding]:
        """The findings not reported yet, now handed over."""
        with self._lock:
            found, self.findings = self.findings, []
        return found


def request_as_sent(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """A `Model.get_response` request as JSON text: what the model reads of it (its settings' HTTP headers aside,
    which go to the endpoint, an API key among them)."""
    names = ("system_instructions", "input", "model_settings", "tools", "output_schema", "handoffs", "tracing")
    request = dict(zip(names, args, strict=False)) | kwargs
    settings = request.get("model_settings")
    output_schema = request.get("output_schema")
    sent = {
        "instructions": request.get("system_instructions"),
        "input": request.get("input"),
        "tools": [
            {"name": getattr(tool, "name", ""), "description": getattr(tool, "description", ""),
             "parameters": getattr(tool, "params_json_schema", None), "tool": tool}  # the rest of a hosted tool
            for tool in request.get("tools") or []
        ],
        "output_schema": output_schema.json_schema() if output_schema is not None else None,
        "handoffs": [
            {"name": handoff.tool_name, "description": handoff.tool_description,
             "parameters": handoff.input_json_schema}
            for handoff in request.get("handoffs") or []
        ],
        "settings": dataclasses.replace(settings, extra_headers=None) if settings is not None else None,
        "previous_response_id": request.get("previous_response_id"),
        "conversation_id": request.get("conversation_id"),
        "prompt": request.get("prompt"),
    }  # fmt: skip
    try:
        return json.dumps(sent, default=_plain, ensure_ascii=False)
    except (TypeError, ValueError):  # a circular object: its text is still what to search
        return repr(sent)


def _plain(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: getattr(value, f.name) for f in dataclasses.fields(value) if not callable(getattr(value, f.name))
        }
    return str(value)
