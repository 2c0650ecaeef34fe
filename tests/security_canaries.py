"""Pytest plugin: the canary secrets config/test_settings.py plants must never reach the model or a log line, and
no card number may reach a log line or a model request.

For the whole suite it scans
- every model request the platform sends: `DurableModel._request`, the one call through which every turn and
  every summary goes to the model it wraps (offline, an endpoint's, a test's scripted one), serialized as the model
  reads it (instructions, input, tools' names, descriptions and parameter schemas, output schema, handoffs, settings
  but their HTTP headers);
- every request body the fake OpenAI endpoints receive (tests/agent_runtime/fake_openai*.py): the bytes a real
  endpoint would read, from this process or from a worker's;
- every log record this process emits, formatted as production formats it (JsonFormatter, which redacts, with the
  trace filter and the traceback), and the log files of the worker processes a test starts (tests/workers.py).

A finding fails the test in which it happened, naming the canary (or the card, masked) and where it appeared. Tests
of the scanner itself look inside `observed()`, where findings are theirs to assert rather than failures.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.canary_scan import (  # noqa: F401  (tests import these from the plugin)
    CANARY_PREFIX,
    FAILURES_SHOWN,
    Finding,
    Observation,
    Scanner,
    card_numbers,
    leaks,
    masked,
    request_as_sent,
)


class _LogScan(logging.Handler):
    """On the root logger: each record formatted as the console handler formats it, then scanned."""

    def __init__(self, scanner: Scanner) -> None:
        from orchestration.tracing import JsonFormatter, TraceContextFilter

        super().__init__()
        self.scanner = scanner
        self.setFormatter(JsonFormatter())
        self.addFilter(TraceContextFilter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # a record that cannot be formatted: scan what it holds
            text = f"{record.msg!r} {record.args!r} {record.exc_info!r}"
        self.scanner.scan(text, where=f"a log record (logger {record.name!r}, {record.levelname})", kind="log")


_scanner: Scanner | None = None


def scanner() -> Scanner:
    """The scanner of this session."""
    if _scanner is None:
        raise RuntimeError("the secret canaries plugin is not active in this session")
    return _scanner


def planted() -> dict[str, str]:
    """The canaries the test settings planted: setting name -> value."""
    return dict(scanner().canaries)


@contextmanager
def observed() -> Iterator[Observation]:
    """What is scanned inside the block, and found: findings in it are the test's to assert, not failures."""
    active = scanner()
    observation = Observation()
    with active._lock:
        active.observations.append(observation)
    try:
        yield observation
    finally:
        active.scan_servers()
        with active._lock:
            active.observations.remove(observation)


def _failure(found: list[Finding]) -> str:
    lines = [f"{len(found)} secret canary or card number finding(s):"]
    lines += [f"  {finding}" for finding in found[:FAILURES_SHOWN]]
    if len(found) > FAILURES_SHOWN:
        lines.append(f"  ... and {len(found) - FAILURES_SHOWN} more")
    return "\n".join(lines)


def _wrap(
    target: Any, name: str, before: Callable[..., None], monkeypatch: pytest.MonkeyPatch, active: Scanner
) -> None:
    """Replace `target.name` with a function that calls `before` with the same arguments first. A scanner that
    breaks records a finding (the test fails and says why) rather than breaking the code under test."""
    original = getattr(target, name)  # raises when the seam is gone: the scan must not go quiet

    def look(*args: Any, **kwargs: Any) -> None:
        try:
            before(*args, **kwargs)
        except Exception as exc:
            with active._lock:
                active.findings.append(Finding("a scanner error", f"{target.__name__}.{name}", repr(exc), active.test))

    if inspect.iscoroutinefunction(original):

        async def wrapped_async(*args: Any, **kwargs: Any) -> Any:
            look(*args, **kwargs)
            return await original(*args, **kwargs)

        monkeypatch.setattr(target, name, wrapped_async)
        return

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        look(*args, **kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, wrapped)


