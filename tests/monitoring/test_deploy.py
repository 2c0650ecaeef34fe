"""The production folder deploy/: compose file, image, Prometheus, Alertmanager and Grafana, checked without Docker.

Docker is not available here, so the compose file is validated against the Compose specification's JSON Schema
(the copy vendored by `check-jsonschema`) and its wiring is checked by reading it: services, mounts, ports,
metrics directories, secrets, and the scrape jobs that must reach them. promtool and amtool (Debian's
`prometheus` and `prometheus-alertmanager`, `make monitoring-tools`) check the Prometheus and Alertmanager files
for real; a missing tool fails the test, it is never skipped. Grafana's server is not installable here: the
dashboard's structure is checked instead, and its queries go through promtool's PromQL parser.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import shlex
import shutil
import subprocess
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
DOCKERFILE = DEPLOY / "Dockerfile"
PROMETHEUS_FILE = DEPLOY / "prometheus" / "prometheus.yml"
RULES_DIR = DEPLOY / "prometheus" / "rules"
ALERTMANAGER_FILE = DEPLOY / "alertmanager" / "alertmanager.yml"
GRAFANA_DATASOURCE_FILE = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
GRAFANA_PROVIDER_FILE = DEPLOY / "grafana" / "provisioning" / "dashboards" / "agent-platform.yml"
DASHBOARD_FILE = DEPLOY / "grafana" / "dashboards" / "agent-platform.json"

SERVICES = {"postgres", "redis", "migrate", "web", "beat", "prometheus", "alertmanager", "grafana"}
APP_SERVICES = {"migrate", "web", "beat"}  # plus every worker service
METRICS_PORT = 9808
WEB_PORT = 8000
DATASOURCE_UID = "prometheus"

TOOL_RULES = ("tool_call_success_rate", "tool_call_p95_latency")
AGENT_RULES = (
    "agent_step_retry_rate",
    "token_input_per_request",
    "token_output_per_request",
    "cost_per_successful_task",
    "manual_handoff_ratio",
)
RULE_UNITS = {
    "tool_call_success_rate": "percentunit",
    "tool_call_p95_latency": "s",
    "agent_step_retry_rate": "percentunit",
    "token_input_per_request": "short",
    "token_output_per_request": "short",
    "cost_per_successful_task": "currencyUSD",
    "manual_handoff_ratio": "percentunit",
}
OPERATIONS_QUERIES = (
    re.compile(r"max\s*(by\s*\(\s*state\s*\))?\s*\(\s*agent_tasks_open\s*\)\s*(by\s*\(\s*state\s*\))?"),
    re.compile(r"max\s*\(\s*agent_tasks_due\s*\)"),
    re.compile(r"max\s*\(\s*agent_manual_review_oldest_age_seconds\s*\)"),
    re.compile(r"max\s*\(\s*agent_manual_review_sla_seconds\s*\)"),
    re.compile(r"max\s*(by\s*\(\s*tool\s*\))?\s*\(\s*agent_circuit_open\s*\)\s*(by\s*\(\s*tool\s*\))?"),
    re.compile(r'sum\s*\(\s*up\s*\{\s*job\s*=\s*"agent-workers"\s*\}\s*\)'),
)
# Environment variables the app processes get that config/settings.py does not read itself.
PROCESS_VARIABLES = {"PROMETHEUS_MULTIPROC_DIR", "CELERY_METRICS_PORT"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|KEY$|TOKEN$")  # TASK_TOKEN_BUDGET is a number, not a secret
# `${NAME}`, `${NAME:?message}`, `${NAME?message}` or `${NAME:-}` (an empty default): never a literal secret.
SECRET_REFERENCE = re.compile(r"^\$\{[A-Z][A-Z0-9_]*(?::?\?[^}]*|:-)?\}$")
INTERPOLATION = re.compile(r"\$\{([A-Z][A-Z0-9_]*)")


# --- helpers ---------------------------------------------------------------------------------------------


@cache
def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _compose() -> dict[str, Any]:
    data = _yaml(COMPOSE_FILE)
    assert isinstance(data, dict), f"{COMPOSE_FILE} is not a mapping"
    return data


def _services() -> dict[str, dict[str, Any]]:
    return _compose()["services"]


def _workers() -> dict[str, dict[str, Any]]:
    workers = {name: service for name, service in _services().items() if name.startswith("worker")}
    assert workers, "no worker service (a service named worker or worker-*)"
    return workers


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        pairs = (item.split("=", 1) for item in environment)
        return {pair[0]: pair[1] if len(pair) > 1 else "" for pair in pairs}
    return {key: "" if value is None else str(value) for key, value in environment.items()}


def _volumes(service: dict[str, Any]) -> list[dict[str, Any]]:
    """A service's mounts in the long syntax, short entries converted (tmpfs: entries included)."""
    mounts: list[dict[str, Any]] = []
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            mounts.append(entry)
            continue
        parts = entry.split(":")
        source, target = (parts[0], parts[1]) if len(parts) > 1 else (None, parts[0])
        kind = "volume" if source is None or not source.startswith((".", "/", "~")) else "bind"
        mounts.append({"type": kind, "source": source, "target": target, "read_only": parts[2:] == ["ro"]})
    tmpfs = service.get("tmpfs", [])
    for entry in [tmpfs] if isinstance(tmpfs, str) else tmpfs:
        mounts.append({"type": "tmpfs", "target": entry.split(":")[0]})
    return mounts


