# The two commands a newcomer needs: `make run` (embedded demo) and `make test` (PostgreSQL + Redis suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
WORKER_METRICS_PORT ?= 9808

.PHONY: install browser monitoring-tools run test fuzz soak bench bench-env bench-console bench-memory lint format admin-password clean

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (set PYTHON=python3.12, say)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $@

install: $(VENV)/.installed

# Debian's Chromium for tests/browser: Playwright drives it by path, so nothing runs `playwright install`.
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	@[ "$$(id -u)" = 0 ] || { echo "$(CHROMIUM) is missing; installing Debian's chromium needs root: run 'sudo make browser'" >&2; exit 1; }
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

browser: $(CHROMIUM)

# Debian's Prometheus tools for tests/monitoring: promtool (`check rules`, `test rules`) and amtool, from the
# `prometheus` and `prometheus-alertmanager` packages. Installing them must not leave daemons running: a
# policy-rc.d that forbids starting services is put in place for the install (only if none exists, and removed
# afterwards); then the two daemons are stopped anyway (and, on a systemd host, their units disabled).
PROMTOOL := /usr/bin/promtool
AMTOOL := /usr/bin/amtool
POLICY_RC := /usr/sbin/policy-rc.d

$(PROMTOOL) $(AMTOOL) &:
	@[ "$$(id -u)" = 0 ] || { echo "$(PROMTOOL) or $(AMTOOL) is missing; installing Debian's prometheus and prometheus-alertmanager needs root: run 'sudo make monitoring-tools'" >&2; exit 1; }
	@set -e; created=; \
	if [ ! -e $(POLICY_RC) ]; then printf '#!/bin/sh\nexit 101\n' > $(POLICY_RC); chmod 755 $(POLICY_RC); created=1; fi; \
	trap '[ -z "$$created" ] || rm -f $(POLICY_RC)' EXIT; \
	apt-get update -qq; \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager
	@if [ -d /run/systemd/system ]; then systemctl disable --now prometheus.service prometheus-alertmanager.service || true; \
	else for daemon in prometheus prometheus-alertmanager; do [ ! -x /etc/init.d/$$daemon ] || /etc/init.d/$$daemon stop >/dev/null 2>&1 || true; done; fi

monitoring-tools: $(PROMTOOL) $(AMTOOL)

run: install
	PORT=$(PORT) WORKER_METRICS_PORT=$(WORKER_METRICS_PORT) $(BIN)/python scripts/run_embedded.py

test: install bench-env lint browser monitoring-tools
	$(BIN)/pytest

# Schemathesis against the OpenAPI schema, FUZZ_EXAMPLES examples per operation and phase (make test runs 10);
# prints its counts at the end.
FUZZ_EXAMPLES ?= 300
fuzz: install
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -p no:cacheprovider -q tests/api/test_fuzz.py

# The fault-injection suite, SCALE times larger (more tasks, more kills); prints its figures at the end.
SCALE ?= 5
soak: install
	FAULT_SUITE_SCALE=$(SCALE) $(BIN)/pytest tests/faults -q

# LangGraph and its PostgreSQL checkpointer, for the side-by-side benchmark: an environment of its own, so that
# nothing of it reaches the project's dependencies.
BENCH_VENV := .bench-venv

$(BENCH_VENV)/.installed: scripts/bench_langgraph_requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/pip install --quiet -r scripts/bench_langgraph_requirements.txt
	@touch $@

bench-env: $(BENCH_VENV)/.installed

# Every benchmark (or ONLY=orchestration,langgraph,submission,memory,admin), each on a fresh database of its own:
# one JSON document with the machine, then a table. Printed, not asserted. BENCH_FULL=1: memory and admin at full
# size.
bench: install bench-env
	ONLY=$(ONLY) $(BIN)/python scripts/bench.py

# The operator console on a big table (100,000 tasks, a 200-step task): p50/p95 per page, printed, not asserted.
bench-console: install
	$(BIN)/python scripts/bench_console.py

# A 200-turn session with memory and with naive full history: tokens and stored bytes per turn, the late turn's
# facts present; printed, not asserted.
bench-memory: install
	$(BIN)/python scripts/bench_memory.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

ACCOUNT ?= admin
admin-password: install
	DEBUG=true $(BIN)/python manage.py changepassword $(ACCOUNT)

clean:
	rm -rf var/