class _Plugin:
    def __init__(self, active: Scanner) -> None:
        self.scanner = active
        self.handler = _LogScan(active)
        self.monkeypatch = pytest.MonkeyPatch()
        self.unreported: list[Finding] = []

    def install(self) -> None:
        from agent_runtime.durable_model import DurableModel
        from tests import workers
        from tests.agent_runtime import fake_openai, fake_openai_server

        active, patch = self.scanner, self.monkeypatch
        # Every turn and every summary the platform asks of a model, as the model it wraps is sent it (a replayed
        # turn is sent nothing).
        _wrap(
            DurableModel,
            "_request",
            lambda model, _fault, args, kwargs: active.scan_model_request(model, args, kwargs),
            patch,
            active,
        )

        def body(endpoint: Any, request: Any) -> None:
            where = f"a request body to the fake OpenAI endpoint ({request.url.path})"
            active.scan(request.content.decode(errors="replace"), where=where, kind="body")

        _wrap(fake_openai.FakeEndpoint, "handle", body, patch, active)
        original_init = fake_openai_server.ScriptedServer.__init__

        def server_init(server: Any, *args: Any, **kwargs: Any) -> None:
            original_init(server, *args, **kwargs)
            active.servers.append(server)

        patch.setattr(fake_openai_server.ScriptedServer, "__init__", server_init)
        _wrap(
            workers, "_spawn", lambda command, env, log_path: active.worker_logs.append(Path(log_path)), patch, active
        )
        self.attach()

    def attach(self) -> None:
        """(Again:) a test that reconfigures logging replaces the root logger's handlers."""
        root = logging.getLogger()
        if self.handler not in root.handlers:
            root.addHandler(self.handler)

    def uninstall(self) -> None:
        logging.getLogger().removeHandler(self.handler)
        self.monkeypatch.undo()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Any:
        self.unreported += self.scanner.take()  # found between tests
        self.attach()
        self.scanner.begin(item.nodeid)
        return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Any:
        result = yield  # a failing test keeps its own error: what was found is reported at its teardown
        self.scanner.scan_servers()
        self._fail_with(self.scanner.take())
        return result

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Any:
        try:
            result = yield
        except BaseException:
            self.unreported += self._teardown_findings()  # the teardown's own error wins; the summary shows these
            raise
        self._fail_with(self._teardown_findings())
        return result

    def _teardown_findings(self) -> list[Finding]:
        self.scanner.scan_servers()
        self.scanner.scan_worker_logs()  # its workers are stopped by now: their logs are whole
        found = self.scanner.take()
        self.scanner.end()
        return found

    def _fail_with(self, found: list[Finding]) -> None:
        if found:
            self.scanner.failed += len(found)
            pytest.fail(_failure(found), pytrace=False)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.unreported += self.scanner.take()
        if self.unreported and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        active = self.scanner
        findings = active.failed + len(self.unreported)
        terminalreporter.write_line(
            f"secret canaries: {active.model_requests} model requests and {active.log_records} log records scanned, "
            f"{findings} findings (also {active.endpoint_bodies} fake-endpoint request bodies and "
            f"{active.worker_log_lines} worker log lines)"
        )
        for finding in self.unreported[:FAILURES_SHOWN]:
            during = f"during {finding.test}" if finding.test else "outside any test"
            terminalreporter.write_line(f"  unreported ({during}): {finding}", red=True)


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    global _scanner
    from django.conf import settings

    canaries = getattr(settings, "SECRET_CANARIES", None)
    if not canaries:
        raise pytest.UsageError("the test settings plant no SECRET_CANARIES (config/test_settings.py)")
    replaced = sorted(name for name, value in canaries.items() if getattr(settings, name, None) != value)
    if replaced:
        raise pytest.UsageError(f"planted canaries are not what the settings hold: {replaced}")
    _scanner = Scanner(canaries)
    plugin = _Plugin(_scanner)
    plugin.install()
    session.config.pluginmanager.register(plugin, "secret-canaries")
    session.config.add_cleanup(plugin.uninstall)