def _mount_target(service: str, source: str) -> str:
    for mount in _volumes(_services()[service]):
        if mount["type"] == "bind" and Path(mount["source"]) == Path(source):
            return str(mount["target"])
    raise AssertionError(f"service {service} does not mount {source}")


def _container_ports(service: dict[str, Any]) -> set[int]:
    """Ports a service listens on as the compose file tells it: published, exposed, or gunicorn's --bind."""
    ports: set[int] = set()
    for entry in service.get("ports", []):
        target = entry["target"] if isinstance(entry, dict) else str(entry).rsplit(":", 1)[-1]
        ports.add(int(str(target).split("/")[0]))
    ports.update(int(str(port).split("/")[0]) for port in service.get("expose", []))
    command = _command(service)
    for flag in ("--bind", "-b"):
        if flag in command:
            ports.add(int(command[command.index(flag) + 1].rsplit(":", 1)[-1]))
    metrics_port = _environment(service).get("CELERY_METRICS_PORT")
    if metrics_port:
        ports.add(int(metrics_port))
    return ports


def _replicas(service: dict[str, Any]) -> int:
    return int(service.get("deploy", {}).get("replicas", 1))


def _tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        pytest.fail(f"{name} is not installed: run `make monitoring-tools` (Debian's prometheus packages)")
    return path


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=REPO, check=False)


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD_FILE.read_text())


def _panels() -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    panels: list[dict[str, Any]] = []
    for panel in _dashboard()["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def _query_panels() -> list[dict[str, Any]]:
    return [panel for panel in _panels() if panel.get("targets")]


def _panels_querying(rule: str) -> list[dict[str, Any]]:
    pattern = re.compile(rf"\b{rule}\b")
    return [panel for panel in _query_panels() if any(pattern.search(t.get("expr", "")) for t in panel["targets"])]


def _recording_rules() -> dict[str, str]:
    rules: dict[str, str] = {}
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in (_yaml(path) or {}).get("groups", []):
            for rule in group.get("rules", []):
                if "record" in rule:
                    rules[rule["record"]] = rule["expr"]
    return rules


def _alerting_rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in sorted(RULES_DIR.glob("*.yml"))
        for group in (_yaml(path) or {}).get("groups", [])
        for rule in group.get("rules", [])
        if "alert" in rule
    ]


def _strings(node: Any) -> list[str]:
    """Every string in a parsed YAML document, keys included."""
    if isinstance(node, dict):
        return [text for key, value in node.items() for text in (*_strings(key), *_strings(value))]
    if isinstance(node, list):
        return [text for item in node for text in _strings(item)]
    return [node] if isinstance(node, str) else []


