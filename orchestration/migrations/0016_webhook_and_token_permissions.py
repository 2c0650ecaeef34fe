"""Webhooks and API tokens: operators see endpoints and deliveries and may redeliver; platform engineers also
change endpoints (disable, enable, rotate their secrets) and issue, rotate and revoke API tokens."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

SEE = [
    ("orchestration", "view_webhookendpoint"),
    ("orchestration", "view_webhookdelivery"),
    ("orchestration", "redeliver_webhook"),
]
GRANTS = {
    "operators": SEE,
    "platform engineers": [
        *SEE,
        ("orchestration", "change_webhookendpoint"),
        ("access", "view_apitoken"),
        ("access", "add_apitoken"),
        ("access", "change_apitoken"),
    ],
}


def grant(apps, schema_editor):
    # Permissions are normally created after all migrations ran; these grants need them now.
    for app_config in apps.get_app_configs():
        previous = getattr(app_config, "models_module", None)
        app_config.models_module = True  # create_permissions skips an app whose models_module is None
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = previous
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, wanted in GRANTS.items():
        group, _ = Group.objects.get_or_create(name=name)
        for app_label, codename in wanted:
            group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, wanted in GRANTS.items():
        for group in Group.objects.filter(name=name):
            for app_label, codename in wanted:
                group.permissions.remove(*Permission.objects.filter(content_type__app_label=app_label, codename=codename))


class Migration(migrations.Migration):
    dependencies = [
        ("orchestration", "0015_webhooks"),
        ("orchestration", "0014_rollout_permissions"),
        ("access", "0002_import_drf_tokens"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
