from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("orchestration", "0006_manual_queue_claims_and_audit"),
    ]

    operations = [
        migrations.CreateModel(
            name='QueueTask',
            fields=[
            ],
            options={
                'verbose_name': 'task in the manual queue',
                'verbose_name_plural': 'manual queue',
                'proxy': True,
                'indexes': [],
                'constraints': [],
            },
            bases=('orchestration.task',),
        ),
    ]
