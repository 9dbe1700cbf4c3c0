from django.db import migrations, models


def asha_sweeps_stop_early(apps, schema_editor):
    """ASHA sweeps stopped poor runs early before the flag existed."""
    apps.get_model("experiments", "Sweep").objects.filter(strategy="asha").update(early_stop=True)


class Migration(migrations.Migration):
    dependencies = [
        ("experiments", "0012_sweep_strategy_bayes"),
    ]

    operations = [
        migrations.AddField(
            model_name="sweep",
            name="early_stop",
            field=models.BooleanField(default=False),
        ),
        migrations.RunPython(asha_sweeps_stop_early, migrations.RunPython.noop),
    ]
