"""`make run`: the whole platform on one laptop, no server needed.

Migrates a SQLite database under var/, seeds the demo, starts the web app, a Celery worker and Celery beat
over a filesystem broker with the offline model, prints how to log in and call the API, follows the demo
tasks until they settle, and stops every process it started on Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a file (make run): its sibling modules import as scripts.*

from scripts.demo_security import security_checks  # noqa: E402
from scripts.webhook_receiver import start_receiver  # noqa: E402

PYTHON = sys.executable
PORT = os.environ.get("PORT", "8000")
BASE_URL = f"http://127.0.0.1:{PORT}"
# The worker's prefork children count in files here; its parent serves them on this port.
WORKER_METRICS_PORT = os.environ.get("WORKER_METRICS_PORT", "9808")
# The demo client's webhook endpoint: a receiver in this process that verifies every delivery and prints it.
WEBHOOK_RECEIVER_PORT = int(os.environ.get("WEBHOOK_RECEIVER_PORT", "8787"))
WORKER_METRICS_DIR = ROOT / "var" / "metrics" / "worker"


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DEBUG", "true")
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    env.setdefault("LOG_LEVEL", "WARNING")
    for name in ("DATABASE_URL", "REDIS_URL"):  # the embedded mode ignores production addresses
        env.pop(name, None)
    return env


def _worker_environment(env: dict[str, str]) -> dict[str, str]:
    return {
        **env,
        "PROMETHEUS_MULTIPROC_DIR": str(WORKER_METRICS_DIR),
        "CELERY_METRICS_PORT": WORKER_METRICS_PORT,
        "CELERY_METRICS_ADDRESS": "127.0.0.1",
    }


def _manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return done.stdout


def _start(env: dict[str, str], name: str, args: list[str], logs: Path) -> subprocess.Popen[bytes]:
    log = (logs / f"{name}.log").open("ab")
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def _wait_for_web(process: subprocess.Popen[bytes]) -> None:
    for _ in range(100):
        if process.poll() is not None:
            sys.exit(f"the web server exited early; see var/log/web.log (is port {PORT} taken? set PORT=...)")
        try:
            urllib.request.urlopen(f"{BASE_URL}/healthz", timeout=1)
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    sys.exit("the web server did not answer within 20 s; see var/log/web.log")


def _submit(token: str, key: str, body: dict[str, Any]) -> str:
    """Submit a demo task as a client would (its key makes a rerun return the same task); returns its id."""
    request = urllib.request.Request(
        f"{BASE_URL}/api/v1/tasks/",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Idempotency-Key": key},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.load(response)["id"])


def _task_state(token: str, task_id: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    request = urllib.request.Request(f"{BASE_URL}/api/v1/tasks/{task_id}/", headers=headers)
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def _canary_line(canary: dict[str, Any]) -> str:
    share = f"v{canary['canary']} on {canary['percent']} % of new tasks, v{canary['stable']} on the rest"
    state = "" if canary["state"] == "ACTIVE" else f" ({canary['state'].lower().replace('_', ' ')})"
    return f"{share}{state}: {BASE_URL}/admin/agent_runtime/rollout/{canary['id']}/change/"


def _follow_demo(token: str, task_ids: list[str], processes: list[subprocess.Popen[bytes]]) -> None:
    pending = set(task_ids)
    deadline = time.monotonic() + 120
    while pending and time.monotonic() < deadline and all(p.poll() is None for p in processes):
        for task_id in sorted(pending):
            task = _task_state(token, task_id)
            if task["state"] in {"COMPLETED", "MANUAL_REVIEW", "TOOL_FAILED_FATAL", "CANCELLED"}:
                pending.discard(task_id)
                calls = [
                    f"{step['name']} (attempt {step['attempt']})" if step["attempt"] > 1 else step["name"]
                    for step in task["steps"]
                    if step["kind"] == "tool_call"
                ]
                version = f"v{task['agent_version']}" + (f" ({task['rollout_arm']})" if task["rollout_arm"] else "")
                print(f"  {task['state']:<13} {task['goal']}\n                version: {version}")
                print(f"                tools: {', '.join(calls)}")
                print(f"                why: {task['state_reason']}")
                if not calls and task["result"]:
                    print(f"                answer: {task['result']}")
        time.sleep(0.5)
    if pending:
        print(f"  {len(pending)} demo task(s) still running; see var/log/worker.log")


def main() -> None:
    env = _environment()
    logs = ROOT / "var" / "log"
    logs.mkdir(parents=True, exist_ok=True)
    print("Migrating the embedded SQLite database (var/db.sqlite3)...")
    _manage(env, "migrate", "--no-input", "-v0")

    celery = [PYTHON, "-m", "celery", "-A", "config"]
    processes = [
        _start(env, "web", [PYTHON, "manage.py", "runserver", f"127.0.0.1:{PORT}", "--noreload"], logs),
        _start(
            _worker_environment(env),
            "worker",
            [*celery, "worker", "--concurrency", "2", "--loglevel", "INFO"],
            logs,
        ),
        _start(env, "beat", [*celery, "beat", "--loglevel", "INFO", "-s", "var/celerybeat-schedule"], logs),
    ]

    def stop(*_: object) -> None:
        print("\nStopping web, worker and beat...")
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        sys.exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    _wait_for_web(processes[0])
    demo = json.loads(_manage(env, "demo_setup", f"--webhook-port={WEBHOOK_RECEIVER_PORT}").strip().splitlines()[-1])
    try:
        start_receiver(WEBHOOK_RECEIVER_PORT, demo["webhook_secret"])
    except OSError as exc:
        print(f"No webhook receiver: port {WEBHOOK_RECEIVER_PORT} is taken ({exc.strerror}); set WEBHOOK_RECEIVER_PORT")
    task_ids = [_submit(demo["token"], item["key"], item["body"]) for item in demo["submissions"]]

    password = demo["admin_password"] or "(set on first run; reset with: make admin-password)"
    roles = demo["role_passwords"]
    operator = roles["operator"] or "(set on first run; reset with: make admin-password ACCOUNT=operator)"
    engineer = roles["engineer"] or "(set on first run; reset with: make admin-password ACCOUNT=engineer)"
    print(
        f"""
