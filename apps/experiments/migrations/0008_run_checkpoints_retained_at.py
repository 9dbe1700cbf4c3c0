from django.db import migrations, models
from django.db.models import F

FINISHED = ("succeeded", "failed", "cancelled")


def mark_ended_runs(apps, schema_editor):
    """Runs that ended before this field existed were trimmed when they ended (or
    their store refused once): count them as trimmed, so the watchdog does not
    re-measure every team's storage for the whole history at once."""
    Run = apps.get_model("experiments", "Run")
    Run.objects.filter(status__in=FINISHED, finished_at__isnull=False).update(
        checkpoints_retained_at=F("finished_at")
    )


class Migration(migrations.Migration):
    dependencies = [
        ("experiments", "0007_metric_store"),
    ]

    operations = [
        migrations.AddField(
            model_name="run",
            name="checkpoints_retained_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(mark_ended_runs, migrations.RunPython.noop),
    ]
