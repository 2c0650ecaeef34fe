"""The two groups people work in: operators work the manual queue, platform engineers edit what agents run with.
Neither is a superuser; a queue lead also gets `assign_task` and `override_claim`, one by one."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEW_TASKS = [
    ("orchestration", "view_task"),
    ("orchestration", "view_step"),
    ("orchestration", "view_tasktransition"),
    ("orchestration", "view_recoverydecision"),
    ("orchestration", "view_approval"),
    ("orchestration", "view_operatoraction"),
    ("orchestration", "view_taskspan"),
]
VIEW_CONFIGURATION = [
    ("tools", "view_toolcontract"),
    ("tools", "view_toolcontractversion"),
    ("agent_runtime", "view_agentconfig"),
    ("agent_runtime", "view_agentversion"),
    ("agent_runtime", "view_modelprice"),
]
GROUPS = {
    "operators": [
        *VIEW_TASKS,
        *VIEW_CONFIGURATION,
        ("orchestration", "view_queuetask"),
        ("orchestration", "work_queue"),
        ("orchestration", "decide_approval"),
    ],
    "platform engineers": [
        *VIEW_TASKS,
        *VIEW_CONFIGURATION,
        ("tools", "add_toolcontract"),
        ("tools", "change_toolcontract"),
        ("agent_runtime", "add_agentconfig"),
        ("agent_runtime", "change_agentconfig"),
        ("agent_runtime", "add_modelprice"),
        ("agent_runtime", "change_modelprice"),
    ],
}


def create_groups(apps, schema_editor):
    # Permissions are normally created after all migrations ran; these groups need them now.
    for app_config in apps.get_app_configs():
        previous = getattr(app_config, "models_module", None)
        app_config.models_module = True  # create_permissions skips an app whose models_module is None
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = previous
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, wanted in GROUPS.items():
        group, _ = Group.objects.get_or_create(name=name)
        for app_label, codename in wanted:
            group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=list(GROUPS)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("orchestration", "0007_manual_queue_proxy"),
        ("tools", "0001_initial"),
        ("agent_runtime", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_groups, remove_groups)]
