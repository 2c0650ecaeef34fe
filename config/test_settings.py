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

from config.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
