"""DRF's authtoken table kept keys in plain text. Each key becomes an API token stored as its SHA-256 digest (the
client keeps using the same key, now with the client scopes), and the plain-text table is dropped."""

import hashlib

from django.db import migrations

LEGACY_TABLE = "authtoken_token"
CLIENT_SCOPES = ["tasks:cancel", "tasks:read", "tasks:submit", "webhooks:manage"]


def import_legacy_tokens(apps, schema_editor):
    connection = schema_editor.connection
    if LEGACY_TABLE not in connection.introspection.table_names():
        return
    ApiToken = apps.get_model("access", "ApiToken")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT key, user_id, created FROM {LEGACY_TABLE}")
        rows = cursor.fetchall()
    for key, user_id, created in rows:
        token = ApiToken.objects.create(
            user_id=user_id,
            name="imported DRF token",
            digest=hashlib.sha256(key.encode()).hexdigest(),
            hint=key[:6],
            scopes=CLIENT_SCOPES,
        )
        ApiToken.objects.filter(pk=token.pk).update(created_at=created)
    schema_editor.execute(f"DROP TABLE {LEGACY_TABLE}")


class Migration(migrations.Migration):
    dependencies = [("access", "0001_api_tokens")]

    operations = [migrations.RunPython(import_legacy_tokens, migrations.RunPython.noop)]
