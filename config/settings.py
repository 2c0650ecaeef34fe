"""Django settings. Every value that differs between machines is read from the environment here, once.

Two modes share this file:
- embedded (the default, for a laptop): SQLite under var/, Celery over a filesystem broker, the offline model;
- production: DATABASE_URL=postgres://..., REDIS_URL=redis://..., SECRET_KEY set, DEBUG unset.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import dj_database_url
import django_stubs_ext
import limits
from cryptography.fernet import Fernet

from config.env import (
    ConfigError,
    env_bool,
    env_decimal,
    env_float,
    env_int,
    env_list,
    env_str,
    env_url,
)
from faults.plan import FaultPlanInvalid, parse_plan
from lib.metrics_access import networks_invalid


def _redaction_patterns(raw: str) -> dict[str, str]:
    if not raw.strip():
        return {}
    try:
        patterns = json.loads(raw)
        if not isinstance(patterns, dict) or not all(isinstance(v, str) for v in patterns.values()):
            raise ValueError("not an object of name -> regular expression")
        for name, pattern in patterns.items():
            if not re.fullmatch(r"[a-z][a-z0-9_-]{0,30}", name):
                raise ValueError(f"name {name!r}: lower-case letters, digits, _ and -")
            re.compile(pattern)
    except (ValueError, re.error) as exc:
        raise ConfigError(f"REDACTION_PATTERNS must be a JSON object of name -> regular expression: {exc}") from None
    return patterns


# Lets admin, serializer and view classes be subscripted (ModelAdmin[Task]) for the type checker.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
# Local state of this machine: the embedded SQLite file and broker folders, beat's schedule, logs.
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))
try:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
except OSError as exc:
    raise ConfigError(f"VAR_DIR {VAR_DIR} cannot be created: {exc.strerror}") from None

DEBUG = env_bool("DEBUG", False)
_INSECURE_DEV_KEY = "django-insecure-embedded-mode-only-never-in-production"
SECRET_KEY = env_str("SECRET_KEY", _INSECURE_DEV_KEY if DEBUG else None)
if not DEBUG and SECRET_KEY == _INSECURE_DEV_KEY:
    raise ConfigError("SECRET_KEY must be set to a secret value when DEBUG is off")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "access",
    "orchestration",
    "agent_runtime",
    "tools",
    "memory",
    "shop",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "orchestration.tracing.TraceContextMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last of the auth-related ones, as django-axes asks: it turns a locked-out login into its lockout response.
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def _database(url: str) -> dict[str, object]:
    config: dict[str, object] = dict(dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True))
    engine = str(config["ENGINE"])
    if engine.endswith("sqlite3"):
        Path(str(config["NAME"])).parent.mkdir(parents=True, exist_ok=True)
        # Web, worker and beat write one file at once: WAL lets readers run beside a writer, IMMEDIATE
        # takes the write lock at BEGIN so two writers queue instead of failing with "database is locked".
        config["OPTIONS"] = {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        }
        config["CONN_MAX_AGE"] = 0
    elif engine.endswith("postgresql"):
        config["ENGINE"] = "django_prometheus.db.backends.postgresql"
        options: dict[str, object] = dict(config.get("OPTIONS") or {})  # type: ignore[call-overload]
        if DATABASE_POOL_MAX_SIZE:
            config["CONN_MAX_AGE"] = 0  # Django refuses persistent connections beside its pool
            options["pool"] = {"min_size": 1, "max_size": DATABASE_POOL_MAX_SIZE, "timeout": DATABASE_POOL_TIMEOUT}
        config["OPTIONS"] = options
    return config


# Django's psycopg connection pool, per process (0: none, a connection per thread). For workers run with Celery's
# threads pool: a run borrows a connection for one journal transaction at a time and holds none while its model
# thinks (lib.db.connection_release), so a process of 100 threads needs a handful. Not for prefork workers (Celery
# closes a prefork child's pool after every task) nor for gunicorn's sync workers (a connection each already).
DATABASE_POOL_MAX_SIZE = env_int("DATABASE_POOL_MAX_SIZE", 0, minimum=0, maximum=1000)
DATABASE_POOL_TIMEOUT = env_float("DATABASE_POOL_TIMEOUT_SECONDS", 10.0, minimum=0.1)


DATABASE_URL = env_url(
    "DATABASE_URL",
    f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
    schemes={"sqlite", "postgres", "postgresql", "pgsql"},
)
DATABASES = {"default": _database(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Only needed to export assets to a CDN or proxy (collectstatic); gunicorn serves them without it.
STATIC_ROOT = env_str("STATIC_ROOT", "") or None
# gunicorn serves admin and API-docs assets itself, straight from the installed apps: no collectstatic step.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# --- Security (all on unless DEBUG; each can be relaxed behind a TLS-terminating proxy) -----------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
# Probes from the orchestrator speak plain HTTP inside the cluster.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
# Admin sessions end after this long, and when the browser closes.
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE_SECONDS", 8 * 3600, minimum=300)
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
# Content security policy (django-csp) on every page: scripts only from this site (the console's script is a
# static file), no plugins, no framing, forms post only here. Inline styles are allowed: Django's admin templates
# set style attributes, and a style cannot run code.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}
# Metrics (lib/metrics_access.py): /metrics and the workers' metrics ports answer a scrape that brings
# `Authorization: Bearer <METRICS_SCRAPE_TOKEN>`, or comes from one of METRICS_ALLOWED_NETWORKS (comma-separated
# CIDRs). In production neither is set by default, so nobody may scrape until one is; make run (DEBUG) opens
# loopback.
METRICS_SCRAPE_TOKEN = env_str("METRICS_SCRAPE_TOKEN", "")
METRICS_ALLOWED_NETWORKS = env_list("METRICS_ALLOWED_NETWORKS", ["127.0.0.0/8", "::1/128"] if DEBUG else [])
if _problem := networks_invalid(METRICS_ALLOWED_NETWORKS):
    raise ConfigError(f"METRICS_ALLOWED_NETWORKS must be comma-separated networks like 10.0.0.0/8: {_problem}")
# Admin logins (django-axes): after this many failures for one username from one address, that pair is locked out
# for the cool-off; a successful login resets the count. Attempts are kept in the database and shown in the admin.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("ADMIN_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = env_float("ADMIN_LOGIN_COOLOFF_HOURS", 0.25, minimum=0.01)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False

# --- REST API ---------------------------------------------------------------------------------------
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 256 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES
# JSON bodies nested deeper than this are refused with a 400 (no real submission comes close).
API_MAX_JSON_DEPTH = env_int("API_MAX_JSON_DEPTH", 32, minimum=2, maximum=500)
# Requests per token (access/throttling.py), unless the token sets its own rate; counted in Redis (in the embedded
# mode's one web process, in memory).
API_THROTTLE_RATE = env_str("API_THROTTLE_RATE", "600/minute")
try:
    limits.parse(API_THROTTLE_RATE)
except ValueError:
    raise ConfigError(f"API_THROTTLE_RATE must look like 600/minute or 10/second, got {API_THROTTLE_RATE!r}") from None
# A rotated token's old key keeps working this long, so its client can switch without an outage.
API_TOKEN_ROTATION_OVERLAP_SECONDS = env_int("API_TOKEN_ROTATION_OVERLAP_SECONDS", 86400, minimum=0)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "access.authentication.ScopedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "access.permissions.HasRequiredScope",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["access.throttling.TokenRateThrottle"],
    "DEFAULT_PARSER_CLASSES": ["orchestration.api.parsers.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "orchestration.api.pagination.StrictPageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "access.openapi.ScopedAutoSchema",
    "EXCEPTION_HANDLER": "orchestration.api.errors.structured_exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Agent operations platform API",
    "DESCRIPTION": "Submit agent tasks, follow their steps, cancel them.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI from the installed sidecar package, not a CDN: the docs work offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "TaskStateEnum": "orchestration.models.TaskState",
        "StepStateEnum": "orchestration.models.StepState",
        "RecoveryEventEnum": "orchestration.models.RecoveryEvent",
        "RecoveryActionEnum": "tools.errors.RecoveryAction",
        "WebhookEventEnum": "orchestration.models.WebhookEvent",
    },
}

# --- Celery -----------------------------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "")
if REDIS_URL:
    env_url("REDIS_URL", None, schemes={"redis", "rediss"})
CELERY_BROKER_URL = REDIS_URL or "filesystem://"
API_THROTTLE_STORAGE_URI = REDIS_URL or "memory://"
_BROKER_DIR = VAR_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem"):
    # The embedded broker: messages are files, shared by every process on this machine.
    for _folder in ("queue", "control"):
        (_BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "data_folder_in": str(_BROKER_DIR / "queue"),
        "data_folder_out": str(_BROKER_DIR / "queue"),
        "control_folder": str(_BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    # Due times live in PostgreSQL, never in broker countdowns, so a short visibility timeout is safe
    # and a message lost with a dead worker comes back soon.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=60),
    }
# Celery's Django fixup closes the database connection before and after every task unless this is set, which costs
# a new PostgreSQL backend per task. Set, a worker keeps its connection the way gunicorn does (CONN_MAX_AGE, health
# checks: config.celery runs Django's close_old_connections around each task); the fixup still recycles it after
# this many tasks.
CELERY_DB_REUSE_MAX = 1000
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 300, minimum=1)
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 30
CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT = 10.0
# A step running when the broker connection drops finishes and records its result in PostgreSQL; its lost ack only
# means a redelivery, which finds the task done or leased. Cancelling it would waste the step.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5}
CELERY_BEAT_SCHEDULE_FILENAME = env_str("CELERY_BEAT_SCHEDULE_FILENAME", str(VAR_DIR / "celerybeat-schedule"))

# --- Orchestration ----------------------------------------------------------------------------------
SWEEP_INTERVAL_SECONDS = env_float("SWEEP_INTERVAL_SECONDS", 5.0, minimum=0.5)
# A due task whose message was sent this long ago and has not started is assumed lost and sent again.
SWEEP_REQUEUE_AFTER_SECONDS = env_float("SWEEP_REQUEUE_AFTER_SECONDS", 30.0, minimum=0.0)
# How long a worker owns a task between steps (replaying its journal, deciding) before it may be taken back.
STEP_LEASE_SECONDS = env_float("STEP_LEASE_SECONDS", 60.0, minimum=1.0)
# During a step the lease runs to the step's deadline (its tool's timeout, or the model-call timeout) plus this:
# past it, the step counts as lost (its worker died or hung) and runs again under the same key.
STEP_DEADLINE_GRACE_SECONDS = env_float("STEP_DEADLINE_GRACE_SECONDS", 10.0, minimum=1.0)
# The model of the `default` agent when it is first installed; afterwards agents are edited in the admin.
AGENT_MODEL = env_str("AGENT_MODEL", "offline")
OPENAI_API_KEY = env_str("OPENAI_API_KEY", "")
OPENAI_BASE_URL = env_str("OPENAI_BASE_URL", "")
if OPENAI_BASE_URL:
    env_url("OPENAI_BASE_URL", None, schemes={"http", "https"})
# The agent SDK's traces go to OpenAI only with a key and this on (spans are kept with each task regardless).
OPENAI_TRACE_EXPORT = env_bool("OPENAI_TRACE_EXPORT", bool(OPENAI_API_KEY))
# "responses" (OpenAI's Responses API) or "chat_completions" (vLLM, Ollama, llama.cpp servers).
OPENAI_API_STYLE = env_str("OPENAI_API_STYLE", "responses")
if OPENAI_API_STYLE not in {"responses", "chat_completions"}:
    raise ConfigError(f"OPENAI_API_STYLE must be responses or chat_completions, got {OPENAI_API_STYLE!r}")
MODEL_CALL_TIMEOUT_SECONDS = env_float("MODEL_CALL_TIMEOUT_SECONDS", 60.0, minimum=1.0)
# Who writes the session summary's facts with a real model: the agent's model ("model": one small request per
# turn, a durable step with its tokens counted) or the deterministic extractive summarizer ("extractive", free).
# The offline model always uses the extractive one.
MEMORY_SUMMARIZER = env_str("MEMORY_SUMMARIZER", "model").lower()
if MEMORY_SUMMARIZER not in {"model", "extractive"}:
    raise ConfigError(f"MEMORY_SUMMARIZER must be model or extractive, got {MEMORY_SUMMARIZER!r}")
# What one task may spend, unless its agent version or its submission says otherwise (0: no limit). Before each
# model request the request's worst case is reserved: its input, counted, plus its maximum output (the agent's
# max_tokens setting, else MODEL_OUTPUT_RESERVE_TOKENS); a request that could cross a budget is not made.
TASK_TOKEN_BUDGET = env_int("TASK_TOKEN_BUDGET", 200_000, minimum=0, maximum=10**12)
TASK_COST_BUDGET_USD = env_decimal(
    "TASK_COST_BUDGET_USD", Decimal("5"), minimum=Decimal("0"), maximum=Decimal("99999999.9999"), places=4
)
MODEL_OUTPUT_RESERVE_TOKENS = env_int("MODEL_OUTPUT_RESERVE_TOKENS", 4096, minimum=1)
# Redaction (lib/redaction.py): the region whose national phone numbers are recognised without a +country
# prefix, and extra patterns to redact, as a JSON object of name -> regular expression.
REDACTION_PHONE_REGION = env_str("REDACTION_PHONE_REGION", "US").upper()
REDACTION_PATTERNS = _redaction_patterns(env_str("REDACTION_PATTERNS", ""))
# The vault behind redaction tokens is encrypted with this Fernet key (derived from SECRET_KEY when unset).
REDACTION_VAULT_KEY = env_str("REDACTION_VAULT_KEY", "")
if REDACTION_VAULT_KEY:
    try:
        Fernet(REDACTION_VAULT_KEY.encode())
    except ValueError:
        raise ConfigError("REDACTION_VAULT_KEY must be a Fernet key (32 url-safe base64-encoded bytes)") from None
# JSON fault plan for tests and drills (see faults/plan.py); empty in production.
FAULT_PLAN = env_str("FAULT_PLAN", "")
try:
    parse_plan(FAULT_PLAN)
except FaultPlanInvalid as exc:
    raise ConfigError(f"FAULT_PLAN is invalid: {exc}") from None

# --- Logging: one JSON object per line, with the task's trace id --------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {LOG_LEVEL!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"trace": {"()": "orchestration.tracing.TraceContextFilter"}},
    "formatters": {"json": {"()": "orchestration.tracing.JsonFormatter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["trace"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "celery": {"level": LOG_LEVEL},
    },
}

CELERY_BEAT_SCHEDULE = {
    "sweep-due-tasks": {
        "task": "orchestration.tasks.sweep_due_tasks",
        "schedule": SWEEP_INTERVAL_SECONDS,
        "options": {"expires": SWEEP_INTERVAL_SECONDS * 2},
    },
}
# Canary rollouts with automatic rollback on are judged this often (orchestration/services/rollouts.py).
ROLLOUT_EVALUATE_SECONDS = env_float("ROLLOUT_EVALUATE_SECONDS", 15.0, minimum=1.0)
CELERY_BEAT_SCHEDULE["evaluate-rollouts"] = {
    "task": "orchestration.tasks.evaluate_rollouts",
    "schedule": ROLLOUT_EVALUATE_SECONDS,
    "options": {"expires": ROLLOUT_EVALUATE_SECONDS * 2},
}

# Retention (orchestration/services/retention.py): finished tasks older than this many days may be archived and
# deleted, by `manage.py tasks_prune` or, with an interval set, by beat (0 days: keep everything). Periodic runs
# archive into TASK_RETENTION_ARCHIVE_DIR when it is set, and only delete otherwise.
TASK_RETENTION_DAYS = env_int("TASK_RETENTION_DAYS", 30, minimum=0)
TASK_RETENTION_INTERVAL_SECONDS = env_int("TASK_RETENTION_INTERVAL_SECONDS", 0, minimum=0)
TASK_RETENTION_ARCHIVE_DIR = env_str("TASK_RETENTION_ARCHIVE_DIR", "")
TASK_RETENTION_BATCH_SIZE = env_int("TASK_RETENTION_BATCH_SIZE", 500, minimum=1, maximum=10_000)
# Between batches, so writers have the database to themselves for a moment.
TASK_RETENTION_PAUSE_SECONDS = env_float("TASK_RETENTION_PAUSE_SECONDS", 0.1, minimum=0.0)
if TASK_RETENTION_DAYS and TASK_RETENTION_INTERVAL_SECONDS:
    CELERY_BEAT_SCHEDULE["prune-finished-tasks"] = {
        "task": "orchestration.tasks.prune_finished_tasks",
        "schedule": TASK_RETENTION_INTERVAL_SECONDS,
        "options": {"expires": TASK_RETENTION_INTERVAL_SECONDS},
    }

# How often one task may hand a failed call back to the model before a human takes over.
AGENT_REPLAN_CAP = env_int("AGENT_REPLAN_CAP", 3, minimum=0)
# Tool retries follow each tool's contract; model requests follow these.
MODEL_RETRY_MAX = env_int("MODEL_RETRY_MAX", 3, minimum=0)
MODEL_RETRY_BASE_SECONDS = env_float("MODEL_RETRY_BASE_SECONDS", 1.0, minimum=0.0)
MODEL_RETRY_CAP_SECONDS = env_float("MODEL_RETRY_CAP_SECONDS", 30.0, minimum=0.0)
RETRY_JITTER = 0.2
# A run whose database connection or transaction fails resumes from its journal after a backoff; this many
# failures in a row (an error that repeats on every run) send the task to a human.
DATABASE_FAILURES_BEFORE_HANDOFF = env_int("DATABASE_FAILURES_BEFORE_HANDOFF", 5, minimum=1)
DATABASE_RETRY_BASE_SECONDS = env_float("DATABASE_RETRY_BASE_SECONDS", 1.0, minimum=0.0)
DATABASE_RETRY_CAP_SECONDS = env_float("DATABASE_RETRY_CAP_SECONDS", 30.0, minimum=0.0)

# The manual queue: an operator's claim on a task lapses after this long; a task waiting longer than the SLA is
# shown as overdue.
OPERATOR_CLAIM_SECONDS = env_int("OPERATOR_CLAIM_SECONDS", 1800, minimum=60)
MANUAL_REVIEW_SLA_SECONDS = env_int("MANUAL_REVIEW_SLA_SECONDS", 3600, minimum=60)

# The demo refund tool's default approval rule: refunds above this many cents wait for a human.
REFUND_APPROVAL_ABOVE_CENTS = env_int("REFUND_APPROVAL_ABOVE_CENTS", 50_000, minimum=0)

# OpenTelemetry traces (lib/otel.py): off unless the standard OTEL_* variables ask for them (the SDK reads the rest
# of them itself). Read here, so a value this deployment cannot honour stops start-up with one clear line.
from lib.otel import TracingMisconfigured, exporters_wanted  # noqa: E402  (kept with the one setting it serves)

try:
    TRACING_EXPORTERS = exporters_wanted()
except TracingMisconfigured as exc:
    raise ConfigError(str(exc)) from None

# --- Webhooks (orchestration/services/webhooks.py) ----------------------------------------------------------
# A task's terminal state, or its entry into MANUAL_REVIEW, is written to an outbox in the same transaction and
# POSTed to its owner's endpoints per Standard Webhooks. A failed delivery is tried again after each of these
# delays in turn (seconds); when they run out the delivery has failed, and its endpoint is disabled with the reason.
try:
    WEBHOOK_RETRY_SCHEDULE_SECONDS = [
        int(delay)
        for delay in env_list("WEBHOOK_RETRY_SCHEDULE_SECONDS", ["5", "300", "1800", "7200", "18000", "36000"])
    ]
except ValueError:
    raise ConfigError("WEBHOOK_RETRY_SCHEDULE_SECONDS must be a comma-separated list of whole seconds") from None
if not WEBHOOK_RETRY_SCHEDULE_SECONDS or min(WEBHOOK_RETRY_SCHEDULE_SECONDS) < 1:
    raise ConfigError("WEBHOOK_RETRY_SCHEDULE_SECONDS needs at least one delay, each of 1 second or more")
WEBHOOK_TIMEOUT_SECONDS = env_float("WEBHOOK_TIMEOUT_SECONDS", 10.0, minimum=0.5)
# After a secret is rotated the old one keeps signing (a second signature) this long, so receivers can switch.
WEBHOOK_SECRET_OVERLAP_SECONDS = env_int("WEBHOOK_SECRET_OVERLAP_SECONDS", 86400, minimum=0)
# Endpoints may point at loopback and private addresses only when this is on (make run's demo receiver); in
# production they are refused, so a client cannot make the platform call into its own network.
WEBHOOK_ALLOW_PRIVATE_ADDRESSES = env_bool("WEBHOOK_ALLOW_PRIVATE_ADDRESSES", DEBUG)
WEBHOOK_DELIVER_INTERVAL_SECONDS = env_float("WEBHOOK_DELIVER_INTERVAL_SECONDS", 5.0, minimum=0.5)
CELERY_BEAT_SCHEDULE["deliver-webhooks"] = {
    "task": "orchestration.tasks.deliver_due_webhooks",
    "schedule": WEBHOOK_DELIVER_INTERVAL_SECONDS,
    "options": {"expires": WEBHOOK_DELIVER_INTERVAL_SECONDS * 2},
}
