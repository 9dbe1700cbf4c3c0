"""The metric store: one row per point (``Metric``, 139 bytes a point on
PostgreSQL) becomes a series per (run, metric) and chunks of packed points
(``apps.experiments.metric_store``). Existing points move in order, run by run,
then the old table goes."""

import django.db.models.deletion
import numpy as np
from django.db import migrations, models

from apps.experiments.metric_store.codec import chunks_split


def _flush(MetricSeries, MetricChunk, run_id, name, steps, values):
    steps_a = np.asarray(steps, dtype=np.int64)
    values_a = np.asarray(values, dtype=np.float64)
    finite = values_a[np.isfinite(values_a)]
    series = MetricSeries.objects.create(
        run_id=run_id,
        name=name,
        count=len(steps),
        last_step=int(steps_a[-1]),
        last_value=float(values_a[-1]),
        low=float(finite.min()) if finite.size else None,
        high=float(finite.max()) if finite.size else None,
    )
    MetricChunk.objects.bulk_create(
        [MetricChunk(series=series, **f) for f in chunks_split(steps_a, values_a)]
    )


def points_to_chunks(apps, schema_editor):
    Metric = apps.get_model("experiments", "Metric")
    MetricSeries = apps.get_model("experiments", "MetricSeries")
    MetricChunk = apps.get_model("experiments", "MetricChunk")
    key, steps, values = None, [], []
    rows = Metric.objects.order_by("run_id", "name", "step").values_list("run_id", "name", "step", "value")
    for run_id, name, step, value in rows.iterator(chunk_size=20000):
        if (run_id, name) != key:
            if steps:
                _flush(MetricSeries, MetricChunk, *key, steps, values)
            key, steps, values = (run_id, name), [], []
        steps.append(step)
        values.append(value)
    if steps:
        _flush(MetricSeries, MetricChunk, *key, steps, values)


def chunks_to_points(apps, schema_editor):
    Metric = apps.get_model("experiments", "Metric")
    MetricChunk = apps.get_model("experiments", "MetricChunk")
    rows = MetricChunk.objects.order_by("series_id", "first_step").values_list(
        "series__run_id", "series__name", "steps", "values"
    )
    for run_id, name, steps, values in rows.iterator(chunk_size=100):
        Metric.objects.bulk_create(
            Metric(run_id=run_id, name=name, step=int(s), value=float(v))
            for s, v in zip(np.frombuffer(steps, "<i4"), np.frombuffer(values, "<f8"), strict=True)
        )


class Migration(migrations.Migration):
    dependencies = [
        ("experiments", "0006_run_dispatched_at"),
    ]

    operations = [
        migrations.CreateModel(
            name="MetricSeries",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=50)),
                ("count", models.PositiveIntegerField(default=0)),
                ("last_step", models.IntegerField(default=-1)),
                ("last_value", models.FloatField(null=True)),
                ("low", models.FloatField(null=True)),
                ("high", models.FloatField(null=True)),
                (
                    "run",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="metric_series",
                        to="experiments.run",
                    ),
                ),
            ],
            options={
                "ordering": ["run", "name"],
            },
        ),
        migrations.CreateModel(
            name="MetricChunk",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("first_step", models.IntegerField()),
                ("last_step", models.IntegerField()),
                ("count", models.PositiveIntegerField()),
                ("steps", models.BinaryField()),
                ("values", models.BinaryField()),
                ("envelope", models.BinaryField()),
                (
                    "series",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="chunks",
                        to="experiments.metricseries",
                    ),
                ),
            ],
            options={
                "ordering": ["series", "first_step"],
            },
        ),
        migrations.AddConstraint(
            model_name="metricseries",
            constraint=models.UniqueConstraint(fields=("run", "name"), name="uniq_metric_series"),
        ),
        migrations.AddConstraint(
            model_name="metricchunk",
            constraint=models.UniqueConstraint(fields=("series", "first_step"), name="uniq_metric_chunk"),
        ),
        migrations.RunPython(points_to_chunks, chunks_to_points),
        migrations.DeleteModel(
            name="Metric",
        ),
    ]
