"""Schemathesis against the OpenAPI schema the API serves, in process over WSGI, on the test database and Redis:
every operation with valid and invalid data (no 5xx, every response as the schema says, invalid data refused), then
the stateful phase, which follows the links it infers (a task's `id` from POST /tasks/ into /tasks/{id}/...).

`make test` runs a few examples per operation; FUZZ_EXAMPLES raises the count (`make fuzz`). Generation is
derandomized (a fixed seed per operation, no example database), so a run repeats and does not flake."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import hypothesis
import pytest
import schemathesis
from django.contrib.auth.models import Group, Permission, User
from django.core.handlers.wsgi import WSGIHandler
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis.stateful import Bundle, initialize, multiple
from rest_framework.test import APIClient
from schemathesis import Case
from schemathesis.config import SchemathesisConfig
from schemathesis.core.transport import Response
from schemathesis.generation.stateful.state_machine import StepInput

from orchestration.models import Task, TaskState
from orchestration.services.execution import task_run
from shop.models import Order
from tests.factories import api_key, every_scope, submit_task

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))
# Scenarios of the stateful phase, and calls in each; a scenario is a chain of linked calls, so fewer are needed.
STATEFUL_SCENARIOS = max(25, FUZZ_EXAMPLES)
STATEFUL_STEPS = 6
SEED = 15

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class FuzzCounts:
    """What the fuzzer did in this session, for the terminal summary (the closing note quotes it)."""

    operations: set[str] = field(default_factory=set)
    examples: int = 0
    stateful_calls: int = 0
    stateful_scenarios: int = 0

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.operations:
            return
        reports = [*terminalreporter.stats.get("failed", []), *terminalreporter.stats.get("error", [])]
        failed = [report for report in reports if "test_fuzz.py" in report.nodeid]
        terminalreporter.section("schemathesis fuzzing")
        terminalreporter.write_line(
            f"operations: {len(self.operations)}, examples: {self.examples} (max {FUZZ_EXAMPLES} per operation "
            f"and phase), stateful: {self.stateful_scenarios} scenarios / {self.stateful_calls} calls, "
            f"failures: {len(failed)}"
        )


COUNTS = FuzzCounts()


@pytest.fixture(autouse=True)
def _report_counts(request: pytest.FixtureRequest) -> None:
    manager = request.config.pluginmanager
    if not manager.is_registered(COUNTS):
        manager.register(COUNTS, "schemathesis-fuzz-counts")


def _in_manual_review(owner: User) -> Task:
    """A refund that keeps failing until the recovery policy hands it to a human: the queue's actions apply."""
    Order.objects.filter(number="A-1002").update(settlement_locked_until=timezone.now() + timedelta(hours=1))
    refund = {"order_number": "A-1002", "amount_cents": 2000, "currency": "USD", "reason": "damaged box"}
    task = submit_task(owner, goal="Refund order A-1002", task_input=refund)
    for _ in range(4):
        Task.objects.filter(pk=task.pk).update(next_run_at=timezone.now())
        task_run(task_id=str(task.pk), worker="worker:fuzz")
    task.refresh_from_db()
    assert task.state == TaskState.MANUAL_REVIEW
    return task


# `positive_data_acceptance` wants every schema-valid body accepted. These operations also check what no schema can
# say, and answer 400 by design when it does not hold; everywhere else the check stands.
SEMANTIC_REFUSALS = {
    "POST /api/v1/tasks/": "`agent` names a configured agent, `agent_version` one of its versions",
    "POST /api/v1/tasks/{id}/assign/": "`assignee` is the username of an existing colleague",
    "POST /api/v1/tasks/{id}/resolve/": "`result` matches the failed tool's result schema",
    "POST /api/v1/queue/bulk-retry/": "`expected_count` is required once `confirm` is true",
    "POST /api/v1/webhooks/": "`url` is a public http(s) URL",
    "PUT /api/v1/webhooks/{id}/": "`url` is a public http(s) URL",
    "PATCH /api/v1/webhooks/{id}/": "`url` is a public http(s) URL",
}
# Values that do exist, drawn often (not always) for those fields: so that tasks and webhooks get created, and the
# stateful phase has real ids to follow. An address literal needs no DNS, and a public one is accepted.
DICTIONARIES = {
    "agent": ["default"],
    "agent_version": [1],
    "assignee": ["fuzz-client"],
    "url": ["https://93.184.215.14/fuzz-hook"],
}
KNOWN_VALUES = {
    "POST /api/v1/tasks/": ["agent", "agent_version"],
    "POST /api/v1/tasks/{id}/assign/": ["assignee"],
    "POST /api/v1/webhooks/": ["url"],
    "PUT /api/v1/webhooks/{id}/": ["url"],
    "PATCH /api/v1/webhooks/{id}/": ["url"],
}


def _operation(name: str) -> dict[str, Any]:
    config: dict[str, Any] = {"include-name": name}
    if name in SEMANTIC_REFUSALS:
        config["checks"] = {"positive_data_acceptance": {"enabled": False}}
    fields = KNOWN_VALUES.get(name, [])
    config["parameters"] = {f"body.{field}": {"dictionary": field, "probability": 0.7} for field in fields}
    return config