The platform is running (embedded mode: SQLite, filesystem broker, offline model).

  Admin      {BASE_URL}/admin/   user: {demo["admin_username"]}   password: {password}
             the manual queue as an operator:       user: operator   password: {operator}
             contracts and agents as an engineer:   user: engineer   password: {engineer}
  Canary     {_canary_line(demo["canary"])}
  API docs   {BASE_URL}/api/docs/
  API token  {demo["token"]}   (scopes: submit, read, cancel, webhooks; 600 requests/minute)
  Webhooks   the demo client's outcomes go to a receiver at http://127.0.0.1:{WEBHOOK_RECEIVER_PORT}/webhooks, which
             verifies each signature and prints "webhook: verified msg_... task ... STATE" below
  Metrics    {BASE_URL}/metrics (web, and the database gauges)   http://127.0.0.1:{WORKER_METRICS_PORT}/metrics (worker)
  Logs       var/log/web.log, var/log/worker.log, var/log/beat.log

Submit a task:
  curl -s -X POST {BASE_URL}/api/v1/tasks/ \\
    -H 'Authorization: Bearer {demo["token"]}' -H 'Content-Type: application/json' \\
    -H 'Idempotency-Key: my-first-task' \\
    -d '{{"goal": "Look up order A-1002", "input": {{"order_number": "A-1002"}}}}'
Then follow it:  curl -s -H 'Authorization: Bearer {demo["token"]}' {BASE_URL}/api/v1/tasks/<id>/

Demo tasks:"""
    )
    _follow_demo(demo["token"], task_ids, processes)
    print("\nA later task of the customer-A-1001 session, answered from what the earlier ones learnt:")
    follow_ups = [_submit(demo["token"], item["key"], item["body"]) for item in demo["follow_ups"]]
    _follow_demo(demo["token"], follow_ups, processes)
    for task_id in follow_ups:
        print(f"  its memory, turn by turn: {BASE_URL}/admin/orchestration/task/{task_id}/change/#memory")
    print("\nThe API's guards, tried just now:")
    for line in security_checks(BASE_URL, client_key=demo["token"], read_only_key=demo["read_only_token"]):
        print(f"  {line}")
    print("\nPress Ctrl-C to stop.")
    while all(p.poll() is None for p in processes):
        time.sleep(1)
    print("A process exited unexpectedly; see var/log/.")
    stop()


if __name__ == "__main__":
    main()