def _amtool_route(*labels: str) -> str:
    result = _run(_tool("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER_FILE}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


# --- compose: shape ----------------------------------------------------------------------------------------


def test_compose_file_matches_the_compose_specification() -> None:
    try:
        schema_file = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
        schema = json.loads(schema_file.read_text())
    except ModuleNotFoundError:
        pytest.fail("check-jsonschema (it carries the Compose schema) is missing: pip install check-jsonschema==0.39.0")
    validator = jsonschema.Draft202012Validator(schema)
    errors = [
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in validator.iter_errors(_compose())
    ]
    assert not errors, "\n".join(errors)


def test_compose_has_every_service() -> None:
    services = _services()
    assert set(services) >= SERVICES, f"missing: {sorted(SERVICES - set(services))}"
    workers = _workers()
    total = sum(_replicas(worker) for worker in workers.values())
    assert total >= 3, f"{total} worker containers; at least 3 (several services, or replicas)"


def test_postgres_and_redis_images_healthchecks_and_volumes() -> None:
    services = _services()
    assert re.fullmatch(r"postgres:16([.-].*)?", services["postgres"]["image"])
    assert re.fullmatch(r"redis:7([.-].*)?", services["redis"]["image"])
    for name, data_dir in (("postgres", "/var/lib/postgresql/data"), ("redis", "/data")):
        service = services[name]
        assert "healthcheck" in service, f"{name} has no healthcheck"
        named = {m["target"]: m for m in _volumes(service) if m["type"] == "volume"}
        assert data_dir in named, f"{name} keeps {data_dir} in no named volume"
        assert named[data_dir]["source"] in _compose().get("volumes", {}), f"{name}'s volume is not declared"


def test_long_running_services_restart_and_migrate_runs_once() -> None:
    for name, service in _services().items():
        if name == "migrate":
            assert str(service.get("restart", "no")) == "no"
        else:
            assert service.get("restart") in {"always", "unless-stopped"}, f"{name} has no restart policy"


def test_depends_on_uses_conditions_that_can_be_met() -> None:
    services = _services()
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on without conditions"
        for other, spec in depends_on.items():
            assert other in services, f"{name} depends on unknown service {other}"
            assert spec.get("condition") in conditions, f"{name} -> {other}: no condition"
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[other], f"{name} waits for {other} to be healthy: no healthcheck"
            if spec["condition"] == "service_completed_successfully":
                assert str(services[other].get("restart", "no")) == "no", f"{other} restarts: it never completes"
    for name in APP_SERVICES - {"migrate"} | set(_workers()):
        depends_on = services[name]["depends_on"]
        assert depends_on["migrate"]["condition"] == "service_completed_successfully", name
        assert depends_on["redis"]["condition"] == "service_healthy", name
    for name in {"web", "migrate"} | set(_workers()):
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy", name


def test_app_services_share_the_image_and_the_settings() -> None:
    services = _services()
    app_services = APP_SERVICES | set(_workers())
    builds = {name: json.dumps(services[name].get("build"), sort_keys=True) for name in app_services}
    assert len(set(builds.values())) == 1 and services["web"].get("build"), builds
    build = services["web"]["build"]
    context = (DEPLOY / build["context"]).resolve()
    assert context == REPO, f"build context {context} is not the repository root"
    assert (context / build["dockerfile"]).resolve() == DOCKERFILE
    environments = {name: _environment(services[name]) for name in app_services}
    for name, environment in environments.items():
        common = {key: value for key, value in environment.items() if key not in PROCESS_VARIABLES}
        assert common == {k: v for k, v in environments["web"].items() if k not in PROCESS_VARIABLES}, name
        database_url = environment["DATABASE_URL"]
        assert database_url.startswith("postgres://") and "@postgres:5432/" in database_url, name
        assert environment["REDIS_URL"].startswith("redis://redis:6379/")
        assert "DEBUG" not in environment, f"{name} sets DEBUG"


def test_app_environment_is_read_by_the_settings() -> None:
    settings_source = (REPO / "config" / "settings.py").read_text()
    read = set(re.findall(r"env_\w+\(\s*\"([A-Z][A-Z0-9_]*)\"", settings_source))
    for name in APP_SERVICES | set(_workers()):
        unknown = set(_environment(_services()[name])) - read - PROCESS_VARIABLES
        assert not unknown, f"{name} sets variables config/settings.py never reads: {sorted(unknown)}"
    allowed_hosts = _environment(_services()["web"])["ALLOWED_HOSTS"].split(",")
    # Prometheus scrapes with Host: web:8000 and the healthcheck with 127.0.0.1: Django answers others with 400.
    assert {"web", "127.0.0.1"} <= set(allowed_hosts)


def test_migrate_web_and_beat_commands() -> None:
    services = _services()
    commands = {name: _command(services[name]) for name in ("migrate", "web", "beat")}
    known = {path.stem for path in REPO.glob("*/management/commands/*.py")} | {"check", "migrate"}
    migrate_line = " ".join(commands["migrate"])
    used = re.findall(r"manage\.py\s+(\w+)", migrate_line)
    assert "migrate" in used, migrate_line
    assert set(used) <= known, f"unknown management commands: {sorted(set(used) - known)}"
    web = commands["web"]
    assert web[:2] == ["gunicorn", "config.wsgi"], web
    assert web[web.index("-c") + 1] == "deploy/gunicorn.conf.py", web
    assert web[web.index("--bind") + 1] == f"0.0.0.0:{WEB_PORT}", web
    assert commands["beat"][:4] == ["celery", "-A", "config", "beat"], commands["beat"]
    assert _replicas(services["beat"]) == 1, "beat must run exactly once"


# --- compose: metrics directories and ports ----------------------------------------------------------------


def test_every_worker_is_a_prefork_node_with_its_own_metrics_tmpfs() -> None:
    for name, worker in _workers().items():
        command = _command(worker)
        assert command[:4] == ["celery", "-A", "config", "worker"], f"{name}: {command}"
        assert command[command.index("--pool") + 1] == "prefork", name
        assert command[command.index("--concurrency") + 1] == "2", name
        environment = _environment(worker)
        assert environment.get("CELERY_METRICS_PORT") == str(METRICS_PORT), name
        metrics_dir = environment.get("PROMETHEUS_MULTIPROC_DIR")
        assert metrics_dir, f"{name} has no PROMETHEUS_MULTIPROC_DIR"
        mounts = [mount for mount in _volumes(worker) if mount["target"] == metrics_dir]
        assert [mount["type"] for mount in mounts] == ["tmpfs"], f"{name}: {metrics_dir} must be a tmpfs of its own"
        # A scaled service: fixed names or host ports would collide between its containers.
        assert "container_name" not in worker, name
        assert not worker.get("ports"), f"{name} publishes host ports"


def test_no_two_services_share_a_metrics_directory_volume() -> None:
    owners: dict[str, list[str]] = {}
    for name, service in _services().items():
        metrics_dir = _environment(service).get("PROMETHEUS_MULTIPROC_DIR")
        for mount in _volumes(service):
            if metrics_dir and mount["target"] == metrics_dir and mount["type"] != "tmpfs":
                owners.setdefault(str(mount.get("source")), []).append(name)
    assert not owners, f"metrics directories on shared volumes: {owners}"


def test_web_has_its_own_metrics_tmpfs() -> None:
    web = _services()["web"]
    metrics_dir = _environment(web).get("PROMETHEUS_MULTIPROC_DIR")
    assert metrics_dir, "web has no PROMETHEUS_MULTIPROC_DIR (gunicorn runs several processes)"
    assert [m["type"] for m in _volumes(web) if m["target"] == metrics_dir] == ["tmpfs"]


def test_every_file_the_compose_file_mounts_exists() -> None:
    mounted = 0
    for name, service in _services().items():
        for mount in _volumes(service):
            if mount["type"] == "bind":
                source = (DEPLOY / mount["source"]).resolve()
                assert source.exists(), f"{name} mounts {mount['source']}, which does not exist ({source})"
                assert source.is_relative_to(DEPLOY), f"{name} mounts {source} from outside deploy/"
                mounted += 1
            elif mount["type"] == "volume" and mount.get("source"):
                assert mount["source"] in _compose().get("volumes", {}), f"{name}: undeclared {mount['source']}"
    assert mounted >= 5


def test_monitoring_services_mount_their_configuration() -> None:
    services = _services()
    assert _mount_target("prometheus", "./prometheus/prometheus.yml") == "/etc/prometheus/prometheus.yml"
    config_flags = [part for part in _command(services["prometheus"]) if part.startswith("--config.file=")]
    assert config_flags == ["--config.file=/etc/prometheus/prometheus.yml"]
    # rule_files are relative to prometheus.yml: rules/ must sit beside it in the container.
    assert _mount_target("prometheus", "./prometheus/rules") == "/etc/prometheus/rules"
    am_config = _mount_target("alertmanager", "./alertmanager/alertmanager.yml")
    assert f"--config.file={am_config}" in _command(services["alertmanager"])
    assert _mount_target("grafana", "./grafana/provisioning") == "/etc/grafana/provisioning"
    _mount_target("grafana", "./grafana/dashboards")


# --- compose: secrets ------------------------------------------------------------------------------------


def test_no_secret_is_written_inline() -> None:
    checked = 0
    for name, service in _services().items():
        for key, value in _environment(service).items():
            if SECRET_NAME.search(key):
                assert SECRET_REFERENCE.fullmatch(value), f"{name}: {key} must come from ${{...}}, not {value!r}"
                checked += 1
            for url in re.findall(r"[a-z]+://[^\s]+", value):
                credentials = url.split("://", 1)[1].split("@", 1)
                if len(credentials) == 2 and ":" in credentials[0]:
                    password = credentials[0].split(":", 1)[1]
                    assert SECRET_REFERENCE.fullmatch(password), f"{name}: {key} has a literal password"
    assert checked >= 4


def test_every_interpolated_variable_is_in_the_env_example_without_a_value_for_secrets() -> None:
    example: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            example[key.strip()] = value.strip()
    used = {name for text in _strings(_compose()) for name in INTERPOLATION.findall(text)}
    assert used <= set(example), f"not in {ENV_EXAMPLE.name}: {sorted(used - set(example))}"
    for required in ("SECRET_KEY", "POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        assert required in example, f"{required} missing from {ENV_EXAMPLE.name}"
    for key, value in example.items():
        if SECRET_NAME.search(key):
            assert value == "", f"{ENV_EXAMPLE.name} ships a value for {key}"


# --- Dockerfile ------------------------------------------------------------------------------------------


def test_dockerfile_builds_a_non_root_image_without_dev_dependencies() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    instructions = [line.split(None, 1) for line in lines if re.match(r"^[A-Z]+\s", line)]
    assert instructions[0] == ["FROM", "python:3.11-slim"], instructions[0]
    users = [argument for keyword, argument in instructions if keyword == "USER"]
    assert users and users[-1] not in {"root", "0"}, f"the image runs as {users[-1:] or 'root'}"
    pip_index = next(i for i, (keyword, argument) in enumerate(instructions) if "pip install" in argument)
    user_index = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "USER")
    assert pip_index < user_index, "USER must come after the installation"
    text = DOCKERFILE.read_text()
    assert "[dev]" not in text and "requirements" not in text, "dev dependencies or another requirements source"
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = {pattern.rstrip("*") for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied: set[str] = set()
    for keyword, argument in instructions:
        if keyword == "COPY":
            sources = argument.split()[:-1]
            for source in sources:
                assert (REPO / source).exists(), f"COPY {source}: not in the repository"
                copied.add(source.rstrip("/"))
    missing = (packages | {"pyproject.toml", "manage.py", "templates", "deploy/gunicorn.conf.py"}) - copied
    assert not missing, f"the image lacks {sorted(missing)}"


# --- Prometheus ------------------------------------------------------------------------------------------


def test_prometheus_globals_rules_and_alerting() -> None:
    config = _yaml(PROMETHEUS_FILE)
    assert config["global"]["scrape_interval"] == "15s"
    assert config["global"]["evaluation_interval"] == "15s"
    assert config["rule_files"] == ["rules/*.yml"]
    targets = [t for am in config["alerting"]["alertmanagers"] for sc in am["static_configs"] for t in sc["targets"]]
    assert targets, "no Alertmanager"
    for target in targets:
        host, port = target.rsplit(":", 1)
        assert host in _services() and int(port) in _container_ports(_services()[host]), target


def test_scrape_jobs_reach_the_web_and_every_worker() -> None:
    jobs = {job["job_name"]: job for job in _yaml(PROMETHEUS_FILE)["scrape_configs"]}
    assert {"agent-web", "agent-workers", "prometheus"} <= set(jobs)
    web = jobs["agent-web"]
    assert web.get("metrics_path", "/metrics") == "/metrics"
    web_targets = [target for config in web["static_configs"] for target in config["targets"]]
    assert web_targets == [f"web:{WEB_PORT}"]
    assert WEB_PORT in _container_ports(_services()["web"])

    workers = jobs["agent-workers"]
    assert workers.get("metrics_path", "/metrics") == "/metrics"
    reached: set[str] = set()
    for config in workers.get("dns_sd_configs", []):
        assert config["type"] == "A" and config["port"] == METRICS_PORT, config
        reached.update(config["names"])
    for config in workers.get("static_configs", []):
        for target in config["targets"]:
            host, port = target.rsplit(":", 1)
            assert int(port) == METRICS_PORT, target
            reached.add(host)
    assert reached == set(_workers()), f"agent-workers reaches {sorted(reached)}, workers are {sorted(_workers())}"
    for name in reached:
        assert _environment(_workers()[name])["CELERY_METRICS_PORT"] == str(METRICS_PORT), name
    if any(_replicas(worker) > 1 for worker in _workers().values()):
        assert workers.get("dns_sd_configs"), "a scaled worker service needs DNS discovery, not static targets"


def test_promtool_accepts_the_prometheus_configuration_and_its_rules(tmp_path: Path) -> None:
    # promtool checks that the scrape token's file exists: compose mounts it at /run/secrets/, so the check runs on
    # a copy of the folder whose token path points at a file that exists here.
    copy = tmp_path / "prometheus"
    shutil.copytree(PROMETHEUS_FILE.parent, copy)
    (tmp_path / "scrape-token").write_text("a-token")
    config = PROMETHEUS_FILE.read_text().replace("/run/secrets/metrics_scrape_token", str(tmp_path / "scrape-token"))
    (copy / PROMETHEUS_FILE.name).write_text(config)
    result = _run(_tool("promtool"), "check", "config", str(copy / PROMETHEUS_FILE.name))
    assert result.returncode == 0, result.stdout + result.stderr
    rule_files = sorted(RULES_DIR.glob("*.yml"))
    # The rule files (recording.yml, alerts.yml) are another change's; their absence is reported, not hidden.
    assert rule_files, f"no rule files in {RULES_DIR}: promtool checked the configuration alone"


def test_every_alert_has_a_severity_alertmanager_routes() -> None:
    alerts = _alerting_rules()
    assert alerts, f"no alerting rules in {RULES_DIR}"
    for alert in alerts:
        severity = alert.get("labels", {}).get("severity")
        assert severity in {"page", "ticket"}, f"{alert['alert']}: severity {severity!r}"


# --- Alertmanager ----------------------------------------------------------------------------------------


def test_amtool_accepts_the_alertmanager_configuration() -> None:
    result = _run(_tool("amtool"), "check-config", str(ALERTMANAGER_FILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_are_routed_by_severity() -> None:
    assert _amtool_route("alertname=AnyAlert", "agent=default", "severity=page") == "pager"
    assert _amtool_route("alertname=AnyAlert", "agent=default", "severity=ticket") == "ticket"
    assert _amtool_route("alertname=AnyAlert") == "ticket", "an alert without severity must reach someone"


def test_alertmanager_groups_inhibits_and_uses_placeholder_webhooks() -> None:
    config = _yaml(ALERTMANAGER_FILE)
    assert {"alertname", "agent"} <= set(config["route"]["group_by"])
    inhibit = config["inhibit_rules"]
    assert any(
        rule["source_matchers"] == ['severity="page"']
        and rule["target_matchers"] == ['severity="ticket"']
        and "alertname" in rule["equal"]
        for rule in inhibit
    ), inhibit
    receivers = {receiver["name"]: receiver for receiver in config["receivers"]}
    assert set(receivers) == {"pager", "ticket"}
    for receiver in receivers.values():
        for webhook in receiver["webhook_configs"]:
            # Operators replace these; a placeholder must never resolve to a real host.
            assert re.match(r"https?://[\w.-]+\.example\.internal/", webhook["url"]), webhook["url"]
    assert "OPERATOR" in ALERTMANAGER_FILE.read_text(), "the placeholders are not documented"


# --- Grafana ---------------------------------------------------------------------------------------------


def test_grafana_datasource_is_the_compose_prometheus() -> None:
    datasources = _yaml(GRAFANA_DATASOURCE_FILE)["datasources"]
    assert len(datasources) == 1
    datasource = datasources[0]
    assert datasource["uid"] == DATASOURCE_UID and datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert 9090 in _container_ports(_services()["prometheus"])


def test_dashboard_provider_reads_the_mounted_dashboards() -> None:
    providers = _yaml(GRAFANA_PROVIDER_FILE)["providers"]
    assert [provider["type"] for provider in providers] == ["file"]
    path = providers[0]["options"]["path"]
    assert path == _mount_target("grafana", "./grafana/dashboards"), "the provider reads another folder"
    provisioning = _mount_target("grafana", "./grafana/provisioning")
    for file in (GRAFANA_PROVIDER_FILE, GRAFANA_DATASOURCE_FILE):
        relative = file.relative_to(DEPLOY / "grafana" / "provisioning")
        assert relative.parts[0] in {"dashboards", "datasources"}, relative
        assert str(Path(provisioning) / relative).startswith("/etc/grafana/provisioning/")
    home = _environment(_services()["grafana"]).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert home == f"{path}/{DASHBOARD_FILE.name}"


def test_dashboard_identity_and_variables() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] == "agent-platform"
    assert dashboard["title"] == "Agent platform"
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert {"agent", "agent_version", "tool"} <= set(variables)
    recorded = set(TOOL_RULES) | set(AGENT_RULES)
    for name in ("agent", "agent_version", "tool"):
        variable = variables[name]
        assert variable["type"] == "query" and variable["multi"] and variable["includeAll"], name
        assert variable["datasource"]["uid"] == DATASOURCE_UID, name
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = re.fullmatch(r"label_values\(\s*(\w+)(\{[^}]*\})?\s*,\s*(\w+)\s*\)", query)
        assert match and match.group(1) in recorded and match.group(3) == name, f"{name}: {query}"
        # "All" as `.*` matches series whose label is empty, a list of the values would not.
        assert variable.get("allValue") == ".*", name


def test_every_panel_queries_the_provisioned_datasource() -> None:
    assert _query_panels()
    for panel in _query_panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}, panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", panel["datasource"])["uid"] == DATASOURCE_UID, panel["title"]
            assert target["expr"].strip(), panel["title"]
    datasources = {json.dumps(panel.get("datasource")) for panel in _panels() if "datasource" in panel}
    assert datasources == {json.dumps({"type": "prometheus", "uid": DATASOURCE_UID})}


def test_panel_ids_are_unique_and_panels_do_not_overlap() -> None:
    panels = _panels()
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), ids
    boxes = []
    for panel in _dashboard()["panels"]:  # top level: rows' own panels are laid out when they open
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        boxes.append((panel["title"], grid["x"], grid["y"], grid["x"] + grid["w"], grid["y"] + grid["h"]))
    for index, (title, x1, y1, x2, y2) in enumerate(boxes):
        for other, ox1, oy1, ox2, oy2 in boxes[index + 1 :]:
            assert x2 <= ox1 or ox2 <= x1 or y2 <= oy1 or oy2 <= y1, f"{title!r} overlaps {other!r}"


def test_each_recording_rule_has_a_panel_with_its_unit_and_grouping() -> None:
    for rule in (*TOOL_RULES, *AGENT_RULES):
        panels = _panels_querying(rule)
        assert panels, f"no panel shows {rule}"
        for panel in panels:
            assert panel["type"] == "timeseries", rule
            assert panel["fieldConfig"]["defaults"]["unit"] == RULE_UNITS[rule], f"{rule}: unit"
            for target in panel["targets"]:
                expr, legend = target["expr"], target.get("legendFormat", "")
                assert 'agent=~"$agent"' in expr and 'agent_version=~"$agent_version"' in expr, expr
                assert "{{agent_version}}" in legend, f"{rule}: legend {legend!r}"
                if rule in TOOL_RULES:
                    assert 'tool=~"$tool"' in expr, expr
                    assert "{{tool}}" in legend, f"{rule}: legend {legend!r}"


def test_dashboard_rules_are_recorded_with_the_labels_the_panels_show() -> None:
    recorded = _recording_rules()
    assert recorded, f"no recording rules in {RULES_DIR}"
    for rule in (*TOOL_RULES, *AGENT_RULES):
        assert rule in recorded, f"{rule} is not a recording rule in {RULES_DIR}"
        grouping = re.search(r"\bby\s*\(([^)]*)\)", recorded[rule])
        assert grouping, f"{rule} keeps no labels"
        labels = {label.strip() for label in grouping.group(1).split(",")} - {"le"}
        for panel in _panels_querying(rule):
            for target in panel["targets"]:
                shown = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
                assert shown <= labels, f"{rule} has no {sorted(shown - labels)} label (it keeps {sorted(labels)})"


def test_operations_row() -> None:
    exprs = [target["expr"] for panel in _query_panels() for target in panel["targets"]]
    for pattern in OPERATIONS_QUERIES:
        assert any(pattern.search(expr) for expr in exprs), f"no panel queries {pattern.pattern}"
    assert any(panel["type"] == "alertlist" for panel in _panels()), "no alert list panel"
    jobs = {job["job_name"] for job in _yaml(PROMETHEUS_FILE)["scrape_configs"]}
    for expr in exprs:
        for job in re.findall(r'job\s*=\s*"([^"]+)"', expr):
            assert job in jobs, f"{expr}: no scrape job {job}"


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    rules = []
    for panel in _query_panels():
        for target in panel["targets"]:
            expr = re.sub(r"\$\{?(\w+)\}?", ".*", target["expr"])  # template variables as "All" expands them
            rules.append({"record": f"dashboard:panel_{panel['id']}_{target['refId']}", "expr": expr})
    rule_file = tmp_path / "dashboard-queries.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _run(_tool("promtool"), "check", "rules", str(rule_file))
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_the_app_with_the_scrape_token_the_app_is_given() -> None:
    """In production /metrics answers only a scrape with METRICS_SCRAPE_TOKEN: compose must hand the same value to
    the app (environment) and to Prometheus (a secret file its agent jobs read)."""
    compose = _yaml(COMPOSE_FILE)
    secret_path = "/run/secrets/metrics_scrape_token"
    assert compose["secrets"]["metrics_scrape_token"] == {"environment": "METRICS_SCRAPE_TOKEN"}
    assert "metrics_scrape_token" in compose["services"]["prometheus"]["secrets"]
    for name in ("web", *_workers()):
        assert "METRICS_SCRAPE_TOKEN" in _services()[name]["environment"], name
    jobs = {job["job_name"]: job for job in _yaml(PROMETHEUS_FILE)["scrape_configs"]}
    for job in ("agent-web", "agent-workers"):
        assert jobs[job]["authorization"] == {"type": "Bearer", "credentials_file": secret_path}, job