def _config() -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "generation": {
                "mode": "all",  # valid data must be accepted, invalid data refused with a 4xx
                "max-examples": FUZZ_EXAMPLES,
                "deterministic": True,
                "database": "none",
                # PostgreSQL cannot store NUL, so every string field refuses \u0000 (DRF's own validator): a rule of
                # the storage, not of the schema, and tested in test_tasks_api.py.
                "allow-x00": False,
            },
            "phases": {"stateful": {"max-steps": STATEFUL_STEPS}},
            "dictionaries": {name: {"values": values} for name, values in DICTIONARIES.items()},
            "operations": [_operation(name) for name in sorted({*SEMANTIC_REFUSALS, *KNOWN_VALUES})],
        }
    )


@dataclass
class FuzzClient:
    """The current test's client: the test database, and so the token and the tasks, are new for every test."""

    key: str = ""
    task_ids: list[str] = field(default_factory=list)


CLIENT = FuzzClient()


@pytest.fixture
def fuzz_client(queue_groups: None, demo_orders: None) -> None:
    """A client that owns tasks (one waiting in the manual queue) and holds every scope and the operators' group, so
    the queue and approval endpoints do more than refuse; its token's rate is far beyond what the fuzzer sends."""
    user = User.objects.create_user("fuzz-client")
    user.groups.add(Group.objects.get(name="operators"))
    user.user_permissions.add(Permission.objects.get(codename="force_agent_version"))
    CLIENT.task_ids = [str(submit_task(user).pk), str(_in_manual_review(user).pk)]
    CLIENT.key = api_key(user, every_scope())


def _served_schema() -> dict[str, Any]:
    """The document /api/schema/ serves, built as its view builds it (at collection, where no request may run: the
    request signals read the database), and sent to the WSGI app under test."""
    generator = SchemaGenerator()
    return json.loads(OpenApiJsonRenderer().render(generator.get_schema(request=None, public=True)))


schema = schemathesis.openapi.from_dict(_served_schema(), config=_config())
schema.app = WSGIHandler()


@schema.auth(refresh_interval=None)  # each test has its own token: never reuse an earlier one
class BearerToken:
    """The client's token on every request; the `ignored_auth` check then sends each operation without it and with a
    wrong one, which must be refused."""

    def get(self, case: Case, context: schemathesis.AuthContext) -> str:
        return CLIENT.key

    def set(self, case: Case, data: str, context: schemathesis.AuthContext) -> None:
        case.headers["Authorization"] = f"Bearer {data}"


@schema.parametrize()
# The fixture's client and token serve every example of the operation, as intended.
@hypothesis.settings(suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
@pytest.mark.usefixtures("fuzz_client")
def test_every_operation_answers_as_its_schema_says(case: Case) -> None:
    COUNTS.operations.add(case.operation.label)
    COUNTS.examples += 1
    case.call_and_validate()


@pytest.mark.usefixtures("fuzz_client")
def test_stateful_sequences_answer_as_the_schema_says() -> None:
    """Chains of calls, each taking an id from an earlier response (links schemathesis infers from the schema: a task's
    `id` from POST /tasks/ or GET /tasks/{id}/ into /tasks/{id}/..., a webhook's from POST /webhooks/)."""
    read_task = schema["/api/v1/tasks/{id}/"]["GET"]

    class Scenario(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            COUNTS.stateful_scenarios += 1

        @initialize(target=Bundle("catch_all"))
        def read_the_clients_tasks(self) -> Any:
            """Start from the client's own tasks, one of them in the manual queue, as a client that reads them
            would: their ids feed the links as a new task's do (the queue's actions on a new task only get 409)."""
            steps = []
            for task_id in CLIENT.task_ids:
                case = read_task.Case(path_parameters={"id": task_id})
                schema.auth.set(case, schemathesis.AuthContext(operation=read_task, app=schema.app))
                step = StepInput.initial(case)
                self.recorder.record_case(case=case)  # as schemathesis's own root steps do: links name their parent
                self.control.record_step(step, self.recorder)
                steps.append(self.step(step))
            return multiple(*steps)

        def after_call(self, response: Response, case: Case) -> None:
            super().after_call(response, case)
            COUNTS.operations.add(case.operation.label)
            COUNTS.stateful_calls += 1

    Scenario.run(
        settings=hypothesis.settings(
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=STATEFUL_STEPS,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
    )


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/tasks/?page=", None),  # DRF read an empty page number as the first page
        ("/api/v1/tasks/?page=last", None),  # ... and "last" as the last, where the schema says an integer
        ("/api/v1/tasks/?state=", None),  # an empty state listed every state's tasks
        ("/api/v1/tasks/", {"goal": "x", "input": {}, "agent_version": "1"}),  # DRF took a string of digits
        ("/api/v1/tasks/", {"goal": "x", "input": {}, "budget": {"cost_usd": "1e5"}}),
        ("/api/v1/tasks/", {"goal": "x", "input": {}, "budget": {"tokens": True}}),  # and true as 1
    ],
)
def test_what_the_fuzzer_found_accepted_is_refused(api: APIClient, path: str, body: dict[str, Any] | None) -> None:
    response = api.get(path) if body is None else api.post(path, body, format="json")
    assert response.status_code == 400, response.content


def test_a_budget_in_float_dollars_is_cut_to_its_four_decimal_places(api: APIClient) -> None:
    body = {"goal": "x", "input": {}, "budget": {"cost_usd": 0.1 + 0.2}}  # 0.30000000000000004
    response = api.post("/api/v1/tasks/", body, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["budget"]["cost_usd"] == 0.3
