"""``manage.py seed_demo``: a demo user, a "Demo" team and the built-in task sets.

Idempotent and fast (``make run`` calls it on every start): it creates only what
is missing and never duplicates anything. The demo password comes from
``METAWEB_DEMO_PASSWORD``, or is generated and printed once, when the user is
created. Task sets are created through the ``taskset_create`` service, so they
are validated like any other; the table task set's CSV is generated here.
"""

from __future__ import annotations

import csv
import io
import os
import secrets
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import BaseCommand
from django.db import transaction

from apps.experiments.models import Experiment
from apps.experiments.services import experiment_create
from apps.tasksets.models import TaskSet
from apps.tasksets.services import taskset_create
from apps.teams.models import Membership, Role, Team
from workers.metalearn.families import FAMILY_PARAMS

DEMO_USERNAME = "demo"
DEMO_TEAM_NAME = "Demo"
DEMO_TEAM_SLUG = "demo"
DEMO_EXPERIMENT = "Getting started"
PASSWORD_ENV = "METAWEB_DEMO_PASSWORD"  # noqa: S105 - the variable's name, not a password


@dataclass(frozen=True)
class BuiltIn:
    name: str
    family: str
    description: str
    params: dict[str, Any] = field(default_factory=dict)
    csv: bool = False


BUILT_INS: tuple[BuiltIn, ...] = (
    BuiltIn(
        "Sinusoid regression",
        "sinusoid",
        "Finn et al. 2017: y = A sin(x + phase), A in [0.1, 5], phase in [0, pi], x in [-5, 5]. "
        "Meta-train with MAML, K = 5 or 10.",
    ),
    BuiltIn(
        "Harmonic regression",
        "harmonic",
        "A fundamental and its first overtone with random amplitudes, frequency and phases: "
        "harder than sinusoids for the same number of shots.",
    ),
    BuiltIn(
        "Glyphs 5-way",
        "glyphs",
        "Omniglot-like characters rendered from bundled fonts, with augmentation. "
        "Launch runs with ways = 5 and shots = 1 or 5.",
    ),
    BuiltIn(
        "Digits 5-way",
        "digits",
        "scikit-learn's 8x8 handwritten digits: classes 0-4 for meta-training and validation, "
        "5-9 for meta-testing.",
    ),
    BuiltIn(
        "Demo table (CSV)",
        "table",
        "A small generated CSV: 12 tasks, each 3 classes of 2-D points around task-specific centres.",
        {"kind": "classification", "task_column": "task", "target_column": "target"},
        csv=True,
    ),
)


def demo_csv(*, tasks: int = 12, classes: int = 3, rows_per_class: int = 12, seed: int = 7) -> bytes:
    """A deterministic classification table: columns task, target, x1, x2."""
    rng = np.random.default_rng(seed)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["task", "target", "x1", "x2"])
    for t in range(tasks):
        centres = rng.uniform(-3, 3, size=(classes, 2))
        for c in range(classes):
            points = centres[c] + rng.normal(0, 0.6, size=(rows_per_class, 2))
            for x1, x2 in points:
                writer.writerow([f"task-{t:02d}", f"class-{c}", f"{x1:.4f}", f"{x2:.4f}"])
    return out.getvalue().encode()


class Command(BaseCommand):
    help = "Create the demo user, the Demo team and the built-in task sets (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        user, password = self._user()
        team = self._team(user)
        created, skipped = [], []
        existing = set(TaskSet.objects.filter(team=team).values_list("name", flat=True))
        for spec in BUILT_INS:
            if spec.name in existing:
                continue
            if spec.family not in FAMILY_PARAMS:
                skipped.append(f"{spec.name} (the engine has no {spec.family} family yet)")
                continue
            data = SimpleUploadedFile("demo_table.csv", demo_csv(), "text/csv") if spec.csv else None
            taskset_create(
                team=team,
                actor=user,
                name=spec.name,
                family=spec.family,
                description=spec.description,
                params=spec.params,
                data_file=data,
            )
            created.append(spec.name)

        if not Experiment.objects.filter(team=team).exists():
            experiment_create(
                team=team,
                actor=user,
                name=DEMO_EXPERIMENT,
                description="A first experiment to launch runs into: try MAML on the sinusoid task set.",
            )
            self.stdout.write(f"seed_demo: created the experiment '{DEMO_EXPERIMENT}'")
        if created:
            self.stdout.write(f"seed_demo: created task sets: {', '.join(created)}")
        for line in skipped:
            self.stdout.write(f"seed_demo: skipped {line}")
        self.stdout.write(self.style.SUCCESS(f"Demo login: username '{DEMO_USERNAME}', {password}"))

    @transaction.atomic
    def _user(self) -> tuple[Any, str]:
        """The demo user, and how to describe its password (shown in full only
        when this run generated it)."""
        users = get_user_model()
        wanted = os.environ.get(PASSWORD_ENV) or None
        user = users.objects.select_for_update().filter(username=DEMO_USERNAME).first()
        if user is None:
            password = wanted or secrets.token_urlsafe(12)
            user = users.objects.create_user(username=DEMO_USERNAME, password=password)
            if wanted:
                return user, f"password from {PASSWORD_ENV}"
            return user, f"password '{password}' (shown once; set {PASSWORD_ENV} to choose it)"
        if wanted:
            if not user.check_password(wanted):
                user.set_password(wanted)
                user.save(update_fields=["password"])
            return user, f"password from {PASSWORD_ENV}"
        return user, "password unchanged (it was printed when the user was created)"

    @transaction.atomic
    def _team(self, user: Any) -> Team:
        team, _ = Team.objects.get_or_create(slug=DEMO_TEAM_SLUG, defaults={"name": DEMO_TEAM_NAME})
        membership, created = Membership.objects.get_or_create(
            team=team, user=user, defaults={"role": Role.ADMIN}
        )
        if not created and membership.role != Role.ADMIN:
            membership.role = Role.ADMIN
            membership.save(update_fields=["role"])
        return team
