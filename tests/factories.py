"""factory_boy factories shared by the whole suite."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from apps.experiments.metric_store import points_append, points_count, points_read, run_chunks
from apps.experiments.models import Experiment, Run, RunStatus
from apps.tasksets.models import TaskSet, TaskSetVersion
from apps.teams.models import Membership, Role, Team

SMALL_CONFIG = {
    "algorithm": "maml",
    "family": {"name": "sinusoid"},
    "inner_lr": 0.01,
    "inner_steps": 1,
    "meta_lr": 0.001,
    "meta_batch": 4,
    "shots": 5,
    "query": 10,
    "iterations": 20,
    "eval_interval": 10,
    "eval_tasks": 10,
    "checkpoint_interval": 10,
    "seed": 0,
    "device": "cpu",
}


def launch_form_data(experiment, version, **changes) -> dict:
    """What the launch form posts for :data:`SMALL_CONFIG` on ``version``, in ``experiment``,
    with ``changes`` on top (a field given ``""`` is sent empty, as a browser sends it)."""
    data = {k: v for k, v in SMALL_CONFIG.items() if k != "family"}
    data.update(experiment=experiment.pk, taskset=version.taskset_id, queue="cpu", hidden="40, 40")
    data.update(changes)
    return data


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", "pw-for-tests-1")

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):  # noqa: N805
        if create:
            obj.save()


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team

    name = factory.Sequence(lambda n: f"Team {n}")
    slug = factory.Sequence(lambda n: f"team-{n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    team = factory.SubFactory(TeamFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.MEMBER


class TaskSetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TaskSet

    team = factory.SubFactory(TeamFactory)
    name = factory.Sequence(lambda n: f"Sine tasks {n}")
    family = "sinusoid"
    created_by = factory.SubFactory(UserFactory)


class TaskSetVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TaskSetVersion

    taskset = factory.SubFactory(TaskSetFactory)
    number = factory.Sequence(lambda n: n + 1)
    description = "Sinusoids with amplitude in [0.1, 5] and phase in [0, pi]."
    params = factory.LazyFunction(dict)
    created_by = factory.SelfAttribute("taskset.created_by")


class ExperimentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Experiment

    team = factory.SubFactory(TeamFactory)
    name = factory.Sequence(lambda n: f"Experiment {n}")
    created_by = factory.SubFactory(UserFactory)


class RunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Run

    experiment = factory.SubFactory(ExperimentFactory)
    team = factory.SelfAttribute("experiment.team")
    taskset_version = factory.SubFactory(
        TaskSetVersionFactory, taskset__team=factory.SelfAttribute("...team")
    )
    algorithm = "maml"
    config = factory.LazyFunction(lambda: dict(SMALL_CONFIG))
    seed = 0
    status = RunStatus.QUEUED
    launched_by = factory.SelfAttribute("experiment.created_by")
    total_steps = 20


def metric_points_add(run: Run | int, points: list[tuple[str, int, float]]) -> int:
    """Store ``(name, step, value)`` points of a run through the metric store (its
    one write path, with its rule: per name, steps only grow)."""
    return points_append(run_id=run if isinstance(run, int) else run.pk, points=points)


def metric_points(run: Run | int, name: str) -> dict[int, float]:
    """``{step: value}`` of one metric of a run, read back from the metric store."""
    run_id = run if isinstance(run, int) else run.pk
    steps, values = points_read(run_ids=[run_id], name=name).get(run_id, ([], []))
    return {int(s): float(v) for s, v in zip(steps, values, strict=True)}


def metric_rows(run: Run | int) -> list[tuple[str, int]]:
    """Every stored ``(name, step)`` of a run, by name then step."""
    run_id = run if isinstance(run, int) else run.pk
    return [(name, int(s)) for name, steps, _ in run_chunks(run_id=run_id) for s in steps]


def metric_count(run: Run | int, name: str | None = None) -> int:
    """How many points a run (one of its metrics) has stored."""
    return points_count(run_id=run if isinstance(run, int) else run.pk, name=name)


# -- registry ---------------------------------------------------------------------------

from apps.adaptations.models import Adaptation, AdaptationTarget, AdaptedModel  # noqa: E402
from apps.registry.models import MetaModel  # noqa: E402
from apps.reviews.models import Review, Verdict  # noqa: E402


class MetaModelFactory(factory.django.DjangoModelFactory):
    """A registered meta-model row (no weights file: tests that need one write it)."""

    class Meta:
        model = MetaModel

    experiment = factory.SubFactory(ExperimentFactory)
    team = factory.SelfAttribute("experiment.team")
    name = factory.Sequence(lambda n: f"sine-maml-{n}")
    version = 1
    source = "run"
    training_run = None
    taskset_version = factory.SubFactory(
        TaskSetVersionFactory, taskset__team=factory.SelfAttribute("...team")
    )
    algorithm = "maml"
    config = factory.LazyFunction(lambda: dict(SMALL_CONFIG))
    weights_sha256 = "0" * 64
    created_by = factory.SelfAttribute("experiment.created_by")


class AdaptationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Adaptation

    meta_model = factory.SubFactory(MetaModelFactory)
    run = factory.SubFactory(
        RunFactory,
        experiment=factory.SelfAttribute("..meta_model.experiment"),
        taskset_version=factory.SelfAttribute("..meta_model.taskset_version"),
        kind="adapt",
    )
    target = AdaptationTarget.BATCH
    steps = 10
    lr = 0.01


class AdaptedModelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AdaptedModel

    adaptation = factory.SubFactory(AdaptationFactory)
    meta_model = factory.SelfAttribute("adaptation.meta_model")
    team = factory.SelfAttribute("meta_model.team")
    metric = "mse"


class ReviewFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Review

    meta_model = factory.SubFactory(MetaModelFactory)
    team = factory.SelfAttribute("meta_model.team")
    verdict = Verdict.APPROVE
    author = factory.SelfAttribute("meta_model.created_by")
