"""The move of adaptations and reviews out of the registry keeps every row: migrate
back to before the move, write rows with the old models, migrate forward, and read
them with the new ones. On PostgreSQL and SQLite. And the models match the
migrations (``makemigrations --check``)."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import connection

from apps.adaptations.models import Adaptation, AdaptedModel
from apps.reviews.models import Review
from tests.factories import MetaModelFactory, RunFactory
from tests.migrating import migrate, migrate_latest

BEFORE = [("registry", "0001_initial"), ("adaptations", None), ("reviews", None)]


@pytest.mark.django_db(transaction=True)
def test_rows_written_before_the_move_are_read_after_it():
    meta_model = MetaModelFactory()
    run = RunFactory(experiment=meta_model.experiment, taskset_version=meta_model.taskset_version)
    old = migrate(BEFORE)
    try:
        adaptation = old.get_model("registry", "Adaptation").objects.create(
            run_id=run.pk, meta_model_id=meta_model.pk, target="test_task", task_index=3, steps=5, lr=0.1
        )
        adapted = old.get_model("registry", "AdaptedModel").objects.create(
            adaptation_id=adaptation.pk, meta_model_id=meta_model.pk, team_id=meta_model.team_id, metric="mse"
        )
        old.get_model("registry", "Review").objects.create(
            team_id=meta_model.team_id,
            adapted_model_id=adapted.pk,
            verdict="approve",
            author_id=meta_model.created_by_id,
        )
    finally:
        migrate_latest()
    moved = AdaptedModel.objects.select_related("adaptation__run").get(pk=adapted.pk)
    assert moved.adaptation.task_index == 3 and moved.adaptation.run_id == run.pk
    assert list(Review.objects.values_list("adapted_model_id", "verdict")) == [(adapted.pk, "approve")]
    assert run.adaptation == Adaptation.objects.get(pk=adaptation.pk)  # the reverse accessor still works
    tables = set(connection.introspection.table_names())
    assert {"adaptations_adaptation", "adaptations_adaptedmodel", "reviews_review"} <= tables
    assert not {"registry_adaptation", "registry_adaptedmodel", "registry_review"} & tables


@pytest.mark.django_db
def test_models_and_migrations_agree():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
