"""Canary rollouts are the platform engineers' to start, change, promote and roll back (and they may force a
version to test it); operators see them."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

SEE = [("agent_runtime", "view_rollout"), ("agent_runtime", "view_rolloutevent")]
GRANTS = {
    "operators": SEE,
    "platform engineers": [
        *SEE,
        ("agent_runtime", "add_rollout"),
        ("agent_runtime", "change_rollout"),
        ("agent_runtime", "force_agent_version"),
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
        ("orchestration", "0013_task_rollout_assignment"),
        ("agent_runtime", "0005_canary_rollouts"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
