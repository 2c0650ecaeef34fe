"""What every benchmark does first: its own PostgreSQL database, created afresh, migrated, with Django set up."""

from __future__ import annotations

import os


def bench_django(database: str) -> None:
    """Point Django at `database` (unless DATABASE_URL says otherwise), drop and create it, and migrate it."""
    url = os.environ.setdefault("DATABASE_URL", f"postgres://root@127.0.0.1:5432/{database}")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.test_settings")
    _fresh_database(url)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", "--no-input", verbosity=0)


def _fresh_database(url: str) -> None:
    """A fresh database for every run, so the figures never depend on what an earlier run left."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    server = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
