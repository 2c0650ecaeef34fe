"""The task list at 100,000 tasks: its order and its search served by indexes (scripts/bench_console.py)."""

import django.db.models.functions.comparison
import django.db.models.functions.text
from django.db import migrations, models

# icontains on PostgreSQL is UPPER(goal) LIKE UPPER('%term%'): a trigram index on that expression serves it. SQLite
# (the development default) has neither pg_trgm nor GIN, and scans its small tables.
GOAL_TRIGRAM_INDEX = "CREATE INDEX task_search_goal_idx ON orchestration_task USING gin (UPPER(goal) gin_trgm_ops)"


def _on_postgresql(*statements):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            for statement in statements:
                schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("orchestration", "0011_memory_steps"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="task",
            index=models.Index(fields=["created_at", "id"], name="task_created_idx"),
        ),
        migrations.AddIndex(
            model_name="task",
            index=models.Index(
                django.db.models.functions.text.Upper(
                    django.db.models.functions.comparison.Cast("id", models.TextField())
                ),
                name="task_search_id_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="task",
            index=models.Index(django.db.models.functions.text.Upper("trace_id"), name="task_search_trace_idx"),
        ),
        migrations.AddIndex(
            model_name="task",
            index=models.Index(django.db.models.functions.text.Upper("idempotency_key"), name="task_search_key_idx"),
        ),
        migrations.RunPython(
            _on_postgresql("CREATE EXTENSION IF NOT EXISTS pg_trgm", GOAL_TRIGRAM_INDEX),
            _on_postgresql("DROP INDEX IF EXISTS task_search_goal_idx"),
        ),
    ]
