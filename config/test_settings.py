"""The one settings module for tests: the real PostgreSQL and Redis, addresses from the environment."""

import os

os.environ.setdefault("DATABASE_URL", "postgres://root@127.0.0.1:5432/test")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("SECRET_KEY", "test-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("SWEEP_REQUEUE_AFTER_SECONDS", "1")
os.environ.setdefault("OPENAI_TRACE_EXPORT", "false")  # tests fake keys; nothing may try to export traces
# Scripted endpoints answer the agent's requests in order; the tests of the model summarizer turn it on
# (tests/memory/test_model_summarizer.py), the rest script answers only.
os.environ.setdefault("MEMORY_SUMMARIZER", "extractive")
# Production lets no address scrape metrics by default; the tests scrape from loopback (tests/config/test_security.py
# and the live Prometheus test use production's setting, nothing but the scrape token).
os.environ.setdefault("METRICS_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")

from config.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Canary secrets: recognisable values that must never reach a model request or a log line (tests/security_canaries.py
# scans the whole suite for them). Set after the environment is read, so that no environment replaces them (an ad-hoc
# SECRET_KEY=x would otherwise leave nothing to look for); worker processes read this module too and plant the same.
# The vault key stays a Fernet key: 32 bytes, base64, that spell `canary-secret-vault-key-753885df`. Tests that reach a
# fake endpoint set their own key; this one only ever reaches the fakes' Authorization header. There is no database
# password to plant (the test cluster trusts loopback), and the tool adapters hold no credentials of their own.
SECRET_KEY = "canary-secret-django-secret-key-0b015b07b88457707d51b1b0"
REDACTION_VAULT_KEY = "Y2FuYXJ5LXNlY3JldC12YXVsdC1rZXktNzUzODg1ZGY="
OPENAI_API_KEY = "canary-secret-openai-api-key-ae80b366a97d3437"
SECRET_CANARIES = {
    "SECRET_KEY": SECRET_KEY,
    "REDACTION_VAULT_KEY": REDACTION_VAULT_KEY,
    "OPENAI_API_KEY": OPENAI_API_KEY,
}
